"""The options of every command that predicts (eval, predict, export checks): protocol settings and device."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pspnet.classes import DatasetInfo
from pspnet.engine.inference import DATASET_SETTINGS, MMSEG_PRESETS, PRESETS, InferenceSettings
from pspnet.errors import PSPNetError


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "test protocol (defaults: the protocol the model was validated with in training (eval --config: the config's "
        "val: section), else the official settings of its dataset, shown in brackets; the command prints the one it "
        "runs)")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="ss: scale 1.0; ms: 0.5 0.75 1.0 1.25 1.5 1.75 (the official default: ss); "
                        "mmseg: mmsegmentation's single-scale test of its zoo (ADE20K, VOC: whole image with short "
                        "side 512, Cityscapes: 1024, long side ≤ 2048, no flip, logits resized), for its weights; "
                        "mmseg-769: its 769×769 Cityscapes models' test (769 windows, stride 513, logits averaged)")
    g.add_argument("--base-size", type=int, metavar="N",
                   help="long side at scale 1.0 (ADE20K/VOC 512, Cityscapes 2048, CamVid 480); 0 keeps each image's")
    g.add_argument("--crop-size", type=int, nargs="+", metavar="N",
                   help="sliding-window size: N or H W (ADE20K/VOC 473, Cityscapes 713, CamVid 361)")
    g.add_argument("--scales", type=float, nargs="+", metavar="S", help="scales to average (overrides --preset)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average each window with its mirror image (official default: on)")
    g.add_argument("--mode", choices=["slide", "whole"],
                   help="slide: crop-sized windows (official default); whole: the resized image in one piece")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="network inputs per forward pass; windows of several images share them (official default 8)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")


def settings_from_args(args: argparse.Namespace, info: DatasetInfo, base: InferenceSettings | None = None
                       ) -> InferenceSettings:
    """The protocol: `base` (a config file's `val:` section) when given, else the one the model was validated with
    (`info.protocol`, recorded by `pspnet train`), else its dataset's official settings for --preset; then every
    option given on the command line applied."""
    if uses_recorded_protocol(args, info, base is not None):
        base = InferenceSettings.for_model(info)
    crop = args.crop_size
    if crop is not None and len(crop) not in (1, 2):
        raise PSPNetError(f"--crop-size {' '.join(map(str, crop))}: expected N or H W")
    overrides: dict[str, object] = {
        "crop_size": None if crop is None else (crop[0], crop[-1]),
        "scales": PRESETS[args.preset] if args.scales is None and args.preset is not None else args.scales,
        "flip": args.flip,
        "mode": args.mode,
        "batch_size": args.batch_size,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if base is None or args.preset in MMSEG_PRESETS:  # mmseg's test replaces a config's val: protocol
        settings = InferenceSettings.for_dataset(info.name, args.preset or "ss", **overrides)
    else:
        settings = replace(base, **overrides)  # type: ignore[arg-type]
    if args.base_size is not None:
        settings = replace(settings, base_size=args.base_size or None)
    return settings


def check_protocol_options(args: argparse.Namespace) -> None:
    """The protocol options' own values (a window of 0 pixels, a negative scale), checked before the network loads
    (a conversion or a large checkpoint can take seconds); what depends on the model's dataset (an mmseg preset) is
    checked when the settings are made."""
    given = argparse.Namespace(**{**vars(args), "preset": None if args.preset in MMSEG_PRESETS else args.preset})
    try:
        settings_from_args(given, DatasetInfo.generic(1))
    except PSPNetError as e:  # "batch size 0: ..." from InferenceSettings: named as the option that set it
        text = str(e)
        for setting, option in OPTION_OF.items():
            if text.startswith(f"{setting} ") and getattr(args, option[2:].replace("-", "_"), None) is not None:
                raise PSPNetError(f"{option}: {text}") from None
        raise


# The InferenceSettings fields as their errors name them, and the options that set them.
OPTION_OF = {"crop size": "--crop-size", "base size": "--base-size", "scales": "--scales", "batch size": "--batch-size"}


def uses_recorded_protocol(args: argparse.Namespace, info: DatasetInfo, config_protocol: bool) -> bool:
    """The protocol starts from the one recorded with the model: there is one, and neither a config's `val:` section
    nor an mmseg preset replaces it."""
    return not config_protocol and info.protocol is not None and args.preset not in MMSEG_PRESETS


def recorded_protocol_note(args: argparse.Namespace, info: DatasetInfo, config_protocol: bool = False) -> str | None:
    """Where the protocol came from, when it is the one recorded with the model (else None)."""
    if not uses_recorded_protocol(args, info, config_protocol):
        return None
    return (f"protocol: the one {args.checkpoint} was validated with in training (--base-size, --crop-size, --mode, "
            "--scales and --flip change it)")


def protocol_note(args: argparse.Namespace, info: DatasetInfo) -> str:
    """Where predict's protocol came from: the one recorded with the model, a preset, or, for a model with none
    recorded, its dataset's official test or the default (so that a deployer sees what to reproduce)."""
    if (note := recorded_protocol_note(args, info)) is not None:
        return note
    if args.preset is not None:
        return f"protocol: --preset {args.preset}"
    official = f"the official test of {info.name}" if info.name in DATASET_SETTINGS else "the default"
    return (f"protocol: {official} ({args.checkpoint} records none; --base-size, --crop-size, --mode, --scales and "
            "--flip change it)")


def unused_crop_note(args: argparse.Namespace, settings: InferenceSettings) -> str | None:
    """--crop-size given for a protocol that runs the whole image (recorded with the model, --mode whole, a preset):
    a note that it changes nothing (else None)."""
    if args.crop_size is None or settings.mode != "whole":
        return None
    crop = args.crop_size
    return (f"note: --crop-size {' '.join(map(str, crop))} is unused: the protocol runs the whole image; --mode slide "
            f"runs it in {crop[0]}×{crop[-1]} windows")
