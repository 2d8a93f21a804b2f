"""`pspnet score --pred DIR --gt DIR --num-classes N`: score saved label PNGs against ground truth by file stem."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pspnet.classes import IGNORE_INDEX, DatasetInfo
from pspnet.data.imageops import read_label
from pspnet.engine.evaluate import format_table
from pspnet.engine.metrics import ConfusionMatrix
from pspnet.errors import PSPNetError
from pspnet.files import check_output_file

LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", type=Path, required=True, metavar="DIR", help="predicted label PNGs NAME.png")
    p.add_argument("--gt", type=Path, required=True, metavar="DIR", help="ground-truth label PNGs NAME.png")
    p.add_argument("--num-classes", type=int, required=True, metavar="N", help="classes 0..N-1")
    p.add_argument("--ignore-index", type=int, default=IGNORE_INDEX, help="ground-truth value to skip (default 255)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write mIoU, mAcc, allAcc and per-class IoU/Acc")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")


def label_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise PSPNetError(f"{folder}: no such {what} folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES}


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json", args.overwrite)
    preds, gts = label_files(args.pred, "prediction"), label_files(args.gt, "ground-truth")
    if not gts:
        raise PSPNetError(f"{args.gt}: holds no label PNGs")
    failures = [f"{gts[s]}: no prediction {args.pred / (s + '.png')}" for s in sorted(gts.keys() - preds.keys())]
    failures += [f"{preds[s]}: no ground truth {s}.png in {args.gt}" for s in sorted(preds.keys() - gts.keys())]
    cm = ConfusionMatrix(args.num_classes, args.ignore_index)
    scored = 0
    for stem in sorted(gts.keys() & preds.keys()):
        try:
            pred, gt = read_label(preds[stem]), read_label(gts[stem])
            if pred.shape != gt.shape:
                raise PSPNetError(f"{preds[stem]}: prediction is {pred.shape[1]}×{pred.shape[0]} but its ground "
                                  f"truth {gts[stem]} is {gt.shape[1]}×{gt.shape[0]}; expected the same size")
            cm.update(torch.from_numpy(pred), torch.from_numpy(gt), source=f"{preds[stem]} / {gts[stem]}")
        except PSPNetError as e:
            failures.append(str(e))
            continue
        scored += 1
    for message in failures:
        print(f"pspnet score: {message}", file=sys.stderr)
    scores = cm.compute()
    print(format_table(scores, DatasetInfo.generic(args.num_classes).classes))
    print(f"{scored} of {len(gts)} ground-truth files scored")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = scores.to_dict() | {"images": scored, "failures": failures, "confusion_matrix": cm.matrix.tolist()}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if failures:
        print(f"pspnet score: {len(failures)} problem(s) (see above); the scores cover the {scored} good pairs",
              file=sys.stderr)
        return 1
    return 0
