"""What an exported file carries so that it can be used alone: class names, palette, normalisation, settings.

The same string→string map goes into ONNX `metadata_props` and TorchScript `_extra_files`. Values are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pspnet.data.info import DatasetInfo
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet

FORMAT = "pspnet-export"
FORMAT_VERSION = "1"
KEYS = ("format", "format_version", "dataset", "classes", "palette", "mean", "std", "model", "outputs")


def model_metadata(model: PSPNet, outputs: list[str]) -> dict[str, str]:
    """The metadata of an export of `model` whose graph has the named outputs."""
    info = model.info
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": info.name,
        "classes": json.dumps(info.classes),
        "palette": json.dumps([list(c) for c in info.palette]),
        "mean": json.dumps(list(info.mean)),
        "std": json.dumps(list(info.std)),
        "model": json.dumps(model.config.to_dict()),
        "outputs": json.dumps(outputs),
    }


def info_from_metadata(metadata: Mapping[str, str], source: str) -> DatasetInfo:
    """The DatasetInfo stored by `model_metadata`; an error naming `source` when it is missing or damaged."""
    if metadata.get("format") != FORMAT:
        raise PSPNetError(
            f"{source}: no pspnet metadata (format={metadata.get('format')!r}); expected a file written by "
            "`pspnet export`"
        )
    try:
        return DatasetInfo(
            name=metadata["dataset"],
            classes=list(json.loads(metadata["classes"])),
            palette=[tuple(c) for c in json.loads(metadata["palette"])],
            mean=tuple(json.loads(metadata["mean"])),
            std=tuple(json.loads(metadata["std"])),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PSPNetError(f"{source}: damaged pspnet metadata ({type(e).__name__}: {e})") from None
