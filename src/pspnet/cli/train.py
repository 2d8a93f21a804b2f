"""`pspnet train --config FILE [key=value ...] [--resume [CHECKPOINT]]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pspnet.errors import PSPNetError
from pspnet.run_folder import is_run_folder
from pspnet.train.config import load_train_config
from pspnet.train.stop import TrainingStopped
from pspnet.train.trainer import config_yaml, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="required: the YAML file with model, data, train and val sections (configs/*.yaml; a run's "
                        "own is RUN/config.yaml)")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="override any setting, e.g. train.lr=0.02 data.root=/data/camvid; "
                        "train.init=NAME_OR_FILE fine-tunes published weights (the architecture follows them, the "
                        "classifiers start afresh for your classes; configs/finetune_folders.yaml)")
    p.add_argument("--fast", action="store_true",
                   help="train.fast=true: the fastest training recipe measured for the device (on GPUs bf16, "
                        "channels_last, compiled, upsampling as matmuls: BENCHMARKS.md)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue the run: from the latest checkpoint in train.out_dir, or from CHECKPOINT (a "
                        "key=value right after it is an override, as anywhere else)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a train.out_dir that holds an earlier run (its files are moved aside)")
    p.add_argument("--no-progress", "--quiet", action="store_true", dest="no_progress",
                   help="no progress bars (logs still go to metrics.jsonl)")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged config (file, overrides, defaults) as YAML, to save and edit; then exit")


def check_config_given(args: argparse.Namespace) -> None:
    """No --config is a one-line error; a config or run folder given without it (`pspnet train configs/camvid.yaml`,
    as mmsegmentation's train.py takes it) is answered with the command meant."""
    if args.config is not None:
        return
    named = [o for o in args.overrides if "=" not in o]
    if not named:
        raise PSPNetError("--config FILE is required: the YAML file of the run (e.g. configs/camvid.yaml; `pspnet "
                          "train --config FILE --print-config` shows every setting)")
    rest = " ".join(o for o in args.overrides if o != named[0])
    config = Path(named[0]) / "config.yaml" if (Path(named[0]) / "config.yaml").is_file() else Path(named[0])
    resume = " --resume (continues that run)" if is_run_folder(Path(named[0])) else ""
    raise PSPNetError(f"{named[0]}: the config goes after --config: pspnet train --config {config}"
                      f"{' ' + rest if rest else ''}{resume}")


def run(args: argparse.Namespace) -> int:
    check_config_given(args)
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        args.overrides, args.resume = [*args.overrides, args.resume], True  # `--resume train.accumulate=2`
    cfg = load_train_config(args.config, [*args.overrides, *(["train.fast=true"] if args.fast else [])],
                            resuming=bool(args.resume))
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    try:
        train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except TrainingStopped as e:  # asked to stop (SIGTERM, Ctrl-C), checkpoint saved: the trainer said so
        return 128 + e.signum  # as the shell reports a process ended by the signal
    return 0
