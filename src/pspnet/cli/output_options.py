"""What is written of each prediction (`pspnet predict`, `pspnet eval --save-predictions`): the outputs, and the
value each class is written as in the label PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pspnet.classes import DatasetInfo
from pspnet.engine.label_formats import label_values, trained_label_values
from pspnet.engine.predict import OUTPUT_KINDS
from pspnet.errors import PSPNetError

IMAGE_OUTPUTS_HELP = ("labels color overlay (the default), and confidence: DIR/confidence/NAME.png, the predicted "
                      "class's probability as 0..255 (dark: unsure)")


def add_output_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, videos: bool) -> None:
    outputs = f"what to write of each {'input' if videos else 'image'}: {IMAGE_OUTPUTS_HELP}"
    if videos:
        outputs += (". A video: overlay (its default) and color as DIR/overlay|color/NAME.mp4, labels and confidence "
                    "as a PNG per frame in DIR/NAME/ and DIR/confidence/NAME/")
    p.add_argument("--outputs", nargs="+", choices=OUTPUT_KINDS, metavar="KIND", help=outputs)
    p.add_argument("--label-values", nargs="+", metavar="V",
                   help="the value written for each class in the label PNGs (default: the class index, what `pspnet "
                        "score` reads): one per class, e.g. 0 255 for a mask (16-bit PNGs above 255); cityscapes: "
                        "the 19 classes' label ids, as the Cityscapes benchmark server reads them; ade20k: 1..150 "
                        "(0 = other), as the scene-parsing benchmark reads them; data: the values of the labels "
                        "the model was trained on (data.label_values)")
    p.add_argument("--legend", action="store_true",
                   help="a colour key under each colour map and overlay: the classes it shows, named"
                        + (" (a video's frames: all the classes where they fit in two rows, else the frame's "
                           "largest)" if videos else ""))


def check_outputs_shaped(args: argparse.Namespace, kinds: tuple[str, ...]) -> None:
    """--label-values sets the label PNGs' values and --legend draws on the colour maps and overlays: an error where
    --outputs writes none of those."""
    if args.label_values and args.outputs and "labels" not in kinds:
        raise PSPNetError(f"--label-values {' '.join(args.label_values)}: it sets the label PNGs' values, but "
                          f"--outputs {' '.join(args.outputs)} writes none; add labels to --outputs")
    if args.legend and args.outputs and not {"color", "overlay"} & set(kinds):
        raise PSPNetError(f"--legend: it draws a colour key under the colour maps and overlays, but --outputs "
                          f"{' '.join(args.outputs)} writes neither; add color or overlay to --outputs")


def legend_names(args: argparse.Namespace, info: DatasetInfo) -> tuple[str, ...] | None:
    """The class names of the colour key --legend draws (None without it)."""
    return tuple(info.classes) if args.legend else None


def chosen_label_values(args: argparse.Namespace, info: DatasetInfo, kinds: tuple[str, ...], say: bool
                        ) -> tuple[int, ...] | None:
    """The values --label-values asks for (None: the class indices). Without it, a model trained on labels of
    other values (data.label_values) gets a note saying how to write those, where label PNGs are written."""
    trained = trained_label_values(info)
    if args.label_values:
        return label_values(args.label_values, info.num_classes, trained)
    if info.num_classes > 256:  # class indices above 255: the label PNGs are 16-bit (pspnet score --pred-values)
        if "labels" in kinds and say:
            print(f"note: {args.checkpoint} has {info.num_classes} classes: the label PNGs are 16-bit, holding the "
                  "class indices", file=sys.stderr)
        return tuple(range(info.num_classes))
    if trained is not None and "labels" in kinds and say:
        print(f"note: {args.checkpoint} was trained on labels holding the values {' '.join(map(str, trained))}; "
              "the label PNGs hold the class indices 0.. (what `pspnet score` reads), --label-values data writes "
              "those values instead", file=sys.stderr)
    return None


def check_inputs_outside(out: Path, inputs: list[Path]) -> None:
    """--out must not be a folder that holds inputs (in it or in its subfolders): outputs would mix with them, or
    replace them (and a later run over the folder would take them for inputs, as `eval --images` would)."""
    for path in inputs:
        if path.resolve().is_relative_to(out.resolve()):
            beside = (out.with_name(f"{out.name}_pspnet") if out.name not in ("", "..")
                      else out.resolve().parent / f"{out.resolve().name}_pspnet")  # not inside: outside the inputs
            raise PSPNetError(f"--out {out}: holds the input {path}; choose another folder for the outputs "
                              f"(e.g. {beside})")
