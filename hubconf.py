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

        return load(weights)
    return _pspnet.PSPNet(**settings)  # type: ignore[arg-type]


def pspnet50(weights: str | None = None, num_classes: int = 150, **settings: object) -> "_pspnet.PSPNet":
    """PSPNet-50 as published (random init unless `weights`)."""
    return pspnet(weights, num_classes=num_classes, backbone="resnet50", **settings)


def pspnet101(weights: str | None = None, num_classes: int = 150, **settings: object) -> "_pspnet.PSPNet":
    """PSPNet-101 as published (random init unless `weights`)."""
    return pspnet(weights, num_classes=num_classes, backbone="resnet101", **settings)
