"""What an exported file carries so that it can be used alone: class names, palette, normalisation, settings.

The same string→string map goes into ONNX `metadata_props` and TorchScript `_extra_files`. Values are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pspnet.classes import DatasetInfo
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet

FORMAT = "pspnet-export"
FORMAT_VERSION = "3"  # 2: class names, palette and mean/std in one "info" entry; 3: the "input" entry
KEYS = ("format", "format_version", "info", "model", "outputs", "input")
NORMALISED_INPUT = "float N×3×H×W, (rgb / 255 - mean) / std"  # "input": what a graph takes (files before 3: this)
IMAGE_INPUT = "uint8 N×H×W×3 RGB"  # `pspnet export --image-input`: normalised inside the graph


def model_metadata(model: PSPNet, outputs: list[str], image_input: bool = False,
                   static_size: tuple[int, int] | None = None) -> dict[str, str]:
    """The metadata of an export of `model` whose graph has the named outputs and takes normalised input, or
    images with `image_input` (its "input": NORMALISED_INPUT or IMAGE_INPUT, with the fixed 1×H×W in place of N×H×W
    where `static_size` fixes them)."""
    info = model.info
    given = IMAGE_INPUT if image_input else NORMALISED_INPUT
    if static_size is not None:
        h, w = static_size
        given = given.replace("N×H×W×3", f"1×{h}×{w}×3").replace("N×3×H×W", f"1×3×{h}×{w}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "info": json.dumps(info.to_dict()),
        "model": json.dumps(model.config.to_dict()),
        "outputs": json.dumps(outputs),
        "input": json.dumps(given),
    }


def info_from_metadata(metadata: Mapping[str, str], source: str) -> DatasetInfo:
    """The DatasetInfo stored by `model_metadata`; an error naming `source` when it is missing or damaged."""
    if metadata.get("format") != FORMAT:
        raise PSPNetError(
            f"{source}: no pspnet metadata (format={metadata.get('format')!r}); expected a file written by "
            "`pspnet export`"
        )
    if "info" not in metadata:
        raise PSPNetError(f"{source}: damaged pspnet metadata (no 'info' entry); export the model again")
    return DatasetInfo.from_dict(metadata["info"], source)


def input_kind(metadata: Mapping[str, str]) -> str:
    """What an exported graph takes: NORMALISED_INPUT or IMAGE_INPUT (files written before the entry: normalised)."""
    return str(json.loads(metadata["input"])) if "input" in metadata else NORMALISED_INPUT


def takes_images(metadata: Mapping[str, str]) -> bool:
    """Whether an exported graph takes uint8 images (`pspnet export --image-input`) rather than normalised input."""
    return input_kind(metadata).startswith("uint8")
