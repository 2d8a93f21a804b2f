"""A folder where a command takes a model: a training run's (`pspnet eval runs/camvid` uses the run's best model), or
the one `pspnet quantize --out DIR` wrote (its int8 IR)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pspnet.errors import PSPNetError
from pspnet.run_folder import is_run_folder, run_model

QUANTIZED_IR, QUANTIZATION_RECORD = "model.xml", "quantization.json"  # what `pspnet quantize --out DIR` writes


def use_model_folder(args: argparse.Namespace, say: bool = True) -> Path | None:
    """When `args.checkpoint` is a training run's folder, it becomes the run's model (said on stderr unless not
    `say`: the other processes of a torchrun) and the folder is returned. The folder of `pspnet quantize --out`
    becomes its IR (and None is returned); a folder holding runs (`runs/`) is an error naming them; else None and
    nothing changes."""
    quantized = args.checkpoint / QUANTIZED_IR
    if quantized.is_file() and (args.checkpoint / QUANTIZATION_RECORD).is_file():
        if say:
            print(f"{args.checkpoint}: the int8 model of `pspnet quantize`; using {quantized}", file=sys.stderr)
        args.checkpoint = quantized
        return None
    found = run_model(args.checkpoint)
    if found is None:
        try:
            runs = sorted(p.name for p in args.checkpoint.iterdir() if is_run_folder(p))
        except OSError:  # not a folder, or one that cannot be listed: the loader says what it is
            runs = []
        if runs:
            shown = ", ".join(runs[:5]) + (f", … ({len(runs) - 5} more)" if len(runs) > 5 else "")
            raise PSPNetError(f"{args.checkpoint}: a folder of training runs ({shown}); give one, e.g. "
                              f"{args.checkpoint / runs[0]} (its best model)")
        return None
    folder, (args.checkpoint, line) = args.checkpoint, found
    if say:
        print(line, file=sys.stderr)
    return folder
