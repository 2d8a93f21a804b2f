"""The one inference routine of the paper's test protocol, used by `eval`, `predict` and the export checks.

For each image and scale s: resize the float32 image (bilinear, no antialiasing, as OpenCV INTER_LINEAR; no rounding
before normalising, as the official code converts to float first) so that the long side is
round(s · base_size); pad around it with the mean to the crop size; slide crop-sized windows with stride
ceil(2/3 · crop), the last one aligned to the border; average the softmax of each window and of its horizontal
flip; average overlapping windows; cut the padding; resize the probabilities to the original size. Probabilities
are averaged over scales, and argmax gives the label.

Windows of all images and scales handed over together go through the network in batches of `batch_size`
inputs; each window's result does not depend on what else is in its batch, so the output equals the
one-window-at-a-time computation (up to float rounding inside the network).

The network is any callable mapping a normalised float N×3×h×w batch to N×C×h×w logits — a PSPNet, or an
ONNX Runtime session wrapped in a function — so every backend is scored by the same protocol.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from pspnet.classes import DatasetInfo
from pspnet.configfile import HeightWidth, from_dict
from pspnet.data.imageops import normalize, pad_center, resize_bilinear
from pspnet.device import MemoryFit, is_out_of_memory
from pspnet.errors import PSPNetError

Forward = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class SoftmaxForward(Protocol):
    """A `Forward` that can also return the class probabilities itself (`pspnet.engine.recipe.CompiledForward`
    when compiled: the softmax fused into the network's graph); the protocol then takes them from it, and with
    `mirrored` the flip pair's sum (each window's probabilities plus its mirror image's flipped back)."""

    @property
    def fused_softmax(self) -> bool: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def probabilities(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor: ...


@runtime_checkable
class LendingForward(Protocol):
    """A `Forward` that can also lend its output: `lend(x)` returns the logits in the engine's own buffer, valid
    until its next call (`pspnet.export.openvino.OpenVinoModel`), which saves copying them into fresh memory. The
    protocol takes them so: it adds each batch's logits into its sums before the next call."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def lend(self, x: torch.Tensor) -> torch.Tensor: ...


SINGLE_SCALE: tuple[float, ...] = (1.0,)
MULTI_SCALE: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
PRESETS: dict[str, tuple[float, ...]] = {"ss": SINGLE_SCALE, "ms": MULTI_SCALE, "mmseg": SINGLE_SCALE,
                                         "mmseg-769": SINGLE_SCALE}
STRIDE_RATE = 2.0 / 3.0

# Official test settings per dataset: (base size, crop). CamVid has no official setting: its 360×480 images are
# kept at their size (long side 480) with 361×361 windows (8n+1, as the official sizes), two across each image.
DATASET_SETTINGS: dict[str, tuple[int, tuple[int, int]]] = {
    "ade20k": (512, (473, 473)),
    "voc2012": (512, (473, 473)),
    "cityscapes": (2048, (713, 713)),
    "camvid": (480, (361, 361)),
}
# mmsegmentation's single-scale test of its PSPNet zoo (configs/_base_/models/pspnet_r50-d8.py: test_cfg whole;
# configs/_base_/datasets/*.py: Resize keep_ratio to scale (2048, 512) for ADE20K and VOC, (2048, 1024) for
# Cityscapes): the whole image, rescaled into (long side ≤ 2048, short side ≤ S), logits resized back and argmaxed.
MMSEG_SHORT_SIDE: dict[str, int] = {"ade20k": 512, "voc2012": 512, "cityscapes": 1024}
MMSEG_PRESETS = ("mmseg", "mmseg-769")  # presets that set the whole protocol, not only the scales
MMSEG_LONG_SIDE = 2048


@dataclass
class InferenceSettings:
    """How to turn an image into a label map. The defaults are the official single-scale ADE20K/VOC protocol.

    base_size: long side of the image at scale 1.0; None keeps each image's own size at scale 1.0.
    crop_size: (height, width) of the sliding window (and the minimum padded size).
    scales: the long side is round(scale · base_size) for each; probabilities are averaged over them.
    flip: also run each window mirrored left-right and average the two.
    mode: "slide" (crop-sized windows) or "whole" (the resized image in one piece, no padding).
    batch_size: network inputs per forward call (a window and its flip count as two).
    short_side: None (the official rule: the long side is base_size) or mmsegmentation's keep-ratio rule: the image
        is rescaled by min(base_size / long side, short_side / short side), sizes rounded half up.
    average: "probs" (the official code: softmax per window, probabilities averaged and resized) or "logits"
        (mmsegmentation: logits averaged and resized, `infer_probabilities` then returns averaged logits).
    """

    base_size: int | None = 512
    crop_size: HeightWidth = (473, 473)
    scales: tuple[float, ...] = SINGLE_SCALE
    flip: bool = True
    mode: str = "slide"
    batch_size: int = 8
    stride_rate: float = field(default=STRIDE_RATE, repr=False)
    short_side: int | None = None
    average: str = "probs"

    def __post_init__(self) -> None:
        if isinstance(self.crop_size, (int, float)):  # one number: a square, as `--crop-size 473` gives
            self.crop_size = (self.crop_size, self.crop_size)
        if isinstance(self.scales, (int, float)):
            self.scales = (self.scales,)
        try:
            if len(self.crop_size) != 2:
                raise ValueError
            self.crop_size = (int(self.crop_size[0]), int(self.crop_size[1]))
        except (TypeError, ValueError):
            raise PSPNetError(f"crop size {self.crop_size!r}: expected (height, width) or one number") from None
        try:
            self.scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            raise PSPNetError(f"scales {self.scales!r}: expected one or more positive numbers") from None
        if not isinstance(self.flip, bool):  # 'no' was taken for True
            raise PSPNetError(f"flip {self.flip!r}: expected True or False")
        for name in ("base_size", "batch_size", "short_side"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise PSPNetError(f"{name.replace('_', ' ')} {value!r}: expected a whole number")
        if self.mode not in ("slide", "whole"):
            raise PSPNetError(f"mode {self.mode!r}: expected 'slide' or 'whole'")
        if min(self.crop_size) < 1:
            raise PSPNetError(f"crop size {self.crop_size}: expected positive height and width")
        if self.base_size == 0:  # as `--base-size 0`: each image's own size
            self.base_size = None
        if self.base_size is not None and self.base_size < 1:
            raise PSPNetError(f"base size {self.base_size}: expected a positive number of pixels (0 or None: each "
                              "image's own size)")
        if not self.scales or not all(0 < s < math.inf for s in self.scales):  # NaN fails both comparisons
            raise PSPNetError(f"scales {list(self.scales)}: expected one or more positive numbers")
        if self.batch_size < 1:
            raise PSPNetError(f"batch size {self.batch_size}: expected at least 1")
        if self.average not in ("probs", "logits"):
            raise PSPNetError(f"average {self.average!r}: expected 'probs' or 'logits'")
        if self.short_side is not None and (self.short_side < 1 or self.base_size is None):
            raise PSPNetError(f"short side {self.short_side}: expected a positive number of pixels, with a base size "
                              "(the long side's cap)")

    def describe(self) -> str:
        """One readable line: `long side 240, whole image, scales 1.0, flip, batch 8`."""
        size = f"long side {self.base_size}" if self.base_size else "each image's own size"
        if self.short_side is not None:
            size = f"short side {self.short_side} (long side ≤ {self.base_size})"
        how = "whole image" if self.mode == "whole" else f"{self.crop_size[0]}×{self.crop_size[1]} windows"
        scales = " ".join(f"{s:g}" for s in self.scales)
        average = ", logits averaged" if self.average == "logits" else ""
        return (f"{size}, {how}, scales {scales}, {'flip' if self.flip else 'no flip'}{average}, "
                f"batch {self.batch_size}")

    @classmethod
    def of(cls, settings: InferenceSettings | Mapping[str, Any] | None, info: DatasetInfo) -> InferenceSettings:
        """The settings an API call runs with: `settings` as given, or the model's own protocol (`for_model`) with a
        mapping's changes (`{"scales": [0.75, 1, 1.25], "flip": False}`)."""
        if isinstance(settings, InferenceSettings):
            return settings
        base = cls.for_model(info)
        if settings is None:
            return base
        if not isinstance(settings, Mapping):
            raise PSPNetError(f"settings: got {type(settings).__name__}; expected pspnet.InferenceSettings or a "
                              "mapping of its fields")
        if unknown := sorted(set(settings) - {f.name for f in fields(cls)}):
            raise PSPNetError(f"settings: unknown {', '.join(map(repr, unknown))}; expected some of "
                              f"{', '.join(f.name for f in fields(cls) if f.repr)}")
        return replace(base, **settings)

    @classmethod
    def for_model(cls, info: DatasetInfo) -> InferenceSettings:
        """The protocol the model was validated with (`info.protocol`, recorded by `pspnet train`), else the
        official one of its dataset."""
        if info.protocol is None:
            return cls.for_dataset(info.name)
        return from_dict(cls, info.protocol, f"the test protocol recorded with the {info.name} model")

    @classmethod
    def for_dataset(cls, name: str, preset: str = "ss", **overrides: object) -> InferenceSettings:
        """The official settings of a known dataset (unknown names: keep image size, 473 crop), ss or ms; or
        "mmseg": mmsegmentation's single-scale test of its zoo (ADE20K, VOC, Cityscapes)."""
        base, crop = DATASET_SETTINGS.get(name, (None, (473, 473)))
        if preset not in PRESETS:
            raise PSPNetError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
        values: dict[str, object] = {"base_size": base, "crop_size": crop, "scales": PRESETS[preset]}
        if preset == "mmseg":
            if name not in MMSEG_SHORT_SIDE:
                raise PSPNetError(f"preset mmseg: mmsegmentation's test settings are known for "
                                  f"{', '.join(MMSEG_SHORT_SIDE)}, not {name!r}")
            values |= {"base_size": MMSEG_LONG_SIDE, "short_side": MMSEG_SHORT_SIDE[name], "mode": "whole",
                       "flip": False, "average": "logits"}
        if preset == "mmseg-769":  # the 769×769 Cityscapes configs: test_cfg slide, crop 769, stride 513
            if name != "cityscapes":
                raise PSPNetError(f"preset mmseg-769: mmsegmentation's 769×769 test is Cityscapes', not {name!r}")
            values |= {"base_size": MMSEG_LONG_SIDE, "short_side": MMSEG_SHORT_SIDE[name], "mode": "slide",
                       "crop_size": (769, 769), "flip": False, "average": "logits"}  # stride ceil(769·2/3) = 513
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def scaled_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) with the long side `long_side` and the aspect kept, rounded as the official code does; no side below
    one pixel (a thin strip, a small scale: the official code fails there)."""
    long_side = max(1, long_side)
    if height > width:
        return long_side, max(1, round(long_side / height * width))
    return max(1, round(long_side / width * height)), long_side


def keep_ratio_size(height: int, width: int, max_long: float, max_short: float) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side ≤ max_long and short side ≤ max_short, each side
    scaled by the same factor and rounded half up."""
    factor = min(max_long / max(height, width), max_short / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of crop-long windows over `length` (≥ crop) with `stride`; the last one ends at the border."""
    if length <= crop:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def window_positions(height: int, width: int, crop: tuple[int, int], stride_rate: float = STRIDE_RATE
                     ) -> list[tuple[int, int]]:
    """(top, left) of every window over a (padded) height × width image, row by row."""
    stride_h, stride_w = math.ceil(crop[0] * stride_rate), math.ceil(crop[1] * stride_rate)
    rows, cols = window_starts(height, crop[0], stride_h), window_starts(width, crop[1], stride_w)
    return [(top, left) for top in rows for left in cols]


def inputs_per_image(height: int, width: int, settings: InferenceSettings) -> int:
    """How many network inputs (windows × flips, over all scales) one height × width image makes."""
    total = 0
    for scale in settings.scales:
        h, w = scaled_size(height, width, round(scale * (settings.base_size or max(height, width))))
        if settings.mode == "slide":
            h, w = max(h, settings.crop_size[0]), max(w, settings.crop_size[1])
            total += len(window_positions(h, w, settings.crop_size, settings.stride_rate))
        else:
            total += 1
    return total * (2 if settings.flip else 1)


T = TypeVar("T")


def fill_batches(items: Iterable[T], settings: InferenceSettings, size: Callable[[T], tuple[int, int] | None]
                 ) -> Iterator[list[T]]:
    """`items` in groups whose network inputs fill at least one batch, so that the windows of several images share
    forward passes; `size(item)` is the item's (height, width), or None for an item that makes no inputs."""
    group: list[T] = []
    inputs = 0
    for item in items:
        group.append(item)
        hw = size(item)
        if hw is not None:
            inputs += inputs_per_image(hw[0], hw[1], settings)
        if inputs >= settings.batch_size:
            yield group
            group, inputs = [], 0
    if group:
        yield group


@dataclass
class _ScaleJob:
    """One image at one scale: the windows still to come and the probabilities summed so far."""

    image: int
    original: tuple[int, int]  # the image's size
    scaled: tuple[int, int]  # its size at this scale
    offset: tuple[int, int]  # (top, left) of the scaled image inside the padded one
    size: tuple[int, int]  # the padded size
    remaining: int
    probs: torch.Tensor | None = None
    count: torch.Tensor | None = None


@dataclass
class _Input:
    job: _ScaleJob
    tensor: torch.Tensor  # 3×h×w, normalised
    top: int
    left: int
    flipped: bool


def infer_probabilities(forward: Forward, images: Sequence[torch.Tensor], settings: InferenceSettings,
                        mean: Sequence[float], std: Sequence[float],
                        device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Class probabilities C×H×W (on `device`) for each uint8 3×H×W RGB image, by the test protocol (averaged
    logits instead with `settings.average == "logits"`, mmsegmentation's way).

    The softmax writes into one buffer reused for every window (as large as the largest window's logits), and the
    sums are divided in place: on a CPU a fresh tensor of this size costs its page faults every time. One window's
    buffer, not a batch's (1 GB for 8 ADE20K windows): after the network's output, the protocol's own memory does
    not grow with the batch."""
    totals: list[torch.Tensor | None] = [None] * len(images)
    pending: dict[tuple[int, ...], list[_Input]] = {}
    scratch = torch.empty(0, dtype=torch.float32, device=device)  # the softmax's output, grown to the largest window
    fused = settings.average == "probs" and isinstance(forward, SoftmaxForward) and forward.fused_softmax
    # With the softmax in the graph, each window's mirror runs there too (in the same network batch) and the graph
    # returns the pair's sum: half the full-resolution flips and additions the protocol would make.
    mirrored = fused and settings.flip and settings.batch_size >= 2
    per_input = 2 if mirrored else 1  # network inputs per protocol input
    lent = isinstance(forward, LendingForward)  # (unless fused) each batch's logits are added up before the next

    fit: MemoryFit | None = getattr(forward, "memory_fit", None)

    def network(inputs: list[_Input]) -> torch.Tensor:
        batch = torch.stack([i.tensor for i in inputs])
        with torch.inference_mode():
            if fused:
                scores = forward.probabilities(batch, mirrored=mirrored)  # type: ignore[attr-defined]
            elif lent:
                scores = forward.lend(batch)  # type: ignore[attr-defined]
            else:
                scores = forward(batch)
        logits = torch.as_tensor(scores).to(device)  # or, fused, the probabilities
        if logits.dim() != 4 or logits.shape[0] != batch.shape[0] or logits.shape[2:] != batch.shape[2:]:
            raise PSPNetError(f"the network returned logits of shape {tuple(logits.shape)} for an input of shape "
                              f"{tuple(batch.shape)}; expected N×C×{batch.shape[2]}×{batch.shape[3]}")
        return logits

    def run(inputs: list[_Input]) -> None:
        if fit is None:
            add(inputs, network(inputs))
            return
        start = 0
        while start < len(inputs):
            part = inputs[start:start + fit.part(len(inputs) - start, per_input)]
            logits = None
            try:
                logits = network(part)
            except RuntimeError as e:
                if not is_out_of_memory(e):
                    raise
            if logits is None:  # out of the except block: the failed forward's tensors (its traceback's) are freed
                fit.failed(len(part), per_input, part[0].tensor.shape)
                continue
            add(part, logits)  # the sums: not retried (a failure here is raised)
            del logits
            start += len(part)

    def add(inputs: list[_Input], logits: torch.Tensor) -> None:
        nonlocal scratch
        softmax = settings.average == "probs" and not fused
        if softmax and scratch.numel() < logits[0].numel():
            scratch = torch.empty(logits[0].numel(), dtype=torch.float32, device=device)
        for inp, p in zip(inputs, logits, strict=True):
            p = torch.softmax(p.float(), dim=0, out=scratch[: p.numel()].view(p.shape)) if softmax else p.float()
            job = inp.job
            if job.probs is None:
                job.probs = torch.zeros((p.shape[0], *job.size), dtype=torch.float32, device=device)
                job.count = torch.zeros(job.size, dtype=torch.float32, device=device)
            h, w = p.shape[1:]
            job.probs[:, inp.top:inp.top + h, inp.left:inp.left + w] += p.flip(-1) if inp.flipped else p
            job.count[inp.top:inp.top + h, inp.left:inp.left + w] += per_input
            job.remaining -= per_input
            if job.remaining == 0:
                finish(job)

    def finish(job: _ScaleJob) -> None:
        assert job.probs is not None and job.count is not None
        (top, left), (h, w) = job.offset, job.scaled
        probs = job.probs[:, top:top + h, left:left + w].div_(job.count[top:top + h, left:left + w])
        probs = resize_bilinear(probs[None], job.original)[0]
        i = job.image
        totals[i] = probs if totals[i] is None else totals[i] + probs  # type: ignore[operator]
        job.probs = job.count = None

    for inp in _inputs(images, settings, mean, std, device, mirrored):
        key = tuple(inp.tensor.shape)
        group = pending.setdefault(key, [])
        group.append(inp)
        if (len(group) + 1) * per_input > settings.batch_size:  # another would not fit the network batch
            run(pending.pop(key))
    for inputs in pending.values():
        run(inputs)
    scales = len(settings.scales)
    return [t if scales == 1 else t.div_(scales) for t in totals]  # type: ignore[union-attr]


def segment(forward: Forward, images: Sequence[torch.Tensor], settings: InferenceSettings,
            mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Label maps H×W (int64, on `device`) for each uint8 3×H×W RGB image, by the test protocol."""
    # max(dim=0).indices is argmax (the first of tied maxima), 9× faster on a CPU for a C×H×W tensor (29 → 3 ms for
    # CamVid's 11×360×480): argmax reduces over the outer dimension one element at a time.
    return [p.max(dim=0).indices for p in infer_probabilities(forward, images, settings, mean, std, device)]


def segment_with_confidence(forward: Forward, images: Sequence[torch.Tensor], settings: InferenceSettings,
                            mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"
                            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`segment`'s label maps, each with its confidence H×W (float32): the predicted class's probability, as the
    protocol averaged it (with averaged logits, the mmseg presets: the softmax of the average)."""
    out = []
    for p in infer_probabilities(forward, images, settings, mean, std, device):
        top = p.max(dim=0)
        confidence = top.values if settings.average == "probs" else torch.exp(top.values - torch.logsumexp(p, dim=0))
        out.append((top.indices, confidence))
    return out


def segment_and_confidence(forward: Forward, images: Sequence[torch.Tensor], settings: InferenceSettings,
                           mean: Sequence[float], std: Sequence[float], device: torch.device | str,
                           confidence: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Each image's label map, with its confidence (`segment_with_confidence`) where `confidence` asks for it, else
    None: the confidence costs a second reduction over the classes, so it is computed only for whoever writes it."""
    if confidence:
        return segment_with_confidence(forward, images, settings, mean, std, device)
    return [(labels, None) for labels in segment(forward, images, settings, mean, std, device)]


def network_inputs(images: Sequence[torch.Tensor], settings: InferenceSettings, mean: Sequence[float],
                   std: Sequence[float]) -> Iterator[torch.Tensor]:
    """Every normalised 3×h×w window (and mirror) the protocol feeds the network for `images`, in order: what
    post-training quantisation calibrates on."""
    for inp in _inputs(images, settings, mean, std, "cpu"):
        yield inp.tensor


def _inputs(images: Sequence[torch.Tensor], settings: InferenceSettings, mean: Sequence[float],
            std: Sequence[float], device: torch.device | str, mirrored: bool = False) -> Iterator[_Input]:
    """Network inputs for every image, scale, window and flip, built lazily so memory stays bounded. `mirrored`:
    the mirror images are left to the network (each window stands for itself and its mirror)."""
    for index, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3:
            raise PSPNetError(f"image {index}: shape {tuple(image.shape)}; expected 3×H×W RGB")
        height, width = image.shape[1:]
        raw = image.to(device).float()[None]
        for scale in settings.scales:
            if settings.short_side is not None:
                size = keep_ratio_size(height, width, scale * settings.base_size, scale * settings.short_side)
            else:
                size = scaled_size(height, width, round(scale * (settings.base_size or max(height, width))))
            # As the official code: the image is float32 before it is resized, and nothing rounds it afterwards.
            scaled = resize_bilinear(raw, size)
            x = normalize(scaled, mean, std)
            if settings.mode == "whole":
                positions, crop, offset = [(0, 0)], size, (0, 0)
            else:
                x, offset = pad_center(x, settings.crop_size, value=0.0)
                crop = settings.crop_size
                positions = window_positions(x.shape[2], x.shape[3], crop, settings.stride_rate)
            copies = 2 if settings.flip else 1
            job = _ScaleJob(index, (height, width), size, offset, (x.shape[2], x.shape[3]), len(positions) * copies)
            for top, left in positions:
                window = x[0, :, top:top + crop[0], left:left + crop[1]]
                yield _Input(job, window, top, left, False)
                if settings.flip and not mirrored:
                    yield _Input(job, window.flip(-1), top, left, True)
