"""PSPNet (Zhao et al., CVPR 2017) exactly as published.

    import pspnet
    model = pspnet.PSPNet(num_classes=150, backbone="resnet50")
    model = pspnet.load("pspnet50_ade20k.safetensors")   # settings, classes and mean/std come with the file
    model = pspnet.load("runs/camvid")                   # a training run's folder: its best model
    labels = pspnet.predict(model, "street.jpg")           # H×W class indices by the dataset's test protocol
    maps = pspnet.predict(model, ["a.jpg", "b.jpg"])       # a list of images: a list of label maps
    probs = pspnet.probabilities(model, "street.jpg")      # C×H×W: what predict takes the argmax of
    rgb = pspnet.colorize(labels, model, "street.jpg")     # H×W×3: the labels in the class colours over the image
    result = pspnet.evaluate(model, "val/images", "val/labels")   # result.scores.miou, by the test protocol
    run = pspnet.fit("my.yaml", ["train.lr=0.02"])          # train as `pspnet train` does; run.best_checkpoint
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so that `pspnet --help`, `--version` and a mistyped command answer without loading torch.
_PUBLIC: dict[str, tuple[str, str]] = {
    "PSPNet": ("pspnet.model.pspnet", "PSPNet"),
    "ModelConfig": ("pspnet.model.config", "ModelConfig"),
    "DatasetInfo": ("pspnet.classes", "DatasetInfo"),
    "InferenceSettings": ("pspnet.engine.inference", "InferenceSettings"),
    "PSPNetError": ("pspnet.errors", "PSPNetError"),
    "load": ("pspnet.engine.loading", "load_model"),
    "save": ("pspnet.checkpoint", "save"),
    "predict": ("pspnet.engine.predict", "predict"),
    "probabilities": ("pspnet.engine.predict", "probabilities"),
    "colorize": ("pspnet.engine.predict", "colorize_api"),
    "evaluate": ("pspnet.engine.evaluate", "evaluate_folders"),
    "fit": ("pspnet.train.trainer", "fit"),
}
__all__ = ["PSPNet", "ModelConfig", "DatasetInfo", "InferenceSettings", "PSPNetError", "load", "save", "predict",
           "probabilities", "colorize", "evaluate", "fit", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:  # a subpackage or module, as when everything was imported up front: `pspnet.engine`
        if importlib.util.find_spec(f"pspnet.{name}") is None:
            raise AttributeError(f"module 'pspnet' has no attribute {name!r}")
        return importlib.import_module(f"pspnet.{name}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from pspnet.checkpoint import save
    from pspnet.classes import DatasetInfo
    from pspnet.engine.evaluate import evaluate_folders as evaluate
    from pspnet.engine.inference import InferenceSettings
    from pspnet.engine.loading import load_model as load
    from pspnet.engine.predict import colorize_api as colorize
    from pspnet.engine.predict import predict, probabilities
    from pspnet.errors import PSPNetError
    from pspnet.model.config import ModelConfig
    from pspnet.model.pspnet import PSPNet
    from pspnet.train.trainer import fit
