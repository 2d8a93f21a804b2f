"""A folder where a command takes a model: a training run's (`pspnet eval runs/camvid` uses the run's best model), or
the one `pspnet quantize --out DIR` wrote (its int8 IR). Which model a folder stands for is `pspnet.load`'s rule
(`engine.loading.model_in_folder`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pspnet.engine.loading import model_in_folder
from pspnet.run_folder import is_run_folder


def use_model_folder(args: argparse.Namespace, say: bool = True) -> Path | None:
    """When `args.checkpoint` is a training run's folder, it becomes the run's model (said on stderr unless not
    `say`: the other processes of a torchrun) and the folder is returned. The folder of `pspnet quantize --out`
    becomes its IR (and None is returned); a folder holding runs (`runs/`) is an error naming them; else None and
    nothing changes."""
    found = model_in_folder(args.checkpoint)
    if found is None:
        return None
    folder, (args.checkpoint, line) = args.checkpoint, found
    if say:
        print(line, file=sys.stderr)
    return folder if is_run_folder(folder) else None
