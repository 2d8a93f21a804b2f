"""A training run's folder where a command takes a model: `pspnet eval runs/camvid` uses the run's best model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pspnet.train.run_status import run_model


def use_run_folder(args: argparse.Namespace, say: bool = True) -> Path | None:
    """When `args.checkpoint` is a training run's folder, it becomes the run's model (said on stderr unless not
    `say`: the other processes of a torchrun) and the folder is returned; else None and nothing changes."""
    found = run_model(args.checkpoint)
    if found is None:
        return None
    folder, (args.checkpoint, line) = args.checkpoint, found
    if say:
        print(line, file=sys.stderr)
    return folder
