"""Which engine runs the network for `predict` and `eval`: PyTorch by its execution recipe, ONNX Runtime on an
exported `.onnx`, or OpenVINO (a checkpoint converted in memory, or an exported IR `.xml`). The test protocol around
it is the same code for all of them."""

from __future__ import annotations

import argparse

import torch

from pspnet.checkpoint import load
from pspnet.classes import DatasetInfo
from pspnet.cli.recipe_options import recipe_from_args
from pspnet.engine.inference import Forward
from pspnet.engine.recipe import Recipe, inference_forward

BACKENDS = ("torch", "onnxruntime", "openvino")


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the network with PyTorch (default), ONNX Runtime (an .onnx from `pspnet export`; pip "
                        "install 'pspnet[export]') or OpenVINO on the CPU (a checkpoint, converted in memory, or an "
                        "IR .xml from `pspnet export --format openvino`; pip install 'pspnet[openvino]'; "
                        "--precision bf16 runs it in bf16)")


def backend_forward(args: argparse.Namespace, device: torch.device) -> tuple[Forward, DatasetInfo, str, Recipe]:
    """The network as a Forward callable, its class metadata, a description of how it runs, and the execution
    recipe of the options (used by the torch backend; bf16 also selects OpenVINO's bf16)."""
    recipe = recipe_from_args(args, device)
    if args.backend == "onnxruntime":
        from pspnet.export.onnx_runtime import OnnxRuntimeModel

        onnx = OnnxRuntimeModel(args.checkpoint, device)
        return onnx, onnx.info, "ONNX Runtime", recipe
    if args.backend == "openvino":
        from pspnet.export.openvino import OpenVinoModel

        precision = "bf16" if recipe.precision == "bf16" else "f32"
        source = args.checkpoint if args.checkpoint.suffix == ".xml" else load(args.checkpoint)
        ov = OpenVinoModel(source, precision)
        return ov, ov.info, ov.describe(), recipe
    model = load(args.checkpoint, map_location=device)
    return inference_forward(model, recipe, device), model.info, recipe.describe(), recipe
