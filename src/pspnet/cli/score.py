"""`pspnet score --pred DIR --gt DIR --num-classes N`: score saved label PNGs against ground truth by file stem (with
--recursive, by path in the folders' trees)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from pspnet.classes import IGNORE_INDEX, DatasetInfo
from pspnet.cli.listing import print_first
from pspnet.data.check import absent_classes
from pspnet.data.config import check_overrides_without_config, data_config_from_options, load_data_config
from pspnet.data.datasets import dataset_info
from pspnet.data.imageops import LOSSY_LABELS, LOSSY_SUFFIXES, ColourCodedLabel, LabelOutOfRange, read_label
from pspnet.data.label_colors import LabelColors
from pspnet.data.label_values import LabelValues, holds_indices, ignoring_option, no_class_note
from pspnet.data.lists import tree_files, tree_name
from pspnet.engine.evaluate import format_table
from pspnet.engine.label_formats import label_values
from pspnet.engine.metrics import ConfusionMatrix, ImageScore, UnscoredValues, image_score, per_image_csv
from pspnet.engine.predict import OUTPUT_KINDS
from pspnet.errors import PSPNetError
from pspnet.files import check_not_inputs, check_output_file, near_miss, write_text_atomically

LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", type=Path, required=True, metavar="DIR", help="predicted label PNGs NAME.png")
    p.add_argument("--gt", type=Path, required=True, metavar="DIR", help="ground-truth label PNGs NAME.png")
    p.add_argument("--num-classes", type=int, metavar="N", help="classes 0..N-1 (or from --config)")
    p.add_argument("--config", type=Path, metavar="F", help="a data config (a training config's data: section or "
                   "the settings alone): its classes, ignore index and how the ground truth is coded (label colours "
                   "or values)")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="how the ground truth codes the classes: data.label_values=[0,255] (a value per class), "
                        "data.ignore_values=[11] (values of unlabelled pixels); with --config, any of its data: "
                        "settings, e.g. data.ignore_index=0")
    p.add_argument("--pred-values", nargs="+", metavar="V", help="how the predictions code the classes, as "
                   "`pspnet predict --label-values` wrote them: one value per class, cityscapes, ade20k, or data "
                   "(the ground truth's data.label_values); default: the class indices")
    p.add_argument("--ignore-index", type=int, help="ground-truth value to skip (default 255, or the config's)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write mIoU, mAcc, allAcc and per-class IoU/Acc")
    p.add_argument("--per-image", type=Path, metavar="CSV", help="write each image's mIoU, pixel accuracy and "
                   "largest confusion, the worst first")
    p.add_argument("--recursive", action="store_true", help="the folders' subfolders too, pairing files by their "
                   "path (CITY/NAME.png with CITY/NAME.png), as `pspnet predict --recursive` writes them; --pred's "
                   "color/, overlay/ and confidence/ folders are left out")
    p.add_argument("--pred-suffix", metavar="S", help="predictions are the files NAME<S> (others left out), e.g. "
                   "_leftImg8bit.png (default: any label file, NAME.png)")
    p.add_argument("--gt-suffix", metavar="S", help="ground truth is the files NAME<S> (others left out), e.g. "
                   "Cityscapes' _gtFine_labelTrainIds.png beside its _gtFine_color.png (default: any label file, "
                   "NAME.png)")
    p.add_argument("--overwrite", action="store_true", help="replace --json / --per-image if they exist")


def label_files(folder: Path, what: str, recursive: bool = False, leave_out: tuple[str, ...] = (),
                suffix: str | None = None) -> dict[str, Path]:
    """The label files in `folder` by name: their stem, or with `recursive` their path in its tree without the
    suffix (`CITY/NAME`), leaving out hidden files and folders and the top-level folders `leave_out`. With `suffix`,
    only the files whose names end in it, named without it (`NAME_gtFine_labelTrainIds.png` → `NAME`)."""
    if folder.is_file():
        raise PSPNetError(f"{folder}: a file; expected the folder of the {what} label PNGs (score pairs files by name)")
    if not folder.is_dir():
        raise PSPNetError(f"{folder}: no such {what} folder{near_miss(folder)}")
    files = tree_files(folder, LABEL_SUFFIXES) if recursive else sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES and not p.name.startswith("."))
    if suffix is None:
        names = {tree_name(p, folder): p for p in files}
    else:
        names = {p.relative_to(folder).as_posix()[: -len(suffix)]: p for p in files if p.name.endswith(suffix)
                 and len(p.name) > len(suffix)}
    return {name: p for name, p in names.items() if name.split("/")[0] not in leave_out or "/" not in name}


def lossy_note(folder: Path) -> str:
    """For a folder without label files: the JPEGs it holds instead, if any, and why they cannot be labels."""
    lossy = [p.name for p in sorted(folder.iterdir()) if p.suffix.lower() in LOSSY_SUFFIXES]
    return f"; it holds {len(lossy)} lossy file(s) ({lossy[0]}, …): {LOSSY_LABELS}" if lossy else ""


def no_pairs_error(args: argparse.Namespace, preds: dict[str, Path], gts: dict[str, Path]) -> PSPNetError:
    """The error when no prediction has the name of a ground-truth file: what each folder holds, and the
    --pred-suffix / --gt-suffix that pair them when the names differ only after a shared part (Cityscapes'
    NAME_leftImg8bit.png and NAME_gtFine_labelTrainIds.png)."""
    if not preds:
        suffix = f" named *{args.pred_suffix}" if args.pred_suffix else ""
        return PSPNetError(f"--pred {args.pred}: holds no label files{suffix} (`pspnet predict --out "
                           f"{args.pred}` writes NAME.png){lossy_note(args.pred)}")
    pred_files = sorted(p.relative_to(args.pred).as_posix() for p in preds.values())
    gt_files = sorted(p.relative_to(args.gt).as_posix() for p in gts.values())
    first = pred_files[0]
    shared = max(len(os.path.commonprefix([first, g])) for g in gt_files)
    while shared > 0 and first[shared - 1] not in "_-. /":  # the shared part ends at a separator
        shared -= 1
    if shared > 0 and first[shared - 1] != "/":
        shared -= 1  # the separator goes with the suffixes
    hint = "; a prediction pairs with the ground-truth file of its name"
    pred_suffix = first[shared:]
    if shared > 0 and pred_suffix and "/" not in pred_suffix and all(f.endswith(pred_suffix) for f in pred_files):
        names = {f[: -len(pred_suffix)] for f in pred_files}
        # A suffix several ground-truth files end in, which pairs them with the predictions (not one file's
        # name that happens to share a prefix with a prediction's).
        ends = {g[shared:] for g in gt_files if g[:shared] == first[:shared] and g[shared:]}
        paired = sorted(e for e in ends if sum(g.endswith(e) for g in gt_files) > 1
                        and names & {g[: -len(e)] for g in gt_files if g.endswith(e)})
        train_ids = [e for e in paired if "labelTrainIds" in e]  # Cityscapes' gtFine: the 19 classes models predict
        if train_ids:
            paired = train_ids
        if paired:
            choice = paired[0] if len(paired) == 1 else "one of " + ", ".join(paired[:4])
            hint = (f"; they differ after a shared part: --pred-suffix {pred_suffix} with --gt-suffix {choice} "
                    "pairs them")
    return PSPNetError(f"--pred {args.pred} and --gt {args.gt} share no file names ({len(preds)} prediction(s), e.g. "
                       f"{first}; {len(gts)} ground-truth file(s), e.g. {gt_files[0]}){hint}")


def ground_truth_settings(args: argparse.Namespace) -> tuple[int, int, LabelColors | LabelValues | None, list[str]]:
    """(classes, ignore index, how labels become indices, class names): from --config where given, the options win."""
    check_overrides_without_config(args.overrides, args.config)
    if args.config is None:
        if args.num_classes is None:
            raise PSPNetError("--num-classes N (or --config F): how many classes the labels hold")
        if args.num_classes < 2:
            raise PSPNetError(f"--num-classes {args.num_classes}: expected 2 or more (every class is scored, the "
                              "background too: a binary mask is 2 classes)")
        ignore = IGNORE_INDEX if args.ignore_index is None else args.ignore_index
        coding = data_config_from_options({"dataset": "folders", "num_classes": args.num_classes,
                                           "ignore_index": ignore}, args.overrides).label_coding()
        return args.num_classes, ignore, coding, DatasetInfo.generic(args.num_classes).classes
    cfg, _ = load_data_config(args.config, args.overrides)
    info = dataset_info(cfg)
    if args.num_classes is not None and args.num_classes != info.num_classes:
        raise PSPNetError(f"--num-classes {args.num_classes} but {args.config} has {info.num_classes} classes; "
                          "give one of them")
    ignore = cfg.ignore_index if args.ignore_index is None else args.ignore_index
    return info.num_classes, ignore, cfg.label_coding(), info.classes


def prediction_coding(spec: list[str] | None, num_classes: int, coding: LabelColors | LabelValues | None,
                      config: Path | None) -> LabelValues | None:
    """How the predicted PNGs' values become class indices (--pred-values), or None: they are the indices."""
    if not spec:
        return None
    if spec == ["data"]:
        if not isinstance(coding, LabelValues):
            where = f"{config} sets none" if config is not None else "neither --config nor an override gives them"
            raise PSPNetError(f"--pred-values data: the values come from data.label_values, but {where}; give one "
                              "value per class instead")
        return coding
    values = label_values(spec, num_classes, option="--pred-values")
    return LabelValues(tuple((v,) for v in values), listed_in="--pred-values nor a class index")


VALUES_HINT = "predictions written with `pspnet predict --label-values` are read with --pred-values (the same values)"


def read_prediction(path: Path, coding: LabelValues | None, num_classes: int, scored: np.ndarray) -> np.ndarray:
    """A predicted label PNG as class indices. Read as indices, a value that is no class index on a `scored` pixel
    (H×W bool: the ground truth's labelled ones) names --pred-values."""
    try:
        pred = read_label(path, coding)
    except LabelOutOfRange as e:
        if coding is None:  # a 16-bit PNG of values
            raise PSPNetError(f"{e}; {VALUES_HINT}") from None
        raise
    except ColourCodedLabel:  # data.label_colors reads ground truth, not predictions: that hint would not work
        where = (f"`pspnet predict`'s {path.parent.name} images; score the label maps beside them (--pred "
                 f"{path.parent.parent})" if path.parent.name in ("color", "overlay") else
                 "--pred takes label PNGs of class indices, as `pspnet predict` writes them (OUT/NAME.png)")
        raise PSPNetError(f"{path}: a colour image, not a map of class indices: {where}") from None
    if coding is None and pred.shape == scored.shape and (bad := pred[scored & (pred >= num_classes)]).size:
        raise PSPNetError(f"{path}: predicted value {int(bad.max())} is not a class index 0..{num_classes - 1}; "
                          f"{VALUES_HINT}")
    return pred


def run(args: argparse.Namespace) -> int:
    for option, path in (("--json", args.json), ("--per-image", args.per_image)):
        if path is not None:
            check_output_file(path, option, args.overwrite)
    if args.pred.name in OUTPUT_KINDS[1:] and args.pred.is_dir() and any(
            (args.pred.parent / f.name).is_file() for f in args.pred.glob("*.png")):  # grey colours read as labels
        raise PSPNetError(f"--pred {args.pred}: `pspnet predict`'s {args.pred.name} images, not label maps; score the "
                          f"label maps beside them: --pred {args.pred.parent}")
    gts = label_files(args.gt, "ground-truth", args.recursive, suffix=args.gt_suffix)
    # `pspnet predict` writes colour maps, overlays and confidences beside the labels: not predictions to score.
    kinds = tuple(k for k in OUTPUT_KINDS if k != "labels" and not (args.gt / k).is_dir())
    preds = label_files(args.pred, "prediction", args.recursive, leave_out=kinds, suffix=args.pred_suffix)
    nested = [] if args.recursive else sorted(
        d.name for d in args.gt.iterdir() if d.is_dir() and not d.name.startswith(".")
        and tree_files(d, LABEL_SUFFIXES))
    if not gts:
        raise PSPNetError(f"{args.gt}: holds no label PNGs{f' named *{args.gt_suffix}' if args.gt_suffix else ''}" + (
            f" (its subfolders {', '.join(nested[:3])} do: --recursive pairs the folders' trees)" if nested else "")
            + lossy_note(args.gt))
    if nested:
        print(f"pspnet score: note: {args.gt}: left out {len(nested)} subfolder(s) holding labels "
              f"({', '.join(nested[:3])}{' and more' if len(nested) > 3 else ''}; --recursive pairs the folders' "
              "trees)", file=sys.stderr)
    if not gts.keys() & preds.keys():
        raise no_pairs_error(args, preds, gts)
    for option, path in (("--json", args.json), ("--per-image", args.per_image)):
        if path is not None:
            check_not_inputs([path], [*gts.values(), *preds.values()], option)
    expected = args.pred_suffix or ".png"
    missing = [f"{gts[s]}: no prediction {args.pred / (s + expected)}" for s in sorted(gts.keys() - preds.keys())]
    unmatched = [f"{preds[s]}: no ground truth {s}{args.gt_suffix or '.png'} in {args.gt}"
                 for s in sorted(preds.keys() - gts.keys())]
    failures = missing + unmatched
    num_classes, ignore, coding, names = ground_truth_settings(args)
    pred_coding = prediction_coding(args.pred_values, num_classes, coding, args.config)
    cm = ConfusionMatrix(num_classes, ignore)
    counts = np.zeros(max(256, num_classes), dtype=np.int64)  # ground-truth pixels per value: the absent classes
    scored = 0
    per_image: list[ImageScore] = []
    unscored: set[int] = set()  # ground-truth values that are neither a class nor ignored
    beside_ignored = False  # ... in files that hold the ignore index too
    for stem in sorted(gts.keys() & preds.keys()):
        try:
            gt = read_label(gts[stem], coding)
            pred = read_prediction(preds[stem], pred_coding, num_classes, gt != ignore)
            if pred.shape != gt.shape:
                raise PSPNetError(f"{preds[stem]}: prediction is {pred.shape[1]}×{pred.shape[0]} but its ground "
                                  f"truth {gts[stem]} is {gt.shape[1]}×{gt.shape[0]}; expected the same size")
            added = cm.update(torch.from_numpy(pred), torch.from_numpy(gt), source=f"{preds[stem]} / {gts[stem]}")
            per_image.append(image_score(stem, added))
            counts += np.bincount(gt.ravel(), minlength=len(counts))[: len(counts)]
        except PSPNetError as e:
            failures.append(str(e))
            if isinstance(e, UnscoredValues):
                unscored.update(e.values)
                beside_ignored |= e.ignored
            continue
        scored += 1
    for unpaired, what in ((missing, f"ground-truth files without a prediction in {args.pred}"),
                           (unmatched, f"predictions without a ground truth in {args.gt}"),
                           (failures[len(missing) + len(unmatched):], "pairs not scored")):
        print_first(unpaired, "pspnet score: ", what, listed=args.json is not None)
    if unscored:
        values = sorted(unscored)
        note = no_class_note(values, num_classes, ignore, what="ground-truth", ignoring=ignoring_option(
            values, args.config, beside_ignored),
            classes="data.num_classes" if args.config else "--num-classes")
        print(f"pspnet score: note: {note}", file=sys.stderr)
    if scored and (note := absent_classes(counts, names, ignore, "ground-truth", holds_indices(coding),
                                          args.config is None)):
        print(f"pspnet score: note: {args.gt}: {note}", file=sys.stderr)
    scores = cm.compute()
    if scored:  # else a table of n/a: the problems above say why
        print(format_table(scores, names))
    print(f"{scored} of {len(gts)} ground-truth files scored")
    if args.json is not None:
        doc = scores.to_dict() | {"images": scored, "failures": failures, "confusion_matrix": cm.matrix.tolist()}
        text = json.dumps(doc, indent=1) + "\n"
        write_text_atomically(args.json, text)
    if args.per_image is not None:
        table = per_image_csv(per_image, names)
        write_text_atomically(args.per_image, table)
    if failures:
        print(f"pspnet score: {len(failures)} problem(s) (see above); the scores cover the {scored} good pairs",
              file=sys.stderr)
        return 1
    return 0
