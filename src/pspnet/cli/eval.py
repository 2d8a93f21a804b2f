"""`pspnet eval CHECKPOINT --config F | --images DIR --labels DIR | --list FILE`: the paper's test protocol.

Under `torchrun` every process evaluates its shard of the images and the confusion matrices are summed: the scores
are those of one process, exactly. Rank 0 prints and writes the results; each process saves its own predictions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pspnet.classes import IGNORE_INDEX, KNOWN, Color, DatasetInfo
from pspnet.cli.backend_options import add_backend_argument, backend_forward, execution_record
from pspnet.cli.inference_options import (
    add_inference_arguments,
    check_protocol_options,
    recorded_protocol_note,
    settings_from_args,
    unused_crop_note,
)
from pspnet.cli.listing import print_first
from pspnet.cli.model_folder import use_model_folder
from pspnet.cli.output_options import (
    add_output_arguments,
    check_inputs_outside,
    check_outputs_shaped,
    chosen_label_values,
    legend_names,
)
from pspnet.cli.recipe_options import add_recipe_arguments
from pspnet.data.imageops import ColourCodedLabel
from pspnet.data.label_values import holds_indices, ignoring_option, no_class_note
from pspnet.data.lists import LIST_SUFFIXES
from pspnet.distributed import Distributed, barrier, run_in_processes
from pspnet.engine.evaluate import evaluate, first_label_failures, format_table
from pspnet.engine.inference import MMSEG_PRESETS, MMSEG_SHORT_SIDE, InferenceSettings
from pspnet.engine.metrics import UnscoredValues, per_image_csv
from pspnet.engine.predict import DEFAULT_OUTPUTS, BackgroundWriter, ImagePrediction, PredictionLayout
from pspnet.errors import PSPNetError
from pspnet.files import (
    check_new_outputs,
    check_not_inputs,
    check_output_file,
    check_output_folder,
    write_atomically,
    write_text_atomically,
)
from pspnet.run_folder import is_run_folder
from pspnet.weights import find

OUT_FILES = ("scores.json", "confusion.csv", "per_image.csv")  # what --out holds besides predictions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a checkpoint, a training run's folder (its best model; without data "
                   "options, its config's validation split), a published model's name (`pspnet models`), or an "
                   ".onnx (ONNX Runtime or OpenVINO) or .xml (OpenVINO) file written by `pspnet export`")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="with --config: override its data: and val: settings, e.g. data.root=/data/camvid "
                        "val.flip=false; with --images/--labels or --list: data.label_values=[0,255] or "
                        "data.ignore_values=[11], how the labels are read")
    src = p.add_argument_group("data (one of --config, --images/--labels, --list)")
    src.add_argument("--config", type=Path,
                     help="a YAML file with the data settings (top level or under 'data:'); its 'val:' section, when "
                          "present, is the protocol (as in training's validation), options given here win")
    src.add_argument("--split", default="val", help="split of --config to evaluate (default val)")
    src.add_argument("--images", type=Path, help="a folder of images NAME.*, with --labels")
    src.add_argument("--labels", type=Path, help="a folder of label PNGs NAME.png (class indices)")
    src.add_argument("--label-suffix", metavar="S",
                     help="with --labels: the label of NAME.jpg is NAME<S> (default .png; e.g. _mask.png)")
    src.add_argument("--list", type=Path, help="a list file of 'IMAGE LABEL' lines")
    src.add_argument("--root", type=Path, help="what --list paths are relative to (default: the list's folder, as "
                     "predict reads lists)")
    src.add_argument("--ignore-index", type=int, help="label value to ignore (default: the config's, else 255)")
    src.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images (a quick check)")
    src.add_argument("--workers", type=int, default=2, help="image-reading processes (default 2; 0 = none)")
    out = p.add_argument_group("outputs")
    out.add_argument("--json", type=Path, metavar="FILE", help="write the scores and confusion matrix as JSON")
    out.add_argument("--out", type=Path, metavar="DIR",
                     help="write scores.json, confusion.csv and per_image.csv (each image's mIoU, accuracy and "
                          "largest confusion, the worst first) here, and predictions with --save-predictions")
    out.add_argument("--save-predictions", action="store_true",
                     help="save the predictions as `pspnet predict` does: DIR/NAME.png (class indices, what `pspnet "
                          "score --pred DIR` reads), DIR/color/NAME.png and DIR/overlay/NAME.png (see --outputs)")
    add_output_arguments(out, videos=False)
    out.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    out.add_argument("--report", type=Path, metavar="DIR", help="write charts, sample grids and index.html here")
    out.add_argument("--samples", type=int, default=6,
                     help="images in each of the report's grids: spread over the set, and the lowest per-image mIoU "
                          "(default 6)")
    out.add_argument("--quiet", "--no-progress", action="store_true", dest="quiet", help="no progress bar")
    add_inference_arguments(p)
    add_recipe_arguments(p)
    add_backend_argument(p)


@dataclass
class NamedData:
    """The evaluation data the options name, read before the model loads (a conversion or a download can take
    seconds): --config's split built, or the pairs of --images/--labels or --list."""

    source: str
    dataset: Any = None  # --config: its split
    pairs: list[Any] | None = None  # --images/--labels, --list: made a dataset once the class count is known
    protocol: InferenceSettings | None = None  # --config's val: section
    ignore: int = IGNORE_INDEX
    notes: list[str] = field(default_factory=list)  # what is left out: labels without an image


def data_options(args: argparse.Namespace) -> list[str]:
    """Which of --config, --images/--labels, --list name the data."""
    return [name for name, v in (("--config", args.config), ("--images/--labels", args.images or args.labels),
                                 ("--list", args.list)) if v is not None]


def read_eval_data(args: argparse.Namespace) -> NamedData:
    """The data of exactly one of --config, --images/--labels, --list, with the mistakes that can be told before the
    model loads: overrides without a config, a missing list or folder, no images, and images none of whose labels
    exist (a wrong folder or root, said at once rather than image by image after the evaluation)."""
    from pspnet.configfile import from_dict
    from pspnet.data.config import check_overrides_without_config, load_data_config
    from pspnet.data.datasets import build_dataset, folder_pair
    from pspnet.data.lists import pair_folders, read_list, unpaired_labels, unpaired_note, windows_separators

    given = data_options(args)
    if len(given) != 1:
        run_config = [p / "config.yaml" for p in (args.checkpoint.parent, args.checkpoint.parent.parent)
                      if args.checkpoint.is_file() and (p / "config.yaml").is_file()]
        hint = (f"; --config {run_config[0]} scores the validation split of the run that trained it"
                if run_config and not given else "")
        raise PSPNetError(f"name the data with exactly one of --config, --images/--labels, --list (got "
                          f"{', '.join(given) or 'none'}){hint}")
    check_overrides_without_config(args.overrides, args.config)
    if args.config is not None:
        origins: dict[str, str] = {}
        cfg, raw = load_data_config(args.config, args.overrides, sections=("data", "val"), origins=origins)
        protocol = None
        if isinstance(raw, dict) and raw.get("val") is not None:
            protocol = from_dict(InferenceSettings, raw["val"], str(args.config), "val.", origins)
        dataset = build_dataset(cfg, args.split)
        notes = []
        if cfg.dataset == "folders":  # with data.val_fraction the val split is drawn from the train folders
            split = "train" if cfg.val_fraction > 0 and args.split == "val" else args.split
            if note := unpaired_note(*folder_pair(cfg, split), cfg.label_suffix, "data.label_suffix:"):
                notes.append(note)
        return NamedData(str(args.config), dataset=dataset, protocol=protocol,
                         ignore=cfg.ignore_index if args.ignore_index is None else args.ignore_index, notes=notes)
    ignore = IGNORE_INDEX if args.ignore_index is None else args.ignore_index
    if args.list is not None:
        root = args.list.parent if args.root is None else args.root
        pairs, source = read_list(args.list, root), str(args.list)
        if pairs and not any(pair.image.is_file() for pair in pairs):
            raise PSPNetError(f"{args.list}: none of its {len(pairs)} images is there (the first would be "
                              f"{pairs[0].image}); its paths are taken relative to "
                              f"{'--root ' + str(args.root) if args.root is not None else 'its folder'}: --root DIR "
                              f"names another{windows_separators(pairs[0].image)}")
    else:
        if args.images is None or args.labels is None:
            raise PSPNetError("--images and --labels go together: the image folder and the label folder")
        pairs, source = pair_folders(args.images, args.labels, args.label_suffix), f"{args.images} + {args.labels}"
        if itself := next((pair.image for pair in pairs if pair.image.resolve() == pair.label.resolve()), None):
            raise PSPNetError(f"--images {args.images}, --labels {args.labels}: {itself} would be scored as its own "
                              "label; expected the images' folder and the labels' (or, in one folder, labels named "
                              "by a --label-suffix such as _mask.png)")
        if pairs and not any(pair.label.is_file() for pair in pairs):
            _, suffix = unpaired_labels(args.images, args.labels, args.label_suffix)
            hint = (f"; its labels are named NAME{suffix}: --label-suffix {suffix}" if suffix else
                    f"; an image NAME.* is paired with the label NAME{args.label_suffix} at the same path")
            raise PSPNetError(f"--labels {args.labels}: holds the label of none of the {len(pairs)} images of "
                              f"--images {args.images} (the first, {pairs[0].image.name}, would be "
                              f"{pairs[0].label}){hint}")
    if not pairs:
        raise PSPNetError(f"{source}: no images to evaluate")
    notes = []
    if args.list is None and (note := unpaired_note(args.images, args.labels, args.label_suffix, "--label-suffix")):
        notes.append(note)
    return NamedData(source, pairs=pairs, ignore=ignore, notes=notes)


def build_eval_dataset(args: argparse.Namespace, info: DatasetInfo, named: NamedData, say: bool = True) -> Any:
    """The dataset of `named` for a model of `info`'s classes (--config's must have as many), cut to --limit.
    Ground truth named by --images/--labels or --list is read as the model's training read its labels (0/255 masks
    through the `data.label_values` it recorded), and the line says so."""
    from pspnet.data.config import data_config_from_options
    from pspnet.data.datasets import SegmentationDataset
    from pspnet.data.label_values import LabelValues
    from pspnet.engine.label_formats import trained_label_coding

    num_classes = info.num_classes

    if named.dataset is not None:
        dataset = named.dataset
        if dataset.info.num_classes != num_classes:
            raise PSPNetError(f"{args.config}: the data has {dataset.info.num_classes} classes but "
                              f"{args.checkpoint} predicts {num_classes}")
    else:
        if args.overrides:  # data.label_values / data.ignore_values: the labels' coding, given on the command line
            coding = data_config_from_options({"dataset": "folders", "num_classes": num_classes,
                                               "ignore_index": named.ignore}, args.overrides).label_coding()
        else:
            coding = trained_label_coding(info, named.ignore)
        if coding is not None and say and not args.overrides:
            if isinstance(coding, LabelValues) and coding.indices:
                how = (f"the class indices, the values {' '.join(map(str, coding.ignore))} ignored as in the model's "
                       "training (data.ignore_values)")
            elif isinstance(coding, LabelValues):
                how = coding.listed_in
            else:
                how = f"the {len(coding.colors)} class colours the model was trained with (data.label_colors)"
            print(f"ground truth: read with {how}; --config F with a data: section reads it otherwise",
                  file=sys.stderr)
        dataset = SegmentationDataset(named.pairs, DatasetInfo.generic(num_classes), "eval", named.source, coding)
    if args.limit is not None:
        dataset.pairs = dataset.pairs[: args.limit]
    if len(dataset) == 0:
        raise PSPNetError(f"{dataset.source}: no images to evaluate")
    return dataset


def check_first_labels(args: argparse.Namespace, dataset: Any, num_classes: int, ignore: int,
                       palette: Sequence[Color]) -> None:
    """Where none of the first labels reads (`first_label_failures`), the first one's error at once, with the setting
    that reads such labels (the model's own `palette` where the colours are those), before the network runs."""
    failures = first_label_failures(dataset, num_classes, ignore)
    if not failures:
        return
    first, rest = failures[0], len(failures) - 1
    others = "" if not rest else " (the next label too)" if rest == 1 else f" (the next {rest} labels too)"
    if all(isinstance(e, UnscoredValues) for e in failures):
        values = sorted({v for e in failures for v in e.values})  # type: ignore[attr-defined]
        note = no_class_note(values, num_classes, ignore, what="ground-truth", ignoring=ignoring_option(
            values, args.config, any(e.ignored for e in failures)))  # type: ignore[attr-defined]
        raise PSPNetError(f"{dataset.pairs[0].label}{others}: {note}; nothing was evaluated")
    hint = ""
    if isinstance(first, ColourCodedLabel) and first.colors <= set(palette):
        listed = ",".join(f"[{r},{g},{b}]" for r, g, b in palette)
        hint = f"; its colours are the model's class colours: data.label_colors=[{listed}] reads them"
    raise PSPNetError(f"{first}{others}{hint}; nothing was evaluated")


def check_not_a_config(args: argparse.Namespace) -> None:
    """A config or list file where the model goes (`pspnet eval configs/camvid.yaml best.safetensors`) is said with
    the command that was meant, before the data options are asked for."""
    path = args.checkpoint
    suffix = path.suffix.lower()
    option = "--config" if suffix in (".yaml", ".yml") else "--list" if suffix in LIST_SUFFIXES else None
    if option is None:
        return
    what = "a config file" if option == "--config" else "a list file"
    if option == "--config" and is_run_folder(path.parent) and path.name == "config.yaml":
        raise PSPNetError(f"{path}: {what} where the model goes; `pspnet eval {path.parent}` evaluates the run's best "
                          "model on this config's validation split")
    models = [o for o in args.overrides if "=" not in o]
    model, which = (models[0], "") if len(models) == 1 else (
        "MODEL", " (MODEL: a checkpoint, a training run's folder or a published model's name)")
    raise PSPNetError(f"{path}: {what} where the model goes; the model comes first: pspnet eval {model} {option} "
                      f"{path}{which}")


def published_preset(args: argparse.Namespace, dataset: str) -> str | None:
    """For a catalogue name evaluated without protocol options, the test behind its published mIoU: mmseg's for its
    zoo, the paper's multi-scale one where the authors published only that (their VOC model); None for the paper's
    single-scale test, the default anyway."""
    given = (args.preset, args.base_size, args.crop_size, args.scales, args.flip, args.mode)
    if any(v is not None for v in given) or Path(args.checkpoint).exists():
        return None
    entry = find(str(args.checkpoint))
    if entry is None or entry.test_preset in (None, "ss"):
        return None
    if entry.test_preset in MMSEG_PRESETS and dataset not in MMSEG_SHORT_SIDE:
        return None
    return entry.test_preset


def published_preset_note(args: argparse.Namespace, preset: str) -> str:
    """The line that says `published_preset`'s choice, and where the published score was measured on the test set."""
    entry = find(str(args.checkpoint))
    assert entry is not None
    other = "--preset ss for the paper's" if preset in MMSEG_PRESETS else "--preset ss for single scale"
    where = entry.train.get("evaluated_on")
    test_set = (f"; its published {entry.mIoU_ms_flip if preset == 'ms' else entry.mIoU} is on the test set, scored "
                "by the benchmark's server, not on the labels given here" if where == "testset" else "")
    return f"protocol: --preset {preset}, the test of {args.checkpoint}'s published mIoU ({other}){test_set}"


def check_label_suffix(args: argparse.Namespace) -> None:
    """--label-suffix pairs --images with --labels; given with --list or --config it would change nothing."""
    if args.label_suffix is not None and args.images is None:
        raise PSPNetError(f"--label-suffix {args.label_suffix}: pairs --images with --labels; a --list names each "
                          "label itself, and a --config's folders take data.label_suffix")
    args.label_suffix = args.label_suffix or ".png"


def check_counts(args: argparse.Namespace) -> None:
    for option, value, least in (("--samples", args.samples, 0), ("--workers", args.workers, 0),
                                 ("--limit", args.limit, 1)):
        if value is not None and value < least:
            raise PSPNetError(f"{option} {value}: expected {least} or more")
    if args.ignore_index is not None and not 0 <= args.ignore_index <= 255:  # as score and data.ignore_index
        raise PSPNetError(f"--ignore-index {args.ignore_index}: expected 0..255 (labels are 8-bit)")


def prediction_layout(args: argparse.Namespace, info: DatasetInfo, say: bool) -> PredictionLayout | None:
    """Where and what --save-predictions writes (None without it); --outputs and --label-values shape it."""
    given = [f"--{name.replace('_', '-')}" for name in ("outputs", "label_values", "legend") if getattr(args, name)]
    if not args.save_predictions:
        if given:
            raise PSPNetError(f"{given[0]} chooses what --save-predictions writes; add --save-predictions (and "
                              "--out DIR)")
        return None
    if args.out is None:
        raise PSPNetError("--save-predictions needs --out DIR to save them in")
    kinds = tuple(args.outputs or DEFAULT_OUTPUTS)
    check_outputs_shaped(args, kinds)
    return PredictionLayout(args.out, kinds, chosen_label_values(args, info, kinds, say), legend_names(args, info))


def check_output_places(args: argparse.Namespace) -> None:
    """Before the network loads: the output file and folders can be written (the files of each image: later)."""
    if args.json is not None:
        check_output_file(args.json, "--json", args.overwrite)
    for folder, option in ((args.out, "--out"), (args.report, "--report")):
        if folder is not None:
            check_output_folder(folder, option)
    if args.report is not None:  # said after the evaluation, it cost the whole run
        from pspnet.engine.report import require_matplotlib

        require_matplotlib()


def check_outputs(args: argparse.Namespace, dataset: Any, layout: PredictionLayout | None) -> None:
    """Every output path, before any compute (their places checked by `check_output_places` already): no file of an
    earlier run replaced without --overwrite, and no input."""
    inputs = [path for pair in dataset.pairs for path in (pair.image, pair.label)]
    if args.json is not None:
        check_not_inputs([args.json], inputs, "--json")
    if args.out is not None:
        planned = [args.out / name for name in OUT_FILES]
        if layout is not None:  # predictions in the images' folder would be taken for images by the next run
            check_inputs_outside(args.out, inputs)
            writers: dict[Path, Path] = {}
            for pair in dataset.pairs:  # one image's predictions must not replace another's (a.jpg and a.png)
                for f in layout.image_files(pair.name):
                    if f in writers:
                        raise PSPNetError(f"--save-predictions: {writers[f]} and {pair.image} both write {f}; rename "
                                          "one of them, or evaluate them in separate runs")
                    writers[f] = pair.image
            planned += list(writers)
        check_new_outputs(planned, inputs, args.overwrite, "--out")
    if args.report is not None:
        from pspnet.engine.report import REPORT_FILES

        report = [args.report / name for name in REPORT_FILES]
        saved = {f.resolve() for f in planned} if args.out is not None else set()
        if clash := next((f for f in report if f.resolve() in saved), None):  # an image named iou.png, say
            raise PSPNetError(f"--report {args.report}: its {clash.name} would replace a file --out writes there "
                              "(a prediction of the same name); give --report a folder of its own")
        check_new_outputs(report, inputs, args.overwrite, "--report")


def run(args: argparse.Namespace) -> int:
    return run_in_processes(args.device, lambda processes: evaluate_command(args, processes), "run pspnet eval")


def evaluate_command(args: argparse.Namespace, processes: Distributed) -> int:
    check_counts(args)
    check_label_suffix(args)
    check_protocol_options(args)
    device, main = processes.device, processes.is_main
    check_not_a_config(args)
    run_folder = use_model_folder(args, say=main)
    if run_folder is not None and not data_options(args):
        args.config = run_folder / "config.yaml"
        if main:
            print(f"data: the {args.split} split of the run's config (--config {args.config})", file=sys.stderr)
    named = read_eval_data(args)
    for note in named.notes if main else []:
        print(f"pspnet eval: note: {note}", file=sys.stderr)
    check_output_places(args)
    forward, info, how, recipe = backend_forward(args, device, say=main)
    dataset, ignore, protocol = build_eval_dataset(args, info, named, main), named.ignore, named.protocol
    check_first_labels(args, dataset, info.num_classes, ignore, info.palette)
    if (preset := published_preset(args, info.name)) is not None:
        args.preset = preset
        if main:
            print(published_preset_note(args, preset), file=sys.stderr)
    settings = settings_from_args(args, info, protocol)
    if main and (note := recorded_protocol_note(args, info, protocol is not None)):
        print(note, file=sys.stderr)
    if main and (note := unused_crop_note(args, settings)):
        print(note, file=sys.stderr)
    layout = prediction_layout(args, info, say=main)
    check_outputs(args, dataset, layout)
    barrier(processes)  # every process has checked the outputs before any writes them
    # With --save-predictions the PNGs are written in a second thread while the next images are evaluated.
    writer = BackgroundWriter(layout, info.palette) if layout is not None else None

    def save(name: str, image: torch.Tensor, pred: torch.Tensor, confidence: torch.Tensor | None) -> None:
        assert writer is not None
        writer.submit([ImagePrediction(name, image.permute(1, 2, 0).numpy(), pred.cpu().numpy(),
                                       None if confidence is None else confidence.cpu().numpy())])

    shards = f", {processes.world_size} processes" if processes.enabled else ""
    if main:
        print(f"{args.checkpoint}: {len(dataset)} images; protocol: {settings.describe()}; device {device}{shards}, "
              f"{how}", file=sys.stderr)
    with writer or contextlib.nullcontext():
        result = evaluate(forward, dataset, settings, info, device, ignore_index=ignore, workers=args.workers,
                          num_samples=args.samples if args.report else 0,  # over the whole split
                          on_prediction=save if writer is not None else None, progress=main and not args.quiet,
                          processes=processes, confidence=layout is not None and "confidence" in layout.kinds)
        if writer is not None:
            writer.close()
    if not main:
        return 1 if result.failures else 0
    print_first([f"skipped {message}" for message in result.failures], "pspnet eval: ", "images skipped",
                listed=args.json is not None or args.out is not None)
    if result.unscored:  # the model's classes are fixed: ignoring the values is the only way
        note = no_class_note(result.unscored, info.num_classes, ignore, what="ground-truth", ignoring=ignoring_option(
            result.unscored, args.config, result.unscored_beside_ignored))
        print(f"pspnet eval: note: {note}", file=sys.stderr)
    recodable = holds_indices(dataset.label_coding) and dataset.info.name not in KNOWN  # index labels of the user's
    if result.images and (note := result.absent_classes_note(info.classes, ignore, recodable, args.config is None)):
        print(f"pspnet eval: note: {dataset.source}: {note}", file=sys.stderr)
    if result.images:  # else a table of n/a: the skipped images above say why
        print(format_table(result.scores, info.classes))
    print(f"{result.images} of {len(dataset)} images scored ({how})")
    doc = result.scores.to_dict(info.classes) | {
        "images": result.images, "checkpoint": str(args.checkpoint), "settings": asdict(settings),
        "recipe": execution_record(forward, how, recipe, args.backend), "processes": processes.world_size,
        "device": str(device), "ignore_index": ignore, "ignored_pixels": result.ignored,
        "confusion_matrix": result.matrix.tolist(),
        "failures": result.failures}
    targets = [args.json] if args.json else []
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        targets.append(args.out / "scores.json")
        # Each file whole or not at all (write_atomically): a full disk leaves none cut short, and says which.
        write_atomically(args.out / "confusion.csv", lambda tmp: np.savetxt(
            tmp, result.matrix.numpy(), fmt="%d", delimiter=",",
            header=",".join(info.classes) + "  (rows: ground truth, columns: prediction)"))
        table = per_image_csv(result.per_image, info.classes)
        write_text_atomically(args.out / "per_image.csv", table)
    text = json.dumps(doc, indent=1) + "\n"
    for path in targets:
        write_text_atomically(path, text)
    if args.report is not None:
        from pspnet.engine.report import write_report

        index = write_report(args.report, result.scores, result.matrix, info.classes, info.palette, result.samples,
                             title=f"pspnet eval {args.checkpoint.name} ({how})", worst=result.worst)
        print(f"report: {index}", file=sys.stderr)
    return 1 if result.failures else 0
