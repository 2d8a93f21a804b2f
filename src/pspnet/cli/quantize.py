"""`pspnet quantize MODEL --calib LIST_OR_FOLDER --out DIR`: an int8 OpenVINO IR calibrated on your images. MODEL is a
checkpoint (or a published model's name), or the f32 .onnx or IR that `pspnet export` wrote from one.

NNCF post-training quantisation on the protocol's own network inputs (resize, windows, mirror images); some images
are held back and the int8 model's label maps are compared with the f32 model's on them. Writes DIR/model.xml and
DIR/model.bin (the IR, with the class names, palette and normalisation, and a record of the calibration: set,
size, agreement, the f32 model's file and SHA-256) and DIR/quantization.json (the same record).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from pspnet.checkpoint import load, resolve
from pspnet.cli.inference_options import add_inference_arguments, settings_from_args
from pspnet.cli.model_folder import use_model_folder
from pspnet.cli.output_options import check_inputs_outside
from pspnet.data.imageops import read_image, to_tensor
from pspnet.data.lists import read_image_list, spread_evenly, tree_files
from pspnet.download import file_digest
from pspnet.engine.loading import QUANTIZATION_RECORD, QUANTIZED_IR
from pspnet.errors import PSPNetError
from pspnet.files import IMAGE_SUFFIXES, check_new_outputs, check_output_folder, write_text_atomically

DEFAULT_IMAGES = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, metavar="MODEL",
                   help="a checkpoint, a training run's folder (its best model), a published model's name "
                        "(`pspnet models`), or an f32 graph that `pspnet export` wrote (.onnx, or an OpenVINO .xml "
                        "with its .bin)")
    p.add_argument("--calib", type=Path, required=True, metavar="LIST_OR_FOLDER",
                   help="calibration images: a folder of images (subfolders too), or a list file with an image path "
                        "first on each line (relative to the list's folder; `image label` lists work as they are)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"use N images spread evenly over the sorted set (default {DEFAULT_IMAGES}), some of them "
                        "held back")
    p.add_argument("--held-back", type=int, metavar="K",
                   help="images kept out of calibration to measure int8 against f32 (default: a fifth, at most 8)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="writes DIR/model.xml, DIR/model.bin and DIR/quantization.json")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    add_inference_arguments(p)


def calibration_files(spec: Path) -> list[Path]:
    """The images of a folder's tree (sorted by path), or the first path of each line of a list file."""
    if spec.is_dir():
        files = tree_files(spec, IMAGE_SUFFIXES)
        if not files:
            raise PSPNetError(f"--calib {spec}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not spec.is_file():
        raise PSPNetError(f"--calib {spec}: no such folder or list file")
    if spec.suffix.lower() in IMAGE_SUFFIXES:
        raise PSPNetError(f"--calib {spec}: one image; give a folder of images or a list file")
    try:
        return read_image_list(spec)
    except PSPNetError as e:
        raise PSPNetError(f"--calib {e}") from None


def f32_graph(name: Path, path: Path, exported: bool) -> tuple[Any, dict[str, Any]]:
    """The f32 OpenVINO model to quantise (a checkpoint converted, or an exported graph read) and the record of where
    it came from: the file as named and its SHA-256."""
    from pspnet.export.openvino import OpenVinoModel

    if not exported:
        return OpenVinoModel(load(path)), {"checkpoint": str(name), "checkpoint_sha256": file_digest(path)}
    f32 = OpenVinoModel(path)  # a missing, unreadable or foreign file: one line naming it
    if (record := f32.quantization) is not None:
        origin = record.get("checkpoint") or record.get("graph")
        raise PSPNetError(f"{path}: already int8 (`pspnet quantize` of {origin}); quantize the f32 graph or the "
                          "checkpoint it came from")
    return f32, {"graph": str(name), "graph_sha256": file_digest(path)}


def run(args: argparse.Namespace) -> int:
    from pspnet.engine.openvino_int8 import quantize, require_nncf

    require_nncf()  # the install hint before any work
    use_model_folder(args)
    if args.images < 2:
        raise PSPNetError(f"--images {args.images}: expected at least 2 (calibration, and one image held back)")
    found = calibration_files(args.calib)
    files = [found[i] for i in spread_evenly(len(found), args.images)]  # from the whole set, not its first sequence
    if len(files) < 2:
        raise PSPNetError(f"--calib {args.calib}: {len(files)} image; expected at least 2 (calibration, and one "
                          "held back)")
    held = min(8, max(1, len(files) // 5)) if args.held_back is None else args.held_back
    if not 1 <= held < len(files):
        raise PSPNetError(f"--held-back {held}: expected 1 to {len(files) - 1} of the {len(files)} images")
    check_output_folder(args.out, "--out")
    check_inputs_outside(args.out, found)  # a folder of images is no place for a model (nor --calib's next run)
    xml, record_path = args.out / QUANTIZED_IR, args.out / QUANTIZATION_RECORD
    exported = args.checkpoint.suffix.lower() in (".onnx", ".xml")
    model_files = [args.checkpoint] if exported else [resolve(args.checkpoint)]
    if args.checkpoint.suffix.lower() == ".xml":
        model_files.append(args.checkpoint.with_suffix(".bin"))  # an IR's weights
    check_new_outputs([xml, xml.with_suffix(".bin"), record_path], [*model_files, *files], args.overwrite, "--out")

    f32, source = f32_graph(args.checkpoint, model_files[0], exported)
    settings = settings_from_args(args, f32.info)
    images = [to_tensor(read_image(path)) for path in files]  # an unreadable image stops the run, naming it
    kept = set(spread_evenly(len(images), held))  # held back from all over the set too
    calibration = [im for i, im in enumerate(images) if i not in kept]
    held_back = [im for i, im in enumerate(images) if i in kept]
    print(f"calibrating on {len(calibration)} images from {args.calib} (the protocol's inputs: "
          f"{settings.describe()}); {held} held back", file=sys.stderr)
    source |= {"calibration": str(args.calib),
              "calibration_files": [str(p) for i, p in enumerate(files) if i not in kept],
              "held_back_files": [str(p) for i, p in enumerate(files) if i in kept]}
    result = quantize(f32, calibration, held_back, settings, source)
    a = result.agreement
    from pspnet.export.openvino import save_ir

    save_ir(result.graph, xml)
    write_text_atomically(record_path, json.dumps(result.record, indent=1) + "\n")
    print(f"int8 against f32 on the {a.images} held-back images: {100 * a.same:.2f}% of {a.pixels} pixels agree "
          f"(worst image {100 * a.worst_image:.2f}%)", file=sys.stderr)
    print(f"wrote {xml} (+ model.bin, quantization.json); run it with: pspnet predict {shlex.quote(str(xml))} IMAGES "
          "--out DIR",
          file=sys.stderr)
    return 0
