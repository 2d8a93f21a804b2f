"""ImageNet initialisation of the backbone: torchvision's ResNet weights (7×7 stem) or the official deep-stem
`resnet{50,101,152}_v2.pth` (stem `conv1,bn1,conv2,bn2,conv3,bn3`). The classifier `fc` is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from pspnet.download import download
from pspnet.errors import PSPNetError
from pspnet.files import read_torch_file
from pspnet.model.resnet import DilatedResNet
from pspnet.model.state import load_state_strict, tensor_state

TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}
DEEP_STEM_KEYS = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")


def cache_dir() -> Path:
    return Path(os.environ.get("PSPNET_CACHE", Path.home() / ".cache" / "pspnet"))


def resolve_source(source: str, depth: str) -> Path:
    """A local file as is; a URL (or "torchvision") downloaded once into the cache; the name's hash prefix checked."""
    if source == "torchvision":
        if depth not in TORCHVISION_URLS:
            raise PSPNetError(f"no torchvision ImageNet weights for {depth!r}")
        source = TORCHVISION_URLS[depth]
    if not re.match(r"https?://", source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise PSPNetError(f"{path}: no such ImageNet weights file (give a local .pth, a URL, or 'torchvision')")
        return path
    name = source.rstrip("/").rsplit("/", 1)[-1]
    path = cache_dir() / "imagenet" / name
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", name)  # torchvision names carry a sha256 prefix
    return download(source, path, sha256=prefix[1] if prefix else None)


def backbone_state(state: dict[str, torch.Tensor], deep_stem: bool, source: str) -> dict[str, torch.Tensor]:
    """Rename an ImageNet ResNet state dict to our backbone's keys, checking that its stem is the model's."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    file_deep = "conv2.weight" in state and "conv3.weight" in state
    if file_deep != deep_stem:
        have = "the deep 3×3 stem (resnet*_v2.pth)" if file_deep else "torchvision's 7×7 stem"
        want = "deep_stem: true" if file_deep else "deep_stem: false"
        raise PSPNetError(f"{source}: these weights have {have}; set {want} in the model settings to use them")
    stem = DEEP_STEM_KEYS if deep_stem else ("conv1", "bn1")
    renamed = {}
    for k, v in state.items():
        head = k.split(".", 1)[0]
        renamed[f"stem.{k}" if head in stem else k] = v
    return renamed


def load_imagenet_backbone(backbone: DilatedResNet, source: str) -> Path:
    """Initialise `backbone` from ImageNet weights; every key must match (the error lists those that do not)."""
    depth = backbone.depth
    path = resolve_source(source, depth)
    obj = read_torch_file(path)
    state = tensor_state(obj, str(path), "a ResNet state dict")
    load_state_strict(backbone, backbone_state(state, backbone.deep_stem, str(path)), str(path))
    return path
