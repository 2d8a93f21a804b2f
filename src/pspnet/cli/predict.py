"""`pspnet predict CHECKPOINT INPUT... --out DIR`: label, colour, overlay (and confidence) PNGs for images; overlay
and colour videos, and label and confidence PNGs per frame, for videos.

Under `torchrun` every process segments its share of the images (each exactly once, one device per process) into the
same --out, and its share of each video's frames, which the first process gathers and writes; the first process
prints the checks and the summary of the whole run."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pspnet.cli.backend_options import add_backend_argument, backend_forward
from pspnet.cli.inference_options import (
    add_inference_arguments,
    check_protocol_options,
    protocol_note,
    settings_from_args,
    unused_crop_note,
)
from pspnet.cli.model_folder import use_model_folder
from pspnet.cli.output_options import (
    add_output_arguments,
    check_inputs_outside,
    check_outputs_shaped,
    chosen_label_values,
    legend_names,
)
from pspnet.cli.recipe_options import add_recipe_arguments
from pspnet.data.imageops import read_image, to_tensor
from pspnet.distributed import Distributed, all_reduce_sum, barrier, run_in_processes, shard_indices
from pspnet.engine.inference import fill_batches, segment_and_confidence
from pspnet.engine.predict import (
    DEFAULT_OUTPUTS,
    DEFAULT_VIDEO_OUTPUTS,
    FRAME_KINDS,
    FRAME_PATTERN,
    BackgroundWriter,
    ImagePrediction,
    PredictionLayout,
    declared_frames,
    expand_inputs,
    is_video,
    predict_video,
    require_av,
)
from pspnet.errors import PSPNetError
from pspnet.files import check_new_outputs, check_output_folder
from pspnet.progress import progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a checkpoint, a training run's folder (its best model), a published "
                   "model's name (`pspnet models`), or an .onnx (ONNX Runtime or OpenVINO) or .xml (OpenVINO) file "
                   "written by `pspnet export`")
    add_backend_argument(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders, glob patterns, or list files (.txt, .lst: an image path "
                        "first on each line, relative to the list's folder, e.g. a dataset's val.txt)")
    p.add_argument("--recursive", action="store_true",
                   help="a folder's subfolders too (e.g. Cityscapes' leftImg8bit/val/CITY/): the outputs mirror its "
                        "tree, DIR/CITY/NAME.png, DIR/color/CITY/NAME.png, ...; --out inside it is left out")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="writes DIR/NAME.png (class indices: what `pspnet score --pred DIR` reads), "
                        "DIR/color/NAME.png, DIR/overlay/NAME.png; videos DIR/overlay/NAME.mp4 (see --outputs). Not "
                        "a folder that holds inputs")
    add_output_arguments(p, videos=True)
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out the inputs whose outputs are all in --out already (to finish an interrupted run: "
                        "each file is written whole or not at all); the others are predicted, their partial outputs "
                        "replaced")
    p.add_argument("--quiet", "--no-progress", action="store_true", dest="quiet", help="no progress bar")
    add_inference_arguments(p)
    add_recipe_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_in_processes(args.device, lambda processes: predict_command(args, processes), "run pspnet predict")


def clash_with(outputs: list[Path], frame_folders: list[Path], writers: dict[Path, Path], folders: dict[Path, Path]
               ) -> tuple[Path, Path] | None:
    """(an output, the earlier input that writes it) where an input's outputs meet an earlier input's: the same file,
    a file inside an earlier video's frame folder (OUT/NAME/), or a frame folder holding an earlier input's file
    (the image NAME/000000.png of a --recursive tree beside the video NAME.mp4); None where they do not."""
    for f in outputs:
        if f in writers:
            return f, writers[f]
        for folder, video in folders.items():
            if f.is_relative_to(folder):
                return folder, video
    for folder in frame_folders:
        for f, other in writers.items():
            if f.is_relative_to(folder):
                return f, other
    return None


def frames_complete(folder: Path, video: Path) -> bool:
    """Whether a video's frame folder holds a PNG for each frame its container declares (at least one where it
    declares none): --skip-existing does the video again otherwise."""
    return folder.is_dir() and len(list(folder.glob(FRAME_PATTERN))) >= (declared_frames(video) or 1)


def predict_command(args: argparse.Namespace, processes: Distributed) -> int:
    main = processes.is_main
    check_protocol_options(args)
    use_model_folder(args, say=main)
    found = expand_inputs(args.inputs, args.recursive, exclude=args.out)
    failures = list(found.problems) if main else []  # the whole run's problems, counted by the first process
    for message in (found.problems + found.notes) if main else []:
        print(f"pspnet predict: {message}", file=sys.stderr)
    layout = PredictionLayout(args.out, tuple(args.outputs or DEFAULT_OUTPUTS))
    video_layout = replace(layout, kinds=tuple(args.outputs or DEFAULT_VIDEO_OUTPUTS))
    check_outputs_shaped(args, layout.kinds + video_layout.kinds)
    check_output_folder(args.out, "--out")
    if args.skip_existing and args.overwrite:
        raise PSPNetError("--skip-existing and --overwrite: choose one (keep the outputs already written, or replace "
                          "them all)")
    files, planned, writers, written_before = [], [], {}, 0
    folders: dict[Path, Path] = {}  # a video's frame folders (OUT/NAME/): no other input's file may go inside
    for path in found.files:  # every output must be unique, else one input would overwrite another's
        name = found.name(path)
        outputs = video_layout.video_outputs(name) if is_video(path) else layout.image_files(name)
        frame_folders = [video_layout.frames(name, k) for k in FRAME_KINDS if k in video_layout.kinds] if is_video(
            path) else []
        if (clash := clash_with(outputs, frame_folders, writers, folders)) is not None:
            written_by, other = clash
            if other.resolve() == path.resolve():  # the same file twice (a glob and its folder): once
                if main:
                    print(f"pspnet predict: note: {path}: given twice; predicted once", file=sys.stderr)
                continue
            if main:
                failures.append(f"{path}: {other} already writes {written_by}; rename one of them")
                print(f"pspnet predict: {failures[-1]}", file=sys.stderr)
            continue
        writers.update({f: path for f in outputs})
        folders.update({folder: path for folder in frame_folders})
        if args.skip_existing and all(f.exists() for f in outputs) and all(
                frames_complete(folder, path) for folder in frame_folders):
            written_before += 1
            continue
        files.append(path)
        planned += outputs
    if written_before and main:
        rest = f"predicting the other {len(files)}" if files else "nothing left to predict"
        print(f"--skip-existing: {written_before} of {written_before + len(files)} inputs have their outputs in "
              f"{args.out} already; {rest}", file=sys.stderr)
    if args.skip_existing and not files and not failures:
        return 0

    refused = len(failures)  # inputs missing or clashing, left out before the run (counted on the first process)
    if not files:  # every argument failed (each said why): nothing to load the network for
        if main:
            print(f"pspnet predict: no input to predict ({len(failures)} problem(s) above)", file=sys.stderr)
        return 1
    check_inputs_outside(args.out, found.files)
    require_av([p for p in files if is_video(p)])
    # Before any compute. With --skip-existing, what exists of the inputs left to do is an interrupted run's.
    check_new_outputs(planned, found.files, args.overwrite or args.skip_existing, "--out", skippable=True)
    barrier(processes)  # every process has checked --out before any writes into it
    device = processes.device
    start = time.perf_counter()  # the run's time, as the user waits for it: loading the network included
    # The same protocol and outputs, whichever engine runs the network.
    forward, info, how, _ = backend_forward(args, device, purpose="predict", say=main)
    settings = settings_from_args(args, info)
    if main:
        print(f"{protocol_note(args, info)}: {settings.describe()}", file=sys.stderr)
    if main and (note := unused_crop_note(args, settings)):
        print(note, file=sys.stderr)
    values = chosen_label_values(args, info, layout.kinds + video_layout.kinds, say=main)
    legend = legend_names(args, info)
    layout, video_layout = (replace(lay, label_values=values, legend=legend) for lay in (layout, video_layout))
    # Images: every world_size-th to each process (all of them in one process); videos: every process takes part in
    # each, segmenting its share of the frames, the first process writing the outputs.
    all_images = [p for p in files if not is_video(p)]
    images = [all_images[i] for i in shard_indices(len(all_images), processes)]
    videos = [p for p in files if is_video(p)]
    bar = progress_bar(total=len(images), desc="predict" if not processes.enabled else "predict (this process)",
                       unit="img", disable=args.quiet or not images or not main, leave=False)
    written = 0

    def readable() -> Iterator[tuple[Path, np.ndarray]]:
        for path in images:
            try:
                image = read_image(path)
                if image.size == 0:
                    raise PSPNetError(f"{path}: image has no pixels")
            except PSPNetError as e:
                failures.append(str(e))
                tqdm.write(f"pspnet predict: {e}", file=sys.stderr)
                bar.update(1)
                continue
            yield path, image

    with BackgroundWriter(layout, info.palette) as writer:  # PNGs written while the network runs on the next group
        for group in fill_batches(readable(), settings, lambda item: item[1].shape[:2]):  # images share batches
            results = segment_and_confidence(forward, [to_tensor(im) for _, im in group], settings, info.mean,
                                             info.std, device, "confidence" in layout.kinds)
            done = writer.submit([ImagePrediction(found.name(path), image, labels.cpu().numpy(),
                                                  None if confidence is None else confidence.cpu().numpy())
                                  for (path, image), (labels, confidence) in zip(group, results, strict=True)])
            bar.update(done)
            written += done
        done = writer.close()
        bar.update(done)
        written += done
    bar.close()

    frame_count = 0
    for path in videos:  # said and counted by the first process, which writes them
        vbar = progress_bar(desc=path.name, unit="frame", disable=args.quiet or not main, leave=False)
        try:
            frames = predict_video(forward, path, found.name(path), video_layout, settings, info.mean, info.std,
                                   info.palette, device, on_frames=vbar.update, processes=processes)
        except PSPNetError as e:
            if main:
                failures.append(str(e))
                tqdm.write(f"pspnet predict: {e}", file=sys.stderr)
            continue
        finally:
            vbar.close()
        if main:
            written += 1
            frame_count += frames
            targets = ", ".join(str(p) for p in video_layout.video_outputs(found.name(path)))
            print(f"{path}: {frames} frame{'s' if frames != 1 else ''} → {targets}", file=sys.stderr)
            if (declared := declared_frames(path)) is not None and frames < declared:  # cut short or damaged
                failures.append(f"{path}: decoded {frames} of the {declared} frames its container declares (a "
                                "truncated or damaged file?); its outputs hold those")
                tqdm.write(f"pspnet predict: {failures[-1]}", file=sys.stderr)

    # The whole run's counts on every process (one process: its own), so that every process exits alike.
    counts = all_reduce_sum(torch.tensor([written, len(failures), len(images), frame_count], device=device),
                            processes)
    written, failed, image_count, frame_count = (int(c) for c in counts)
    seconds = time.perf_counter() - start
    if main:
        # The rate of the whole run: a video's frames are images segmented too.
        frames_said = f" ({frame_count} of them video frames)" if frame_count else ""
        rate = (f", {(image_count + frame_count) / seconds:.2f} images/s{frames_said}"
                if image_count + frame_count and written == len(files) else "")
        where = f"device {device}" + (f", {processes.world_size} processes" if processes.enabled else "")
        print(f"{written} of {len(files) + refused} inputs written to {args.out} in {seconds:.1f} s{rate} ({how}, "
              f"{where})",
              file=sys.stderr)
        if failed:
            print(f"pspnet predict: {failed} input(s) failed (see above)", file=sys.stderr)
    return 1 if failed else 0
