"""`pspnet data prepare NAME --root DIR [--source S]` and `pspnet data check`: datasets ready before training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pspnet.data.check import check_dataset, class_shares
from pspnet.data.config import DATASET_KINDS, DataConfig, data_config_from_options, load_data_config
from pspnet.data.datasets import PREPARED_STAMP, build_dataset, dataset_info
from pspnet.data.prepare import PREPARERS, prepare_dataset
from pspnet.errors import PSPNetError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="{prepare,check}", required=True)
    prep = sub.add_parser("prepare", help="download or copy a benchmark, convert labels, write list files, check",
                          description="Fetch a benchmark, convert its labels to train ids (255 = ignore), write "
                                      "ROOT/{train,val,test}.txt and check every pair. Safe to run again.")
    prep.add_argument("dataset", choices=list(PREPARERS))
    prep.add_argument("--root", type=Path, required=True, help="where to put the prepared dataset")
    prep.add_argument("--source", help="a local folder or mirror URL laid out like the upstream source, or the "
                                       "downloaded archive(s); default: the public download (not for cityscapes)")
    prep.add_argument("--no-progress", "--quiet", action="store_true", dest="no_progress",
                      help="no progress bars")
    chk = sub.add_parser("check", help="report every unreadable, missing, mismatched or out-of-range file",
                         description="Check a dataset as the trainer will at start-up: every problem, with its file.")
    chk.add_argument("--config", type=Path, help="a YAML config; its `data:` section (or the whole file) is used")
    chk.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                     help="override data: settings (of --config, or of --dataset and --root), e.g. "
                          "data.root=/data/camvid or data.label_values=[0,255]")
    chk.add_argument("--dataset", choices=list(DATASET_KINDS), help="dataset kind (instead of --config)")
    chk.add_argument("--root", type=Path, help="dataset root (instead of --config)")
    chk.add_argument("--train-list", type=Path, help="train list file, relative to --root")
    chk.add_argument("--val-list", type=Path, help="val list file, relative to --root")
    chk.add_argument("--num-classes", type=int, help="for lists/folders")
    chk.add_argument("--splits", default="train,val", help="comma-separated splits to check (default: train,val)")
    chk.add_argument("--no-progress", "--quiet", action="store_true", dest="no_progress",
                     help="no progress bars")


def run(args: argparse.Namespace) -> int:
    return run_prepare(args) if args.data_command == "prepare" else run_check(args)


def run_prepare(args: argparse.Namespace) -> int:
    result = prepare_dataset(args.dataset, args.root, args.source, progress=not args.no_progress)
    counts = ", ".join(f"{split} {n}" for split, n in result.splits.items())
    if result.already:
        print(f"{args.root}: {args.dataset} already prepared ({counts} pairs); nothing to do")
        return 0
    for note in result.notes:
        print(f"note: {note}")
    for problem in result.problems:
        print(problem)
    if result.problems:
        print(f"{args.dataset}: {len(result.problems)} problem(s) in {args.root}; fix the source and run again "
              "(the files named are made again from it, the others are kept)")
        return 1
    lists = ", ".join(str(args.root / f"{split}.txt") for split in result.splits)
    print(f"{args.root}: {args.dataset} prepared and checked ({counts} pairs); lists {lists}")
    return 0


def check_named_positionally(words: list[str]) -> None:
    """`pspnet data check data/camvid` or `… my.yaml`: the folder or config given without its option is answered
    with the command meant (a prepared root's stamp names its dataset)."""
    named = [Path(w) for w in words if "=" not in w]
    if not named:
        return
    path = named[0]
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        raise PSPNetError(f"{path}: the config goes after --config: pspnet data check --config {path}")
    if not path.is_dir():
        return
    try:
        dataset = json.loads((path / PREPARED_STAMP).read_text()).get("dataset")  # a root `data prepare` wrote
    except (OSError, ValueError, AttributeError):
        dataset = None
    if not isinstance(dataset, str):
        dataset = ("lists" if (path / "train.txt").is_file() else
                   "folders" if (path / "images").is_dir() and (path / "labels").is_dir() else None)
    if dataset is None:
        raise PSPNetError(f"{path}: the dataset's root goes after --root, with its kind: pspnet data check --dataset "
                          f"KIND --root {path} (KIND: folders for images/ and labels/ folders, lists for train.txt and "
                          "val.txt, or a benchmark's name)")
    raise PSPNetError(f"{path}: the dataset's root goes after --root: pspnet data check --dataset {dataset} --root "
                      f"{path}")


def data_config(args: argparse.Namespace) -> DataConfig:
    named = [word for word in args.overrides if word in DATASET_KINDS]
    if named and args.config is None:  # `pspnet data check camvid`, as `data prepare` takes the name
        raise PSPNetError(f"data check {named[0]}: the dataset is named with --dataset {named[0]} --root DIR (or "
                          "--config FILE)")
    if args.config is None and args.dataset is None and args.root is None:
        check_named_positionally(args.overrides)
    if args.config is not None:
        return load_data_config(args.config, args.overrides)[0]
    if args.dataset is None or args.root is None:
        raise PSPNetError("data check: give --config FILE, or --dataset and --root")
    options = {"dataset": args.dataset, "root": args.root, "train_list": args.train_list, "val_list": args.val_list,
               "num_classes": args.num_classes}
    return data_config_from_options({k: v for k, v in options.items() if v is not None}, args.overrides)


SHOWN_PROBLEMS = 200  # then a count: a broken dataset can have thousands


def run_check(args: argparse.Namespace) -> int:
    cfg = data_config(args)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    notes: list[str] = []
    pixels: dict[str, np.ndarray] = {}
    problems = check_dataset(cfg, splits, progress=not args.no_progress, notes=notes, pixels=pixels)
    for note in notes:
        print(f"note: {note}")
    for problem in problems[:SHOWN_PROBLEMS]:
        print(problem)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"... and {len(problems) - SHOWN_PROBLEMS} more problem(s)")
    names = dataset_info(cfg).classes
    for split, counts in pixels.items():
        shares = class_shares(counts, names, cfg.ignore_index) if counts.any() else "none read (see the problems above)"
        print(f"{split} pixels: {shares}")
    counts = []
    for split in splits:
        try:
            counts.append(f"{split} {len(build_dataset(cfg, split, []))}")
        except PSPNetError:
            counts.append(f"{split} -")
    summary = f"{cfg.root}: {cfg.dataset}, {', '.join(counts)} pairs"
    if problems:
        print(f"{summary}: {len(problems)} problem(s)")
        return 1
    print(f"{summary}: no problems")
    return 0
