"""The official hszhao/semseg PSPNet checkpoints (`{'epoch', 'state_dict', 'optimizer'}`, keys prefixed `module.`)."""

from __future__ import annotations

import re
from typing import Any

from pspnet.classes import DatasetInfo, info_for_class_count
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import built_holding, rename_strictly, tensor_state

STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
HEAD = {"0": "conv", "1": "norm", "4": "classifier"}
DEPTH_BY_STAGE3_BLOCKS = {6: "resnet50", 23: "resnet101", 36: "resnet152"}
OFFICIAL_BINS = (1, 2, 3, 6)


def rename(key: str) -> str | None:
    """Our name for an official key, or None when the key is not part of the official PSPNet."""
    if m := re.fullmatch(r"layer0\.(\d+)\.(.+)", key):
        return f"backbone.stem.{STEM[m[1]]}.{m[2]}" if m[1] in STEM else None
    if re.fullmatch(r"layer[1-4]\..+", key):
        return f"backbone.{key}"
    if m := re.fullmatch(r"ppm\.features\.(\d+)\.([12])\.(.+)", key):
        return f"ppm.branches.{m[1]}.{'conv' if m[2] == '1' else 'norm'}.{m[3]}"
    if m := re.fullmatch(r"(cls|aux)\.(\d+)\.(.+)", key):
        module = "head" if m[1] == "cls" else "aux_head"
        return f"{module}.{HEAD[m[2]]}.{m[3]}" if m[2] in HEAD else None
    return None


def convert_semseg_state(obj: Any, source: str, info: DatasetInfo | None = None) -> PSPNet:
    """Build our PSPNet from an official checkpoint's content; depth, classes and aux head are inferred, strictly."""
    state = tensor_state(obj, source, "a PSPNet checkpoint")
    if "cls.4.weight" not in state or "layer0.0.weight" not in state:
        if any(k.startswith("decode_head.") for k in state):
            raise PSPNetError(f"{source}: an mmsegmentation checkpoint; convert it with --from mmseg")
        if any(k.removeprefix("module.").startswith("head.classifier.") for k in state):  # pspnet's own state_dict()
            raise PSPNetError(f"{source}: the state_dict() of a pspnet model, which does not record its settings and "
                              "classes; save models with pspnet.save(model, 'model.safetensors'), or build "
                              "pspnet.PSPNet(...) with the settings it was made with and load_state_dict() it")
        raise PSPNetError(
            f"{source}: not an official semseg PSPNet checkpoint (no 'cls.4.weight' / 'layer0.0.weight' keys); "
            "expected a hszhao/semseg train_epoch_N.pth or a pspnet .safetensors file"
        )
    stage3_blocks = {int(m[1]) for k in state if (m := re.match(r"layer3\.(\d+)\.", k))}
    depth = DEPTH_BY_STAGE3_BLOCKS.get(len(stage3_blocks))
    if depth is None:
        raise PSPNetError(f"{source}: stage 3 has {len(stage3_blocks)} blocks; expected 6 (R50), 23 (R101), 36 (R152)")
    branches = {int(m[1]) for k in state if (m := re.match(r"ppm\.features\.(\d+)\.", k))}
    if len(branches) != len(OFFICIAL_BINS):
        raise PSPNetError(f"{source}: {len(branches)} pyramid branches; the official model has 4 (bins 1, 2, 3, 6)")
    num_classes = int(state["cls.4.weight"].shape[0])
    has_aux = any(k.startswith("aux.") for k in state)
    renamed = rename_strictly(state, rename, source, "the official PSPNet")
    info = info or info_for_class_count(num_classes)  # outside the build: only the model is made on the meta device
    return built_holding(lambda: PSPNet(num_classes, info=info, backbone=depth, aux=has_aux, bins=OFFICIAL_BINS),
                         renamed, source)
