"""torch.hub entry points, from a clone of this repository (nothing to install):

    model = torch.hub.load("path/to/pspnet", "pspnet", source="local", weights="pspnet_r50-d8_4xb4-80k_ade20k-512x512")
    model = torch.hub.load("path/to/pspnet", "pspnet50", source="local", num_classes=19)   # random init

`weights`: a name from `pspnet models` (downloaded once into the torch hub cache and converted) or a checkpoint file.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "yaml", "tqdm", "safetensors"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import pspnet as _pspnet  # noqa: E402


def pspnet(weights: str | None = None, **settings: object) -> "_pspnet.PSPNet":
    """A published or saved model (`weights`), in eval mode; without weights, `PSPNet(**settings)` (num_classes
    and any ModelConfig setting)."""
    if weights is not None:
        from pspnet.checkpoint import load  # a PSPNet (pspnet.load also opens exported graphs, not modules)

        model = load(weights)
        written = model.config.to_dict()
        if other := {k: v for k, v in settings.items() if k in written and written[k] != v}:  # not silently dropped
            raise _pspnet.PSPNetError(
                f"weights {weights}: " + ", ".join(f"{k} {written[k]!r}" for k in other) + "; the settings ask for "
                + ", ".join(f"{k}={v!r}" for k, v in other.items()) + " (the weights set the architecture: leave "
                "them out, or fine-tune on other classes with `pspnet train` and train.init)")
        return model
    return _pspnet.PSPNet(**settings)  # type: ignore[arg-type]


def _published(backbone: str, weights: str | None, num_classes: int, settings: dict[str, object]
               ) -> "_pspnet.PSPNet":
    if settings.get("backbone", backbone) != backbone:
        raise _pspnet.PSPNetError(f"backbone={settings['backbone']!r}: this entry point is PSPNet with {backbone}; "
                                  "the `pspnet` entry point takes any backbone")
    settings.pop("backbone", None)
    explicit = {"num_classes": num_classes} if weights is None or num_classes != 150 else {}  # 150: the default
    return pspnet(weights, backbone=backbone, **explicit, **settings)


def pspnet50(weights: str | None = None, num_classes: int = 150, **settings: object) -> "_pspnet.PSPNet":
    """PSPNet-50 as published (random init unless `weights`)."""
    return _published("resnet50", weights, num_classes, settings)


def pspnet101(weights: str | None = None, num_classes: int = 150, **settings: object) -> "_pspnet.PSPNet":
    """PSPNet-101 as published (random init unless `weights`)."""
    return _published("resnet101", weights, num_classes, settings)
