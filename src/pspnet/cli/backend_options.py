"""Which engine runs the network for `predict` and `eval`: PyTorch by its execution recipe, ONNX Runtime on an
exported `.onnx`, or OpenVINO (a checkpoint converted in memory, an exported `.onnx`, or an exported or quantised IR
`.xml`). The test protocol around it is the same code for all of them.

`--backend auto` (the default): an `.onnx` file runs on ONNX Runtime (`--backend openvino` runs it too) and an
`.xml` IR on OpenVINO; a checkpoint runs on OpenVINO f32 when the device is a CPU and OpenVINO is installed (the same
answer as PyTorch fp32 to ~1e-7, 1.5–1.7× faster on the evaluation protocol, BENCHMARKS.md), unless a PyTorch-only
execution option is given; else on PyTorch. The choice and its reason are printed. OpenVINO's precision
(`--precision`): f32, bf16 (native only on CPUs with AVX-512 BF16 or AMX), int8 (an IR from `pspnet quantize`); `auto`
is f32 for `eval` (headline metrics) and the fastest native precision for `predict`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pspnet.checkpoint import load
from pspnet.classes import DatasetInfo
from pspnet.cli.recipe_options import recipe_from_args
from pspnet.device import MemoryFit, bf16_units, bf16_warning
from pspnet.engine.inference import Forward
from pspnet.engine.recipe import Recipe, inference_forward
from pspnet.errors import PSPNetError
from pspnet.files import file_kind
from pspnet.weights import find

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
TORCH_ONLY = ("fast", "compile", "channels_last", "fold_bn", "compile_mode", "matmul_upsample",  # PyTorch's alone
              "pyramid_at_bins")


def torch_options(args: argparse.Namespace) -> list[str]:
    """The PyTorch-only execution options given on the command line, as written (`--no-fold-bn` is one too).
    `--fast` is not one where OpenVINO may run (`auto`, `openvino`): the fastest execution on a CPU is OpenVINO's
    (BENCHMARKS.md: f32 1.5–1.7× on the protocol, PyTorch's fastest recipe 1.05×)."""
    written = []
    openvino_may_run = getattr(args, "backend", "auto") in ("auto", "openvino")
    for name in TORCH_ONLY:
        value = getattr(args, name, None)
        if value is None or (name == "fast" and (not value or openvino_may_run)):
            continue
        written.append(f"--{'no-' if value is False else ''}{name.replace('_', '-')}")
    return written


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (default): .onnx → ONNX Runtime, .xml → OpenVINO, a checkpoint → OpenVINO f32 on a "
                        "CPU when it is installed (pip install 'pspnet[openvino]'), else PyTorch; torch; onnxruntime "
                        "(an .onnx from `pspnet export`); openvino (a checkpoint, an .onnx, or an IR from `pspnet "
                        "export --format openvino` or `pspnet quantize`)")


def choose_backend(args: argparse.Namespace, device: torch.device) -> tuple[str, str]:
    """(backend, why) for --backend auto; the given backend otherwise."""
    if args.backend != "auto":
        return args.backend, f"--backend {args.backend}"
    suffix = args.checkpoint.suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime", "an .onnx file"
    if suffix == ".xml":
        return "openvino", "an OpenVINO IR"
    if device.type != "cpu":
        return "torch", f"device {device}"
    torch_only = torch_options(args)
    if torch_only or getattr(args, "precision", None) == "fp16":
        return "torch", f"{(torch_only or ['--precision fp16'])[0]} is a PyTorch execution option"
    if importlib.util.find_spec("openvino") is None:
        return "torch", "OpenVINO is not installed (pip install 'pspnet[openvino]' runs CPUs faster)"
    fast = "; --fast: the fastest engine measured on CPUs" if getattr(args, "fast", False) else ""
    return "openvino", f"a CPU with OpenVINO installed (--backend torch for PyTorch){fast}"


GRAPHS = {".onnx": ("an ONNX graph", ("onnxruntime", "openvino")), ".xml": ("an OpenVINO IR", ("openvino",))}
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".caffemodel")


def check_backend_takes(backend: str, path: Path) -> None:
    """A file the chosen engine does not run is a one-line error that names the engine that does (or the export that
    makes a file it runs), before anything is loaded."""
    graph = GRAPHS.get(path.suffix.lower())
    if graph is not None and backend not in graph[1]:
        engines = " or ".join(f"--backend {b}" for b in graph[1])
        other = (f"give --backend {backend} the checkpoint it was exported from" if backend != "onnxruntime" else
                 "export an ONNX graph of the checkpoint it was made from (`pspnet export CKPT --format onnx`)")
        raise PSPNetError(f"{path}: {graph[0]}, which --backend {backend} does not run; {engines} (or auto) runs it, "
                          f"or {other}")
    if backend != "onnxruntime" or graph is not None:
        return
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            try:
                file_kind(path)  # a checkpoint by its content, whatever its name
            except PSPNetError:  # no checkpoint either: ONNX Runtime says what it makes of it
                return
        what = "a checkpoint"
    elif find(str(path)) is not None:
        what = "a published model"
    else:
        return
    raise PSPNetError(f"{path}: {what}, and --backend onnxruntime runs an ONNX graph (.onnx); export one with "
                      f"`pspnet export {path} --format onnx --out model.onnx`, or run this with --backend openvino, "
                      "torch or auto")


def openvino_precision(requested: str | None, purpose: str) -> tuple[str, str]:
    """(OpenVINO precision, why). `purpose`: "eval" (headline metrics: f32) or "predict" (the fastest native one)."""
    if requested in (None, "auto"):
        if purpose == "eval":
            return "f32", "precision auto: f32 for metrics"
        units = bf16_units()
        if units.kind == "fast":
            return "bf16", f"precision auto: fast bf16 on this CPU ({units.flags})"
        why = (units.slower() if units.kind == "slow" else
               f"no native bf16 on this CPU ({units.flags})")
        return "f32", f"precision auto: {why}; int8 needs an IR from `pspnet quantize`"
    if requested in ("fp32", "f32", "bf16", "int8"):
        return ("f32" if requested == "fp32" else requested), f"--precision {requested}"
    raise PSPNetError(f"--precision {requested}: OpenVINO runs f32, bf16 or int8 (an IR from `pspnet quantize`)")


def backend_forward(args: argparse.Namespace, device: torch.device, purpose: str = "eval", say: bool = True
                    ) -> tuple[Forward, DatasetInfo, str, Recipe]:
    """The network as a Forward callable, its class metadata, a description of how it runs, and the execution
    recipe of the options (used by the torch backend). Prints the backend chosen and why (unless not `say`: the
    other processes of a torchrun)."""
    backend, why = choose_backend(args, device)
    check_backend_takes(backend, args.checkpoint)
    args.backend = backend
    if backend != "torch" and (torch_only := torch_options(args)):
        raise PSPNetError(f"{torch_only[0]} is a PyTorch execution option, and the {backend} backend ({why}) runs "
                          "the graph its own way; drop it, or run --backend torch")
    requested = getattr(args, "precision", None)

    def note(message: str) -> None:  # a batch split to fit the memory (every process splits its own)
        if say:
            print(f"pspnet {purpose}: note: {message}", file=sys.stderr)

    if backend == "onnxruntime":
        from pspnet.export.onnx_runtime import OnnxRuntimeModel

        if requested == "int8":
            raise PSPNetError(f"--precision int8: ONNX Runtime runs the graph's own types (fp32); int8 runs on "
                              f"--backend openvino from an IR that `pspnet quantize {args.checkpoint} --calib IMAGES "
                              "--out DIR` makes")
        if requested not in (None, "auto", "fp32", "f32"):  # it was run in fp32 without a word
            raise PSPNetError(f"--precision {requested}: ONNX Runtime runs the graph's own types (fp32); drop it, or "
                              "run --backend openvino (bf16) or --backend torch")

        onnx = OnnxRuntimeModel(args.checkpoint, device)
        onnx.memory_fit = MemoryFit(device, note)
        return _chosen(onnx, onnx.info, "ONNX Runtime", recipe_from_args(args, device), why, say)
    if backend == "openvino":
        from pspnet.export.openvino import OpenVinoModel

        if device.type != "cpu":
            raise PSPNetError(f"--backend openvino runs on the CPU; got --device {device}")
        precision, precision_why = openvino_precision(requested, purpose)
        if precision == "bf16" and say and (warning := bf16_warning(device, "bf16")) is not None:
            print(f"warning: {warning}", file=sys.stderr)
        args.precision = None
        source = args.checkpoint if args.checkpoint.suffix.lower() in GRAPHS else None  # an IR or ONNX file
        if precision == "int8" and (source is None or source.suffix.lower() == ".onnx"):
            what = "an f32 ONNX graph" if source is not None else "not an int8 IR"
            raise PSPNetError(f"--precision int8: {args.checkpoint} is {what}; make an int8 IR with `pspnet quantize "
                              f"{args.checkpoint} --calib IMAGES --out DIR` and pass DIR/model.xml")
        ov = OpenVinoModel(source if source is not None else load(args.checkpoint), "f32" if precision == "int8"
                           else precision)
        if precision == "int8" and ov.quantization is None:
            raise PSPNetError(f"--precision int8: {args.checkpoint} is an f32 IR; make an int8 one with `pspnet "
                              f"quantize {args.checkpoint} --calib IMAGES --out DIR`")
        ov.memory_fit = MemoryFit(device, note)
        if source is None and say:
            print(f"OpenVINO graph: {ov.source}", file=sys.stderr)
        return _chosen(ov, ov.info, ov.describe(), recipe_from_args(args, device),
                       f"{why}; {precision_why}", say)
    recipe = recipe_from_args(args, device)
    model = load(args.checkpoint, map_location=device)
    return _chosen(inference_forward(model, recipe, device, fit_memory=note), model.info, recipe.describe(), recipe,
                   why, say)


def execution_record(forward: Forward, how: str, recipe: Recipe, backend: str) -> dict[str, Any]:
    """What a result file records of how the network ran: the PyTorch recipe's settings, or, for an engine (which
    the PyTorch recipe does not reach), the engine and its own precision (int8 for a quantised IR; None where the
    engine runs the graph's own types, as ONNX Runtime does)."""
    if backend == "torch":
        return asdict(recipe) | {"description": how, "backend": backend}
    quantized = getattr(forward, "quantization", None) is not None
    return {"backend": backend, "description": how,
            "precision": "int8" if quantized else getattr(forward, "precision", None)}


def _chosen(forward: Forward, info: DatasetInfo, how: str, recipe: Recipe, why: str, say: bool
            ) -> tuple[Forward, DatasetInfo, str, Recipe]:
    if say:
        print(f"network: {how} ({why})", file=sys.stderr)
    return forward, info, how, recipe
