"""Prediction on files, folders, globs and videos: finding the inputs and writing label, colour and overlay images.

One output layout for `predict` and `eval --save-predictions` (`PredictionLayout`): per image `NAME`, `OUT/NAME.png`
(class index per pixel, at the input size: what `pspnet score --pred OUT` reads; or each class's value,
`engine/label_formats.py`), `OUT/color/NAME.png` (the dataset
palette) and `OUT/overlay/NAME.png` (the colours blended over the image); per video `NAME.ext`,
`OUT/overlay/NAME.mp4`. With a colour key (`PredictionLayout.legend`), the colour maps and overlays have the classes
they show named under them (`engine/legend.py`; a video's frames a key of one height, `video_key`).
"""

from __future__ import annotations

import glob
import importlib.util
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from pspnet.classes import Color, DatasetInfo
from pspnet.data.imageops import read_image, to_rgb, to_tensor
from pspnet.data.lists import LIST_SUFFIXES, read_image_list, tree_files, tree_name
from pspnet.distributed import Distributed, all_gather_tensor, raise_together
from pspnet.engine.inference import (
    Forward,
    InferenceSettings,
    fill_batches,
    infer_probabilities,
    segment,
    segment_and_confidence,
)
from pspnet.engine.label_formats import encode_labels
from pspnet.engine.legend import key_entries, video_key, with_key
from pspnet.errors import PSPNetError
from pspnet.files import IMAGE_SUFFIXES, atomic_target, near_miss, staged_folder, write_atomically

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp",
                  ".wmv", ".flv", ".ogv")  # what FFmpeg (PyAV) reads
MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES
OVERLAY_ALPHA = 0.5
# Overlays are photographs, which zlib barely compresses: level 1 writes a CamVid overlay in 15 ms instead of 63 ms
# (level 6, Pillow's default) for a file 9% larger. Label and colour maps (flat regions) keep the default.
OVERLAY_COMPRESS_LEVEL = 1
PNG_COMPRESS_LEVEL = 6  # Pillow's default


@dataclass
class Inputs:
    """What the command-line arguments name: files to process, one message per argument that names nothing, and one
    note per folder whose other files (or subfolders) were left out. `names`: the output name of a file found in a
    subfolder of a folder input (`sub/NAME`: outputs mirror the folder's tree); any other file's is its stem."""

    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    names: dict[Path, str] = field(default_factory=dict)

    def name(self, path: Path) -> str:
        return self.names.get(path, path.stem)


ImageInput = Image.Image | np.ndarray | torch.Tensor | str | Path
Images = ImageInput | Sequence[ImageInput]


def predict(model: torch.nn.Module, image: Images, settings: InferenceSettings | Mapping[str, Any] | None = None,
            device: torch.device | str | None = None) -> np.ndarray | list[np.ndarray]:
    """The label map (uint8 H×W class indices, at the image's size) of one image, in one call; for a list of
    images (or an N×C×H×W tensor) the list of their label maps, their windows batched together.

        import pspnet
        model = pspnet.load("best.safetensors")
        labels = pspnet.predict(model, "street.jpg")     # or a PIL image, an H×W×3 uint8 RGB array, a C×H×W tensor
        maps = pspnet.predict(model, ["a.jpg", "b.jpg"])  # a list of label maps

    The test protocol the model was validated with in training, else its dataset's
    (`InferenceSettings.for_model(model.info)`), unless `settings` says otherwise; fp32 with BatchNorm folded, on
    `device` (default: where the model's weights are).
    """
    out = []
    for labels in _run(segment, model, image, settings, device):  # each map made small as it comes
        out.append(labels.cpu().numpy().astype(label_dtype(_info(model).num_classes)))
    return out if _is_many(image) else out[0]


def label_dtype(classes: int) -> type[np.integer]:
    """The integer type of a label map of `classes` classes: uint8 up to 256 classes, else int32."""
    return np.uint8 if classes <= 256 else np.int32


def _info(model: object) -> DatasetInfo:
    """The classes, colours and normalisation of an API model; a module without them is a PSPNetError."""
    info = getattr(model, "info", None)
    if not isinstance(info, DatasetInfo):
        raise PSPNetError(f"a {type(model).__name__} without its classes and normalisation (.info); expected a model "
                          "of pspnet.load or pspnet.PSPNet")
    return info


def probabilities(model: torch.nn.Module, image: Images,
                  settings: InferenceSettings | Mapping[str, Any] | None = None,
                  device: torch.device | str | None = None) -> np.ndarray | list[np.ndarray]:
    """The class probabilities (float32 C×H×W, at the image's size) of one image, or the list of them for a list
    of images: the protocol's average of the windows' softmax, of which `predict` gives the argmax (for the mmseg
    presets, the averaged logits instead).

        probs = pspnet.probabilities(model, "street.jpg")
        confidence = probs.max(axis=0)                    # e.g. to mask out uncertain pixels
    """
    out = [probs.cpu().numpy() for probs in _run(infer_probabilities, model, image, settings, device)]
    return out if _is_many(image) else out[0]


def _is_many(image: Images) -> bool:
    return isinstance(image, (list, tuple)) or (isinstance(image, torch.Tensor) and image.ndim == 4)


def _run(protocol: Callable[..., list[torch.Tensor]], model: torch.nn.Module, image: Images,
         settings: InferenceSettings | Mapping[str, Any] | None, device: torch.device | str | None
         ) -> Iterator[torch.Tensor]:
    """`protocol` (`segment` or `infer_probabilities`) for each image, with the model's fp32 forward on `device`;
    the images are read as their batches fill, so a long list is never all in memory at once."""
    images = list(image) if _is_many(image) else [image]  # type: ignore[arg-type]
    if not images:
        raise PSPNetError("no images given (an empty list); expected an image or a list of images")
    from pspnet.engine.recipe import api_forward

    forward, device = api_forward(model, device)
    info = _info(model)
    settings = InferenceSettings.of(settings, info)

    tensors = (to_tensor(rgb_of(image)) for image in images)
    for group in fill_batches(tensors, settings, lambda t: (t.shape[1], t.shape[2])):
        yield from protocol(forward, group, settings, info.mean, info.std, device)


def rgb_of(image: ImageInput) -> np.ndarray:
    """The H×W×3 uint8 RGB pixels of an API image: a file read as `pspnet predict` reads it, or a PIL image, array
    or tensor (`to_rgb`)."""
    if isinstance(image, (str, Path)):
        if Path(image).is_dir():
            raise PSPNetError(f"{image}: is a folder; pass its images as a list (or run `pspnet predict "
                              f"CHECKPOINT {image} --out DIR`)")
        return read_image(image)
    return to_rgb(image)


def colorize_api(labels: np.ndarray | torch.Tensor, model: torch.nn.Module, image: ImageInput | None = None,
                 legend: bool = False) -> np.ndarray:
    """A label map (H×W class indices, e.g. from `pspnet.predict`) in the model's class colours, H×W×3 uint8 RGB:
    what `pspnet predict` writes to OUT/color/; with `image`, blended over it as OUT/overlay/; with `legend`, a key
    of the classes it shows under it (taller than H), as `pspnet predict --legend` draws.

        labels = pspnet.predict(model, "street.jpg")
        PIL.Image.fromarray(pspnet.colorize(labels, model, "street.jpg")).save("overlay.png")
    """
    info = _info(model)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise PSPNetError(f"labels of shape {labels.shape} and type {labels.dtype}; expected an H×W map of class "
                          "indices, as pspnet.predict returns")
    color = colorize(labels, info.palette)
    if image is not None:
        rgb = rgb_of(image)
        if rgb.shape[:2] != labels.shape:
            raise PSPNetError(f"image of {rgb.shape[1]}×{rgb.shape[0]} for labels of {labels.shape[1]}×"
                              f"{labels.shape[0]}; expected the image the labels were predicted for")
        color = overlay(rgb, color)
    return with_key(color, key_entries([labels], info.classes, info.palette)) if legend else color


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _folder_files(folder: Path, recursive: bool, exclude: Path | None) -> tuple[list[Path], list[Path]]:
    """The visible files of `folder` (of its whole tree if `recursive`, leaving out `exclude`'s), sorted, and its
    visible subfolders that hold media files and were not searched."""
    if not recursive:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        skipped = [d for d in entries if d.is_dir() and d.resolve() != exclude and tree_files(d, MEDIA_SUFFIXES)]
        return sorted(p for p in entries if p.is_file()), sorted(skipped)
    return [p for p in tree_files(folder) if exclude is None or not p.resolve().is_relative_to(exclude)], []


def expand_inputs(specs: Sequence[str], recursive: bool = False, exclude: Path | None = None) -> Inputs:
    """Files as given; list files (.txt, .lst: an image path first on each line, e.g. a dataset's `val.txt`) → the
    images they name; folders → their image and video files (sorted; with `recursive` those of the whole tree, named
    by their path in it, leaving out `exclude`: the run's output folder); globs → their matches (`**` matches
    folders at any depth)."""
    found = Inputs()
    exclude = exclude.resolve() if exclude is not None else None
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            inside = exclude is not None and exclude != path.resolve() and exclude.is_relative_to(path.resolve())
            every, skipped = _folder_files(path, recursive, exclude if inside else None)
            files = [p for p in every if p.suffix.lower() in MEDIA_SUFFIXES]
            if not files:
                found.problems.append(f"{spec}: folder holds no image or video files" + (
                    f" (its subfolders {_shown([d.name for d in skipped])} do: --recursive takes a folder's whole "
                    "tree)" if skipped else ""))
            elif skipped:
                found.notes.append(f"{spec}: left out {len(skipped)} subfolder(s) holding images or videos "
                                   f"({_shown([d.name for d in skipped])}; --recursive takes a folder's whole tree)")
            if others := [str(p.relative_to(path)) for p in every if p.suffix.lower() not in MEDIA_SUFFIXES]:
                found.notes.append(f"{spec}: left out {len(others)} file(s) without an image or video suffix "
                                   f"({_shown(others)}; images: {' '.join(IMAGE_SUFFIXES)}; videos: "
                                   f"{' '.join(VIDEO_SUFFIXES)}; name an image file to try it anyway)")
            found.files.extend(files)
            found.names.update({p: tree_name(p, path) for p in files if p.parent != path})
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            try:
                found.files.extend(read_image_list(path, found.problems))  # each missing image named
            except PSPNetError as e:
                found.problems.append(str(e))
        elif path.is_file():
            found.files.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                found.problems.append(f"{spec}: pattern matches no file")
            found.files.extend(matches)
        else:
            found.problems.append(f"{spec}: no such file or folder{near_miss(Path(spec))}")
    return found


def colorize(labels: np.ndarray, palette: Sequence[Color]) -> np.ndarray:
    """H×W class indices → H×W×3 uint8 colours; indices without a colour (e.g. ignore, or out of range) are black."""
    size = max(256, len(palette))
    lut = np.zeros((size + 1, 3), dtype=np.uint8)  # the last row: black, for any index outside the table
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return lut[np.where((labels >= 0) & (labels < size), labels, size)]


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The colour map blended over the RGB image (both H×W×3 uint8)."""
    return (image.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha).round().astype(np.uint8)


def save_label_png(path: Path, labels: np.ndarray, values: Sequence[int] | None = None) -> None:
    """Class indices as an 8-bit greyscale PNG (what `pspnet score` reads), or each class's value in `values`
    (16-bit where one exceeds 255)."""
    if labels.max(initial=0) > (255 if values is None else len(values) - 1):
        raise PSPNetError(f"{path}: class index {int(labels.max())} does not fit an 8-bit PNG"
                          if values is None else f"{path}: class index {int(labels.max())} has no label value")
    encoded = encode_labels(labels, values)
    save_png(path, Image.fromarray(encoded, mode="L") if encoded.dtype == np.uint8 else Image.fromarray(encoded))


def save_confidence_png(path: Path, confidence: np.ndarray) -> None:
    """H×W probabilities of the predicted classes as an 8-bit greyscale PNG (0..1 → 0..255)."""
    save_png(path, Image.fromarray(np.round(np.clip(confidence, 0.0, 1.0) * 255).astype(np.uint8), mode="L"))


def save_rgb_png(path: Path, rgb: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
    save_png(path, Image.fromarray(rgb, mode="RGB"), compress_level)


def save_png(path: Path, image: Image.Image, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
    """Written whole or not at all (a killed run leaves no truncated PNG); a failed write is one line naming it."""
    try:
        write_atomically(path, lambda tmp: image.save(tmp, format="PNG", compress_level=compress_level))
    except OSError as e:
        raise PSPNetError(f"{path}: cannot write it ({e.strerror or e})") from None


OUTPUT_KINDS = ("labels", "color", "overlay", "confidence")  # what a prediction of an image can be written as
DEFAULT_OUTPUTS = ("labels", "color", "overlay")
VIDEO_KINDS = ("overlay", "color")  # written as videos for a video input; its labels and confidence: PNG per frame
FRAME_KINDS = ("labels", "confidence")
FRAME_PATTERN = "[0-9][0-9][0-9][0-9][0-9][0-9].png"  # a frame's PNG: 000000.png, ...
DEFAULT_VIDEO_OUTPUTS = ("overlay",)


@dataclass(frozen=True)
class PredictionLayout:
    """Where the predictions of a run go (see the module docstring), which of `OUTPUT_KINDS` are written, and the
    value each class is written as in the label PNGs (`label_values`; None: the class index); `legend`: the class
    names of a colour key drawn under the colour maps and overlays (None: no key)."""

    root: Path
    kinds: tuple[str, ...] = DEFAULT_OUTPUTS
    label_values: tuple[int, ...] | None = None
    legend: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if unknown := [k for k in self.kinds if k not in OUTPUT_KINDS]:
            raise PSPNetError(f"outputs {' '.join(unknown)}: expected some of {', '.join(OUTPUT_KINDS)}")
        if not self.kinds:
            raise PSPNetError(f"outputs: none chosen; expected some of {', '.join(OUTPUT_KINDS)}")

    def label(self, stem: str) -> Path:
        return self.root / f"{stem}.png"

    def color(self, stem: str) -> Path:
        return self.root / "color" / f"{stem}.png"

    def overlay(self, stem: str) -> Path:
        return self.root / "overlay" / f"{stem}.png"

    def confidence(self, stem: str) -> Path:
        return self.root / "confidence" / f"{stem}.png"

    def video(self, stem: str, kind: str = "overlay") -> Path:
        """The overlay or colour video of a video input."""
        return self.root / kind / f"{stem}.mp4"

    def frames(self, stem: str, kind: str) -> Path:
        """The folder of a video's per-frame label (`OUT/NAME/`) or confidence (`OUT/confidence/NAME/`) PNGs."""
        return self.root / stem if kind == "labels" else self.root / kind / stem

    def video_outputs(self, stem: str) -> list[Path]:
        """What a video input is written as: its videos (overlay, color) and frame folders (labels, confidence)."""
        return [self.video(stem, kind) if kind in VIDEO_KINDS else self.frames(stem, kind)
                for kind in OUTPUT_KINDS if kind in self.kinds]

    def image_files(self, stem: str) -> list[Path]:
        every = {"labels": self.label(stem), "color": self.color(stem), "overlay": self.overlay(stem),
                 "confidence": self.confidence(stem)}
        return [every[kind] for kind in OUTPUT_KINDS if kind in self.kinds]


@dataclass(frozen=True)
class ImagePrediction:
    """What is written of one image: its name, RGB H×W×3 uint8 pixels, H×W class indices and, for the confidence
    output, the predicted classes' probabilities H×W."""

    stem: str
    image: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray | None = None


def write_image_outputs(layout: PredictionLayout, stem: str, image: np.ndarray, labels: np.ndarray,
                        palette: Sequence[Color], confidence: np.ndarray | None = None) -> None:
    """The class indices, the colour map, the overlay and the confidence of one image (those of them `layout.kinds`
    names), where `layout` puts them. `confidence`: H×W probabilities of the predicted classes, written as 0..255."""
    if "confidence" in layout.kinds:
        if confidence is None:
            raise PSPNetError(f"{layout.confidence(stem)}: no confidence was computed for it")
        save_confidence_png(layout.confidence(stem), confidence)
    if "labels" in layout.kinds:
        save_label_png(layout.label(stem), labels, layout.label_values)
    if "color" in layout.kinds or "overlay" in layout.kinds:
        color = colorize(labels, palette)
        entries = key_entries([labels], layout.legend, palette) if layout.legend is not None else None

        def keyed(picture: np.ndarray) -> np.ndarray:
            return picture if entries is None else with_key(picture, entries)

        if "color" in layout.kinds:
            save_rgb_png(layout.color(stem), keyed(color))
        if "overlay" in layout.kinds:
            save_rgb_png(layout.overlay(stem), keyed(overlay(image, color)), compress_level=OVERLAY_COMPRESS_LEVEL)


class BackgroundWriter:
    """Writes the label, colour, overlay (and confidence) PNGs of predictions in a second thread while the caller
    computes the next ones (Pillow's encoder releases the GIL). At most `queued` submissions wait, so memory stays
    bounded; a failed write is raised by the next `submit` or by `close`, so it stops the run as an inline write
    would.

        with BackgroundWriter(layout, palette) as writer:
            for ...:
                done += writer.submit([ImagePrediction(stem, image, labels), ...])   # images now written
            done += writer.close()
    """

    def __init__(self, layout: PredictionLayout, palette: Sequence[Color], queued: int = 2) -> None:
        self.layout, self.palette, self.queued = layout, palette, queued
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pspnet-writer")
        self.pending: deque[tuple[Future[None], int]] = deque()

    def submit(self, outputs: list[ImagePrediction]) -> int:
        """Queue predictions for writing; returns how many images were written since."""
        self.pending.append((self.pool.submit(self._write, outputs), len(outputs)))
        return self._collect(block=False)

    def close(self) -> int:
        """Wait for every queued write; returns how many images were written since the last call."""
        try:
            return self._collect(block=True)
        finally:
            self.pool.shutdown()

    def _write(self, outputs: list[ImagePrediction]) -> None:
        for out in outputs:
            write_image_outputs(self.layout, out.stem, out.image, out.labels, self.palette, out.confidence)

    def _collect(self, block: bool) -> int:
        done = 0
        while self.pending and (block or len(self.pending) > self.queued or self.pending[0][0].done()):
            future, count = self.pending.popleft()
            future.result()
            done += count
        return done

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()  # after a failure elsewhere: the queued writes finish, nothing is left half-written


def require_av(videos: list[Path]) -> None:
    """Before anything runs: the videos among the inputs need PyAV (said at the first video's turn, it came after
    every image, naming none)."""
    if videos and importlib.util.find_spec("av") is None:
        more = f" (and {len(videos) - 1} more)" if len(videos) > 1 else ""
        raise PSPNetError(f"{videos[0]}{more}: a video, which needs PyAV: pip install 'pspnet[video]'")


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise PSPNetError("video needs PyAV: pip install 'pspnet[video]'") from None
    return av


def read_video_frames(path: Path) -> Iterator[np.ndarray]:
    """RGB uint8 H×W×3 frames of a video file, upright as a player shows them (a phone's portrait video is stored
    sideways with a rotation in its display matrix, as a photo with an EXIF orientation); an unreadable file raises
    PSPNetError naming it."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PSPNetError(f"{path}: holds no video stream")
            for frame in container.decode(video=0):
                # FFmpeg's rotation is counter-clockwise; a player turns the picture back: -90 → a quarter turn
                # clockwise, which is np.rot90 with k = -1 ≡ 3.
                turns = round(getattr(frame, "rotation", 0) / 90) % 4
                yield np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=turns))
    except av.FFmpegError as e:
        raise PSPNetError(f"{path}: cannot read it as a video ({e})") from None


def declared_frames(path: Path) -> int | None:
    """The frame count a video's container declares (MP4, AVI, MOV: exact), None where it declares none (MKV, WebM,
    streams): a file cut short decodes fewer."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            frames = container.streams.video[0].frames if container.streams.video else 0
    except av.FFmpegError:
        return None
    return int(frames) if frames and frames > 0 else None


def video_rate(path: Path) -> float:
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PSPNetError(f"{path}: holds no video stream")
            rate = container.streams.video[0].average_rate
    except av.FFmpegError as e:
        raise PSPNetError(f"{path}: cannot read it as a video ({e})") from None
    return float(rate) if rate else 25.0


def predict_video(forward: Forward, path: Path, name: str, layout: PredictionLayout, settings: InferenceSettings,
                  mean: Sequence[float], std: Sequence[float], palette: Sequence[Color],
                  device: torch.device | str = "cpu", frames_per_step: int = 4,
                  on_frames: Callable[[int], None] | None = None, processes: Distributed | None = None) -> int:
    """Segment every frame of `path` and write what `layout.kinds` names of it under `name` (`Inputs.name`): the
    overlay and colour videos (H.264 MP4, `layout.video`) and each frame's label and confidence PNGs
    (`layout.frames`: 000000.png, ...). Returns the frame count. Frames are segmented `frames_per_step` at a time so
    that their windows share network batches. Each video is written to a temporary file renamed at the end, and the
    frame PNGs to a temporary folder moved into place at the end (`files.staged_folder`, which also removes the
    frames an earlier, longer run left): a failure or an interruption leaves no partial video or frame set and keeps
    an earlier run's.

    Under torchrun (`processes`), every process reads every frame and segments its share of each step's
    (`frames_per_step` each: every world_size-th frame); the first process gathers the label maps and writes every
    output, and a failure to write stops every process at the same step (then raised on each)."""
    av = _av()
    rate = Fraction(video_rate(path)).limit_denominator(1000)
    stem, kinds = name, layout.kinds
    movies = [kind for kind in VIDEO_KINDS if kind in kinds]
    share = processes if processes is not None and processes.enabled else None
    rank, world = (share.rank, share.world_size) if share is not None else (0, 1)
    writes = rank == 0
    count = 0

    def encode(container: Any, picture: np.ndarray) -> None:
        h, w = picture.shape[:2]
        picture = np.ascontiguousarray(picture[: h - h % 2, : w - w % 2])  # yuv420p needs even sizes
        if not container.streams.video:
            stream = container.add_stream("libx264", rate=rate)
            stream.height, stream.width = picture.shape[:2]
            stream.pix_fmt = "yuv420p"
        for packet in container.streams.video[0].encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
            container.mux(packet)

    def segmented(chunk: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Each frame's label map and confidence: this process's share, gathered from every process."""
        mine = chunk[rank::world]
        found = segment_and_confidence(forward, [to_tensor(f) for f in mine], settings, mean, std, device,
                                       "confidence" in kinds) if mine else []
        if share is not None:
            return _gather_frames(found, chunk, share, "confidence" in kinds, len(palette))
        return [(labels.cpu().numpy(), None if conf is None else conf.cpu().numpy()) for labels, conf in found]

    def write(containers: dict[str, Any], folders: dict[str, Path], chunk: list[np.ndarray],
              found: list[tuple[np.ndarray, np.ndarray | None]]) -> None:
        for index, (frame, (labels, confidence)) in enumerate(zip(chunk, found, strict=True), start=count):
            color = colorize(labels, palette) if movies else None
            for kind, container in containers.items():
                picture = overlay(frame, color) if kind == "overlay" else color
                if layout.legend is not None:  # of one height in every frame (video_key)
                    picture = np.concatenate([picture, video_key(labels, layout.legend, palette, picture.shape[1])])
                encode(container, picture)
            if "labels" in folders:
                save_label_png(folders["labels"] / f"{index:06d}.png", labels, layout.label_values)
            if confidence is not None:
                save_confidence_png(folders["confidence"] / f"{index:06d}.png", confidence)

    def agree(failure: BaseException | None) -> None:
        """Every process stops where the writing one failed; the writer raises its own error."""
        raise_together(failure, share, f"{path}: stopped: the first process could not write its outputs")

    def step(containers: dict[str, Any], folders: dict[str, Path], chunk: list[np.ndarray]) -> None:
        """Segment `chunk` (this process's share), write it (the first process), and agree on how that went."""
        nonlocal count
        found = segmented(chunk)
        failure = None
        if writes:
            try:
                write(containers, folders, chunk, found)
            except (OSError, av.FFmpegError) as e:
                failure = e
        agree(failure)
        count += len(chunk)
        if on_frames is not None:
            on_frames(len(chunk))

    named = layout.video_outputs(stem)[0]
    try:
        with ExitStack() as stack:
            folders: dict[str, Path] = {}
            containers: dict[str, Any] = {}
            failure: BaseException | None = None
            if writes:
                try:
                    folders = {kind: stack.enter_context(staged_folder(layout.frames(stem, kind), FRAME_PATTERN))
                               for kind in FRAME_KINDS if kind in kinds}
                    targets = {kind: stack.enter_context(atomic_target(layout.video(stem, kind))) for kind in movies}
                    containers = {kind: stack.enter_context(av.open(target, mode="w", format="mp4"))
                                  for kind, target in targets.items()}
                except (OSError, av.FFmpegError) as e:
                    failure = e
            agree(failure)
            chunk: list[np.ndarray] = []
            for frame in read_video_frames(path):
                chunk.append(frame)
                if len(chunk) >= frames_per_step * world:
                    step(containers, folders, chunk)
                    chunk = []
            if chunk:
                step(containers, folders, chunk)
            if count == 0:
                raise PSPNetError(f"{path}: video has no frames")
            for container in containers.values():
                for packet in container.streams.video[0].encode():
                    container.mux(packet)
    except (OSError, av.FFmpegError) as e:  # a full disk, an unwritable folder: after the frames were read
        raise PSPNetError(f"{named}: cannot write the video ({e})") from None
    return count


def _gather_frames(found: list[tuple[torch.Tensor, torch.Tensor | None]], chunk: list[np.ndarray],
                   share: Distributed, confidence: bool, classes: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The label maps (and confidences) of every frame of `chunk`, in order, from the processes that segmented
    them (frame i: process i mod world_size), on every process. Every process reads the same frames, so all agree
    on the shapes exchanged: the chunk's largest frame (a stream may change its frame size), each map cut back to
    its frame's."""
    height, width = max(f.shape[0] for f in chunk), max(f.shape[1] for f in chunk)
    world = share.world_size
    per_process = -(-len(chunk) // world)
    labels = torch.zeros((per_process, height, width), dtype=torch.uint8 if classes <= 256 else torch.int32,
                         device=share.device)
    sure = torch.zeros((per_process, height, width) if confidence else (0,), device=share.device)
    for index, (lab, conf) in enumerate(found):  # conf: None unless confidence is asked for
        labels[index, : lab.shape[0], : lab.shape[1]] = lab
        if conf is not None:
            sure[index, : conf.shape[0], : conf.shape[1]] = conf
    all_labels = all_gather_tensor(labels, share)
    all_sure = all_gather_tensor(sure, share) if confidence else None  # exchanged only when written

    def cut(maps: list[torch.Tensor], i: int, frame: np.ndarray) -> np.ndarray:  # frame i's map, at its size
        return maps[i % world][i // world, : frame.shape[0], : frame.shape[1]].cpu().contiguous().numpy()

    return [(cut(all_labels, i, frame).astype(np.int64), None if all_sure is None else cut(all_sure, i, frame))
            for i, frame in enumerate(chunk)]
