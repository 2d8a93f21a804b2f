"""What an exported file says about itself (`pspnet info model.onnx`), read without running it: the metadata that
`pspnet export` and `pspnet quantize` store in an ONNX file, an OpenVINO IR or a TorchScript archive."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from pspnet.errors import PSPNetError
from pspnet.export.metadata import FORMAT, KEYS, input_kind
from pspnet.export.onnx import read_onnx_metadata

EXPORT_SUFFIXES = (".onnx", ".xml")


def is_export(path: Path) -> bool:
    """An ONNX file or OpenVINO IR by its name, or a TorchScript archive (a zip holding `extra/format`)."""
    if path.suffix.lower() in EXPORT_SUFFIXES:
        return True
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:  # the names only: the entries are read by export_metadata
        return any(name.endswith("/extra/format") for name in archive.namelist())


def export_metadata(path: Path) -> dict[str, Any]:
    """{"kind", "model", "info", "provenance", "export"} of an exported file, as `read_metadata` gives a
    checkpoint's; "export" holds its outputs and, for an int8 IR, the record of its calibration."""
    if not path.is_file():
        raise PSPNetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    quantization = None
    if suffix == ".onnx":
        kind, metadata = "ONNX model (pspnet export)", read_onnx_metadata(path)
    elif suffix == ".xml":
        kind, metadata, quantization = "OpenVINO IR", *_openvino(path)
        kind += " (pspnet quantize, int8)" if quantization else " (pspnet export)"
    else:
        kind, metadata = "TorchScript archive (pspnet export)", _torchscript_extras(path)
    if metadata.get("format") != FORMAT or not {"model", "info"} <= metadata.keys():
        raise PSPNetError(f"{path}: no pspnet metadata; expected a file written by `pspnet export` or `pspnet "
                          "quantize`")
    export: dict[str, Any] = {"outputs": json.loads(metadata.get("outputs", "[]")), "input": input_kind(metadata)}
    if quantization is not None:
        export["quantization"] = quantization
    return {"kind": kind, "model": json.loads(metadata["model"]), "info": json.loads(metadata["info"]),
            "provenance": {}, "export": export}


def _openvino(path: Path) -> tuple[dict[str, str], dict[str, Any] | None]:
    from pspnet.export.openvino import graph_metadata, quantization_record, read_graph, require_openvino

    graph = read_graph(path, require_openvino().Core())
    return graph_metadata(graph), quantization_record(graph)


def _torchscript_extras(path: Path) -> dict[str, str]:
    """The `_extra_files` of a TorchScript archive, read from the zip (nothing in it is loaded or run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.rsplit("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()
                    if "/extra/" in name and name.rsplit("/", 1)[1] in KEYS}
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise PSPNetError(f"{path}: cannot read it as a TorchScript archive ({e})") from None
