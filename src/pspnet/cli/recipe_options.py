"""The execution options of every command that runs the network (eval, predict, bench): how, never what."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from pspnet.device import bf16_warning
from pspnet.engine.recipe import COMPILE_MODES, PRECISIONS, Recipe, default_recipe, fast_recipe
from pspnet.errors import PSPNetError


def add_recipe_arguments(p: argparse.ArgumentParser, engines: bool = True) -> None:
    """`engines`: the command runs OpenVINO too (eval, predict), which --fast picks on CPUs."""
    g = p.add_argument_group("execution (default: fp32 with BatchNorm folded on every device, and on CPUs the pyramid "
                             "at its bins: the same answer as the reference, eager fp32 NCHW, which is --no-fold-bn "
                             "--no-pyramid-at-bins)")
    g.add_argument("--fast", action="store_true",
                   help="the fastest recipe measured for the device type: on CUDA bf16 autocast + channels_last + "
                        "torch.compile; on CPUs "
                        + ("OpenVINO where it is installed (the default there), else " if engines else "")
                        + "PyTorch's fp32 with BatchNorm folded. It may move a few pixels: the printed and saved "
                        "results name the recipe")
    g.add_argument("--precision", choices=["auto", *PRECISIONS, "f32", "int8"],
                   help="PyTorch: fp32 (no autocast, TF32 off on GPUs; the default), bf16 or fp16 autocast. OpenVINO "
                        "(eval/predict): f32 (= fp32), bf16, int8 (an IR from `pspnet quantize`); auto (default): "
                        "f32 for eval, the fastest precision this CPU runs natively for predict")
    g.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="fold BatchNorm into the convolutions (inference; default on)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default off; on with --fast on CUDA)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the network, weights frozen in inference (default off; on with --fast on CUDA; "
                        "on an AVX2 CPU it measured no faster and costs ~40 s per input shape)")
    g.add_argument("--compile-mode", choices=COMPILE_MODES, help="torch.compile mode (default: default)")
    g.add_argument("--matmul-upsample", action=argparse.BooleanOptionalAction, default=None,
                   help="the final upsampling to the input size as two matrix products (the same function; in bf16 "
                        "under bf16 autocast; default off for inference, on in --fast training on CUDA)")
    g.add_argument("--pyramid-at-bins", action=argparse.BooleanOptionalAction, default=None,
                   help="the head's 3×3 convolution takes the pyramid's pooled branches at their bins, before they "
                        "are upsampled (the same function, 21%% less arithmetic for PSPNet-50; default on for "
                        "inference on CPUs)")


def recipe_from_args(args: argparse.Namespace, device: torch.device, training: bool = False, warn: bool = True
                     ) -> Recipe:
    """The default (fp32) recipe, or the device type's fast one with --fast, with every option given on the command
    line applied (BatchNorm folding is an inference switch: training ignores it). `warn`: print the warning for bf16
    on a CPU where it is slow (a command that builds two recipes from one command line says it once)."""
    names = ("precision", "channels_last", "compile", "compile_mode", "matmul_upsample", "pyramid_at_bins") + (
        () if training else ("fold_bn",))
    changes = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    precision = changes.pop("precision", "auto")
    if precision == "int8":
        raise PSPNetError("--precision int8 is OpenVINO's (eval/predict with an IR from `pspnet quantize`); PyTorch "
                          "runs fp32, bf16 or fp16")
    if precision != "auto":
        changes["precision"] = "fp32" if precision == "f32" else precision
    base = fast_recipe if getattr(args, "fast", False) else default_recipe
    recipe = replace(base(device, training), **changes)
    warning = bf16_warning(device, recipe.precision)
    if warning and warn:
        print(f"warning: {warning}", file=sys.stderr)
    return recipe
