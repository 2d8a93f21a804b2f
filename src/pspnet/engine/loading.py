"""`pspnet.load`: a checkpoint as a PSPNet, or a graph written by `pspnet export` or `pspnet quantize` as its engine's
runner, both taken by `pspnet.predict`, `probabilities` and `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pspnet.checkpoint import load
from pspnet.errors import PSPNetError


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A model, in eval mode, from any file the project writes (a `.safetensors` model, a training checkpoint
    `checkpoints/iter_N.pt`), an official hszhao/semseg `.pth`, an mmsegmentation zoo PSPNet, or the name of a
    published model (`pspnet models` lists them), downloaded and converted once: a `PSPNet`.

    A graph written by `pspnet export` or `pspnet quantize` loads as its engine's runner, for `pspnet.predict`,
    `probabilities` and `evaluate` (not for training): an `.onnx` on ONNX Runtime (`OnnxRuntimeModel`, on
    `map_location`), an OpenVINO `.xml` on the CPU (`OpenVinoModel`; an int8 IR runs in int8).

        model = pspnet.load("camvid-int8/model.xml")
        labels = pspnet.predict(model, "street.jpg")   # the same protocol, on OpenVINO
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        from pspnet.export.onnx_runtime import OnnxRuntimeModel

        return OnnxRuntimeModel(path, map_location)
    if suffix == ".xml":
        from pspnet.export.openvino import OpenVinoModel

        if torch.device(map_location).type != "cpu":
            raise PSPNetError(f"{path}: an OpenVINO IR runs on the CPU; got map_location={map_location}")
        return OpenVinoModel(path)
    return load(path, map_location)
