"""ImageNet initialisation of the backbone: torchvision's ResNet weights (7×7 stem) or the official deep-stem
`resnet{50,101,152}_v2.pth` (stem `conv1,bn1,conv2,bn2,conv3,bn3`). The classifier `fc` is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pspnet.convert.mmseg import DEEP_STEM as MMSEG_STEM
from pspnet.download import download
from pspnet.errors import PSPNetError
from pspnet.files import read_torch_file
from pspnet.model.resnet import DilatedResNet
from pspnet.model.state import load_state_strict, tensor_state
from pspnet.weights import fetch, find_backbone

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


def stem_of(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The stem these ResNet weights were trained with, as model settings: mmseg's ResNetV1c (`stem.0/3/6`), the
    official deep stem (`conv1..conv3`), or torchvision's 7×7 (`conv1` only); widths read off the tensors."""
    if "stem.0.weight" in state:
        return {"deep_stem": True, "stem_channels": tuple(int(state[f"stem.{i}.weight"].shape[0]) for i in (0, 3, 6))}
    if "conv2.weight" in state and "conv3.weight" in state:
        return {"deep_stem": True, "stem_channels": tuple(int(state[f"conv{i}.weight"].shape[0]) for i in (1, 2, 3))}
    return {"deep_stem": False}


def backbone_state(state: dict[str, torch.Tensor], deep_stem: bool, source: str) -> dict[str, torch.Tensor]:
    """Rename an ImageNet ResNet state dict to our backbone's keys, checking that its stem is the model's."""
    state = {k.removeprefix("backbone."): v for k, v in state.items()
             if not k.removeprefix("backbone.").startswith(("fc.", "head."))}
    file_deep = bool(stem_of(state)["deep_stem"])
    if file_deep != deep_stem:
        have = "a deep 3×3 stem" if file_deep else "torchvision's 7×7 stem"
        want = "deep_stem: true" if file_deep else "deep_stem: false"
        raise PSPNetError(f"{source}: these weights have {have}; set {want} in the model settings to use them")
    stem = DEEP_STEM_KEYS if deep_stem else ("conv1", "bn1")
    renamed = {}
    for k, v in state.items():
        head = k.split(".", 1)[0]
        if m := re.fullmatch(r"stem\.(\d+)\.(.+)", k):  # mmseg's ResNetV1c: stem.{0,1,3,4,6,7}
            renamed[f"stem.{MMSEG_STEM.get(m[1], m[1])}.{m[2]}"] = v
        else:
            renamed[f"stem.{k}" if head in stem else k] = v
    return renamed


def imagenet_state(source: str, depth: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """ImageNet weights for a `depth` backbone from a catalogue name (`resnet50_v1c`), "torchvision", a file or a
    URL: the tensors, the stem settings they need (see `stem_of`) and the file."""
    named = find_backbone(source)
    if named is not None and named.backbone != depth:
        raise PSPNetError(f"train.imagenet = {source}: weights of a {named.backbone}; the model is a {depth}")
    path = fetch(named) if named is not None else resolve_source(source, depth)
    state = tensor_state(read_torch_file(path), str(path), "a ResNet state dict")
    stripped = {k.removeprefix("backbone."): v for k, v in state.items()}
    return state, stem_of(stripped), path


def load_imagenet_backbone(backbone: DilatedResNet | nn.Module, source: str) -> Path:
    """Initialise `backbone` (a DilatedResNet, or a PSPNet: its backbone) from ImageNet weights; every key must
    match (the error lists those that do not)."""
    if not isinstance(backbone, DilatedResNet):
        inner = getattr(backbone, "backbone", None)
        if not isinstance(inner, DilatedResNet):
            raise PSPNetError(f"load_imagenet_backbone: got {type(backbone).__name__}; expected a PSPNet or its "
                              ".backbone")
        backbone = inner
    state, _, path = imagenet_state(source, backbone.depth)
    load_state_strict(backbone, backbone_state(state, backbone.deep_stem, str(path)), str(path))
    return path
