"""The execution options of every command that runs the network (eval, predict, bench): how, never what."""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from pspnet.engine.recipe import COMPILE_MODES, PRECISIONS, Recipe, default_recipe


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution (defaults: the fast recipe measured for the device type; "
                             "--precision fp32 --no-fold-bn --no-channels-last --no-compile is the reference)")
    g.add_argument("--precision", choices=list(PRECISIONS),
                   help="fp32 (no autocast), bf16 or fp16 autocast (default: fp32 on CPUs, bf16 on CUDA)")
    g.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="fold BatchNorm into the convolutions (inference; default on)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on CUDA)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the network, weights frozen in inference (default: on CUDA; on an AVX2 CPU "
                        "it measured no faster and costs ~40 s per input shape)")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, help="torch.compile mode (default: default)")


def recipe_from_args(args: argparse.Namespace, device: torch.device, training: bool = False) -> Recipe:
    """The device type's default recipe with every option given on the command line applied (BatchNorm folding
    is an inference switch: training ignores it)."""
    names = ("precision", "channels_last", "compile", "compile_mode") + (() if training else ("fold_bn",))
    changes = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return replace(default_recipe(device, training), **changes)
