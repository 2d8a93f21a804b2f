"""mmsegmentation's PSPNet checkpoints (model zoo `{"meta", "state_dict"}`): ResNetV1c (deep stem 32-32-64) or
ResNet (7×7 stem, the zoo's `r18b`/`r50b`/`r101b`) at output stride 8 with contracted dilation, `PSPHead`
(`psp_modules`, `bottleneck`, `conv_seg`), an optional `FCNHead` auxiliary head, bilinear resizing with
`align_corners=False`, inputs normalised in RGB with ImageNet's mean and std (the zoo's 0..255 mean/std divided by 255).

Every setting is read off the tensors (depth, stem, widths, classes, aux head); nothing is assumed that the file
could contradict, and every key must map (strictly) onto our model.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from pspnet.classes import DatasetInfo, info_for_class_count
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import built_holding, rename_strictly, tensor_state

DEEP_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
          ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
          ("bottleneck", (3, 8, 36, 3)): "resnet152"}
POOL_SCALES = (1, 2, 3, 6)  # PSPHead's default, used by every zoo PSPNet


def is_mmseg_state(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("decode_head.psp_modules.") for k in state)


def rename(key: str) -> str | None:
    """Our name for an mmseg key, or None when it is not part of an mmseg PSPNet."""
    if m := re.fullmatch(r"backbone\.stem\.(\d+)\.(.+)", key):
        return f"backbone.stem.{DEEP_STEM[m[1]]}.{m[2]}" if m[1] in DEEP_STEM else None
    if m := re.fullmatch(r"backbone\.(conv1|bn1)\.(.+)", key):
        return f"backbone.stem.{m[1]}.{m[2]}"
    if re.fullmatch(r"backbone\.layer[1-4]\..+", key):
        return key
    if m := re.fullmatch(r"decode_head\.psp_modules\.(\d+)\.1\.(conv|bn)\.(.+)", key):
        return f"ppm.branches.{m[1]}.{'conv' if m[2] == 'conv' else 'norm'}.{m[3]}"
    if m := re.fullmatch(r"decode_head\.bottleneck\.(conv|bn)\.(.+)", key):
        return f"head.{'conv' if m[1] == 'conv' else 'norm'}.{m[2]}"
    if m := re.fullmatch(r"decode_head\.conv_seg\.(.+)", key):
        return f"head.classifier.{m[1]}"
    if m := re.fullmatch(r"auxiliary_head\.convs\.0\.(conv|bn)\.(.+)", key):
        return f"aux_head.{'conv' if m[1] == 'conv' else 'norm'}.{m[2]}"
    if m := re.fullmatch(r"auxiliary_head\.conv_seg\.(.+)", key):
        return f"aux_head.classifier.{m[1]}"
    return None


def architecture(state: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """The PSPNet settings that these tensors are the weights of."""
    need = ("decode_head.conv_seg.weight", "decode_head.bottleneck.conv.weight",
            "decode_head.psp_modules.0.1.conv.weight")
    missing = [k for k in need if k not in state]
    if missing:
        if "cls.4.weight" in {k.removeprefix("module.") for k in state}:  # the authors' hszhao/semseg layout
            raise PSPNetError(f"{source}: a checkpoint of the authors' hszhao/semseg code; convert it with "
                              "--from semseg")
        raise PSPNetError(f"{source}: not an mmsegmentation PSPNet checkpoint (no {missing[0]}); expected a zoo "
                          "pspnet_*.pth with PSPHead")
    block = "bottleneck" if any(k.endswith(".conv3.weight") for k in state if k.startswith("backbone.layer")) \
        else "basic"
    blocks = tuple(len({int(m[1]) for k in state if (m := re.match(rf"backbone\.layer{i}\.(\d+)\.", k))})
                   for i in range(1, 5))
    depth = DEPTHS.get((block, blocks))
    if depth is None:
        raise PSPNetError(f"{source}: a ResNet with {block} blocks {list(blocks)} per stage; expected ResNet-18/34/50/"
                          "101/152")
    deep_stem = "backbone.stem.0.weight" in state
    if not deep_stem and "backbone.conv1.weight" not in state:
        raise PSPNetError(f"{source}: no stem found (neither backbone.stem.0 nor backbone.conv1)")
    branches = {int(m[1]) for k in state if (m := re.match(r"decode_head\.psp_modules\.(\d+)\.", k))}
    if len(branches) != len(POOL_SCALES):
        raise PSPNetError(f"{source}: {len(branches)} pyramid branches; expected {len(POOL_SCALES)} (pool scales "
                          f"{', '.join(map(str, POOL_SCALES))})")
    settings: dict[str, Any] = {
        "backbone": depth, "deep_stem": deep_stem, "output_stride": 8, "dilation": "contracted",
        "bins": POOL_SCALES, "align_corners": False, "aux": "auxiliary_head.conv_seg.weight" in state,
        "head_channels": int(state["decode_head.bottleneck.conv.weight"].shape[0]),
        "ppm_channels": int(state["decode_head.psp_modules.0.1.conv.weight"].shape[0]),
    }
    if deep_stem:
        settings["stem_channels"] = tuple(int(state[f"backbone.stem.{i}.weight"].shape[0]) for i in (0, 3, 6))
    if settings["aux"]:
        settings["aux_channels"] = int(state["auxiliary_head.convs.0.conv.weight"].shape[0])
    return settings


def class_info(obj: Any, num_classes: int) -> DatasetInfo:
    """Class names and palette from the file's `meta.dataset_meta` (mmseg 1.x) or `meta.CLASSES` (0.x), else those
    of the known dataset with that class count, else generic names."""
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    classes = dataset_meta.get("classes") or meta.get("CLASSES")
    palette = dataset_meta.get("palette") or meta.get("PALETTE")
    if classes is not None and len(classes) == num_classes:
        palette = [tuple(int(v) for v in c) for c in palette] if palette and len(palette) == num_classes else []
        return DatasetInfo("mmseg", [str(c) for c in classes], palette)
    return info_for_class_count(num_classes)


def config_align_corners(obj: Any) -> bool:
    """Whether the training config stored in the file (`meta.config`, mmseg 0.x) sets `align_corners=True` for its
    heads, as mmseg's 769×769 Cityscapes configs do; False when the file stores none (mmseg's default)."""
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    config = meta.get("config") if isinstance(meta, dict) else None
    return isinstance(config, str) and re.search(r"align_corners\s*=\s*True", config) is not None


def convert_mmseg_state(obj: Any, source: str, info: DatasetInfo | None = None,
                        align_corners: bool | None = None) -> PSPNet:
    """Our PSPNet from an mmseg checkpoint's content; settings inferred, every key mapped, strictly.
    `align_corners`: the heads' resize setting, which the weights do not show: True for mmseg's 769×769 Cityscapes
    configs (`decode_head=dict(align_corners=True)`); None reads it from the file's stored config, else False."""
    state = tensor_state(obj, source, "an mmsegmentation checkpoint")
    settings = architecture(state, source)
    settings["align_corners"] = config_align_corners(obj) if align_corners is None else align_corners
    num_classes = int(state["decode_head.conv_seg.weight"].shape[0])
    renamed = rename_strictly(state, rename, source, "an mmseg PSPNet")
    info = info or class_info(obj, num_classes)  # outside the build: only the model is made on the meta device
    return built_holding(lambda: PSPNet(num_classes, info=info, **settings), renamed, source)
