"""`pspnet export CHECKPOINT --out FILE [--format onnx|torchscript|openvino]`: a deployable file with the model's
metadata, named by its format's suffix (which gives the format when --format is left out)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pspnet.checkpoint import load
from pspnet.cli.model_folder import use_model_folder
from pspnet.device import resolve_device
from pspnet.errors import PSPNetError
from pspnet.export.onnx import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_DYNAMIC_OPSET,
    MIN_OPSET,
    check_opset,
    export_onnx,
    require_onnx,
)
from pspnet.export.torchscript import export_torchscript
from pspnet.files import check_output_file

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}  # what each writes (and suggests)
# The names TorchScript files go by (read by their content, whatever the name); another (.txt, .bin) would be taken
# for something else: a list of images, an IR's weights
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a pspnet checkpoint (.safetensors), a training run's "
                   "folder (its best model) or an official .pth")
    p.add_argument("--format", choices=["onnx", "torchscript", "openvino"],
                   help="what to write: onnx (.onnx), torchscript (.pt) or an OpenVINO IR (.xml + .bin); by "
                        "default the one --out's suffix names")
    p.add_argument("--out", type=Path, required=True,
                   help="the file to write: model.onnx, model.pt or model.xml, as --format")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--argmax", action="store_true",
                   help="add a second output 'labels': int64 N×H×W, the argmax of the logits")
    p.add_argument("--image-input", action="store_true",
                   help="the graph takes images as decoders give them, uint8 N×H×W×3 RGB, and normalises them with "
                        "the model's mean and std itself (default: normalised float N×3×H×W)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_DYNAMIC_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET}; {MIN_OPSET} only "
                        "with --static-size)")
    p.add_argument("--static-size", type=int, nargs=2, metavar=("H", "W"),
                   help="ONNX only: fix the input to 1×3×H×W (default: dynamic batch, height and width)")
    p.add_argument("--device", default="cpu",
                   help="device to trace on (default cpu); a TorchScript file runs on the device it was traced on")


def run(args: argparse.Namespace) -> int:
    use_model_folder(args)
    check_output_file(args.out, "--out", args.overwrite)
    if args.out.resolve() == args.checkpoint.resolve():
        raise PSPNetError(f"--out {args.out}: is the checkpoint being exported; choose another file")
    if args.static_size and min(args.static_size) < 1:
        raise PSPNetError(f"--static-size {args.static_size[0]} {args.static_size[1]}: expected a positive height "
                          "and width")
    suffix = args.out.suffix.lower()
    if args.format is None:
        named = {own: kind for kind, own in SUFFIXES.items()}
        if suffix not in named:
            raise PSPNetError(f"--out {args.out}: the suffix names no format; name it model.onnx, model.pt or "
                              "model.xml (OpenVINO), or give --format onnx|torchscript|openvino")
        args.format = named[suffix]
    own = SUFFIXES[args.format]
    misnamed = suffix not in TORCHSCRIPT_SUFFIXES if args.format == "torchscript" else suffix != own
    if misnamed:
        also = f" ({', '.join(TORCHSCRIPT_SUFFIXES[1:])} too)" if args.format == "torchscript" else ""
        raise PSPNetError(f"--out {args.out}: --format {args.format} writes {own} files{also} (`--backend auto` tells "
                          f"what a file runs on by its suffix); name it e.g. {args.out.with_suffix(own).name}")
    if args.format == "openvino" and args.argmax:
        raise PSPNetError("--argmax is ONNX/TorchScript only; an OpenVINO IR outputs the logits")
    if args.format == "openvino":  # the IR's weights go beside it: a file of that name is replaced too
        weights = args.out.with_suffix(".bin")
        check_output_file(weights, f"--out {args.out}: its weights file", args.overwrite)
        if weights.resolve() == args.checkpoint.resolve():
            raise PSPNetError(f"--out {args.out}: its weights file {weights} is the checkpoint being exported; "
                              "choose another name")
    if args.static_size and args.format != "onnx":
        what = "an OpenVINO IR" if args.format == "openvino" else "a TorchScript export"
        raise PSPNetError(f"--static-size applies to ONNX only; {what} takes any batch, height and width")
    if args.format == "onnx":
        require_onnx()  # fail before loading a large checkpoint
        check_opset(args.opset, static=bool(args.static_size))
    model = load(args.checkpoint, map_location=resolve_device(args.device))
    if args.format == "onnx":
        static = tuple(args.static_size) if args.static_size else None
        export_onnx(model, args.out, argmax=args.argmax, opset=args.opset, static_size=static,
                    image_input=args.image_input)
        h, w = static or ("H", "W")
        shape = (f"uint8 {1 if static else 'N'}×{h}×{w}×3 RGB" if args.image_input else
                 f"{1 if static else 'N'}×3×{h}×{w} normalised") + ("" if static else " (dynamic)")
    elif args.format == "openvino":
        from pspnet.export.openvino import export_openvino

        export_openvino(model, args.out, image_input=args.image_input)
        shape = ("uint8 N×H×W×3 RGB" if args.image_input else "N×3×H×W normalised") + " (dynamic)"
    else:
        export_torchscript(model, args.out, argmax=args.argmax, image_input=args.image_input)
        shape = "uint8 N×H×W×3 RGB" if args.image_input else "N×3×H×W normalised"
    outputs = "logits, labels" if args.argmax else "logits"
    print(f"{args.out}: {args.format}, input {shape}, outputs {outputs}; PSPNet {model.config.backbone}, "
          f"{model.config.num_classes} classes ({model.info.name})")
    return 0
