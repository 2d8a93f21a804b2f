"""`pspnet.load`: a checkpoint as a PSPNet, or a graph written by `pspnet export` or `pspnet quantize` as its engine's
runner, both taken by `pspnet.predict`, `probabilities` and `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pspnet.checkpoint import load
from pspnet.errors import PSPNetError
from pspnet.run_folder import is_run_folder, run_model

QUANTIZED_IR, QUANTIZATION_RECORD = "model.xml", "quantization.json"  # what `pspnet quantize --out DIR` writes


def model_in_folder(folder: Path) -> tuple[Path, str] | None:
    """The model a folder stands for, and a line saying which: a training run's (its best model, else the final one,
    else the latest checkpoint), or the int8 IR `pspnet quantize --out DIR` wrote. None for any other path; a folder
    holding training runs (`runs/`) is an error naming them."""
    if not folder.is_dir():  # a file, a published model's name
        return None
    quantized = folder / QUANTIZED_IR
    if quantized.is_file() and (folder / QUANTIZATION_RECORD).is_file():
        return quantized, f"{folder}: the int8 model of `pspnet quantize`; using {quantized}"
    found = run_model(folder)
    if found is None:
        try:
            runs = sorted(p.name for p in folder.iterdir() if is_run_folder(p))
        except OSError:  # a folder that cannot be listed: the loader says what it is
            runs = []
        if runs:
            shown = ", ".join(runs[:5]) + (f", … ({len(runs) - 5} more)" if len(runs) > 5 else "")
            raise PSPNetError(f"{folder}: a folder of training runs ({shown}); give one, e.g. {folder / runs[0]} "
                              "(its best model)")
    return found


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A model, in eval mode, from any file the project writes (a `.safetensors` model, a training checkpoint
    `checkpoints/iter_N.pt`), an official hszhao/semseg `.pth`, an mmsegmentation zoo PSPNet, or the name of a
    published model (`pspnet models` lists them), downloaded and converted once: a `PSPNet`.

    A graph written by `pspnet export` or `pspnet quantize` loads as its engine's runner, for `pspnet.predict`,
    `probabilities` and `evaluate` (not for training): an `.onnx` on ONNX Runtime (`OnnxRuntimeModel`, on
    `map_location`), an OpenVINO `.xml` on the CPU (`OpenVinoModel`; an int8 IR runs in int8).

        model = pspnet.load("camvid-int8/model.xml")
        labels = pspnet.predict(model, "street.jpg")   # the same protocol, on OpenVINO

    A folder loads as the commands take it (`model_in_folder`): a training run's best model (`pspnet.load("runs/x")`),
    or the int8 IR in the folder `pspnet quantize` wrote.
    """
    if (found := model_in_folder(Path(path))) is not None:
        path = found[0]
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
