"""Dilated ResNet backbones (18/34/50/101/152) with the official deep stem and dilation pattern.

Module names follow torchvision's ResNet inside each stage (`layerN.i.conv1`, `.bn1`, ..., `.downsample.{0,1}`), so
ImageNet weights and the official checkpoints map onto them by renaming the stem only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pspnet.model.norm import make_norm
from pspnet.model.recompute import recomputed


@dataclass(frozen=True)
class Depth:
    block: str  # "basic" or "bottleneck"
    blocks: tuple[int, int, int, int]


DEPTHS: dict[str, Depth] = {
    "resnet18": Depth("basic", (2, 2, 2, 2)),
    "resnet34": Depth("basic", (3, 4, 6, 3)),
    "resnet50": Depth("bottleneck", (3, 4, 6, 3)),
    "resnet101": Depth("bottleneck", (3, 4, 23, 3)),
    "resnet152": Depth("bottleneck", (3, 8, 36, 3)),
}
DILATION_PATTERNS = ("official", "contracted")
OUTPUT_STRIDES = (8, 16)


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, norm: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, dilation)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = make_norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(cin, planes * self.expansion, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """The stride sits on the 3×3 conv, as in the official PyTorch code and torchvision ("ResNet v1.5"); with
    `stride_on_1x1`, on the first 1×1 conv, as in the authors' Caffe models ("ResNet v1")."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, norm: str,
                 stride_on_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, stride=stride if stride_on_1x1 else 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = conv3x3(planes, planes, 1 if stride_on_1x1 else stride, dilation)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = make_norm(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(cin, planes * self.expansion, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def shortcut(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), make_norm(norm, cout))


class DeepStem(nn.Module):
    """Three 3×3 convs 3→64 (stride 2) →64 →128, each with norm + ReLU, then a 3×3 max-pool with stride 2.
    `widths`: the three convolutions' channels (the official 64-64-128; mmsegmentation's ResNetV1c 32-32-64)."""

    def __init__(self, norm: str, widths: tuple[int, int, int] = (64, 64, 128), ceil_pool: bool = False) -> None:
        super().__init__()
        a, b, c = widths
        self.out_channels = c
        self.conv1 = conv3x3(3, a, stride=2)
        self.bn1 = make_norm(norm, a)
        self.conv2 = conv3x3(a, b)
        self.bn2 = make_norm(norm, b)
        self.conv3 = conv3x3(b, c)
        self.bn3 = make_norm(norm, c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=ceil_pool)  # Caffe rounds up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.maxpool(x)


class ClassicStem(nn.Module):
    """torchvision's stem: one 7×7 conv 3→64 with stride 2, norm + ReLU, then a 3×3 max-pool with stride 2."""

    out_channels = 64

    def __init__(self, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


def stage_plan(blocks: tuple[int, int, int, int], output_stride: int, pattern: str) -> list[tuple[int, list[int]]]:
    """(stride, per-block dilations) of the four stages.

    "official": every block of a dilated stage uses its full dilation (stage 3: 2, stage 4: 4 at output stride 8).
    "contracted" (torchvision, timm, mmsegmentation): the first block of a dilated stage keeps the previous dilation.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride {output_stride} is not supported; expected one of {OUTPUT_STRIDES}")
    if pattern not in DILATION_PATTERNS:
        raise ValueError(f"unknown dilation pattern {pattern!r}; expected one of {', '.join(DILATION_PATTERNS)}")
    strides = [1, 2, 1, 1] if output_stride == 8 else [1, 2, 2, 1]
    plan: list[tuple[int, list[int]]] = []
    dilation = 1
    for i, (stride, n) in enumerate(zip(strides, blocks, strict=True)):
        previous = dilation
        if i > 0 and stride == 1:  # a stage that would halve the resolution dilates instead
            dilation *= 2
        dilations = [dilation] * n
        if pattern == "contracted":
            dilations[0] = previous
        plan.append((stride, dilations))
    return plan


class DilatedResNet(nn.Module):
    """Returns the stage-3 and stage-4 feature maps (1/8 of the input at output stride 8, 1/16 at 16)."""

    def __init__(
        self, depth: str, *, deep_stem: bool = True, output_stride: int = 8, dilation: str = "official",
        norm: str = "batch", stem_channels: tuple[int, int, int] = (64, 64, 128), stride_on_1x1: bool = False,
        ceil_pool: bool = False,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"unknown backbone {depth!r}; expected one of {', '.join(DEPTHS)}")
        spec = DEPTHS[depth]
        self.depth = depth
        self.deep_stem = deep_stem
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        self.stem = DeepStem(norm, stem_channels, ceil_pool) if deep_stem else ClassicStem(norm)
        cin = self.stem.out_channels
        stages = []
        plan = stage_plan(spec.blocks, output_stride, dilation)
        for planes, (stride, dilations) in zip((64, 128, 256, 512), plan, strict=True):
            layers = []
            for i, d in enumerate(dilations):
                extra = {"stride_on_1x1": stride_on_1x1} if block is Bottleneck else {}
                layers.append(block(cin, planes, stride if i == 0 else 1, d, norm, **extra))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # An execution switch, not a weight (Recipe.activation_checkpointing sets it): with gradients on, every block
        # is recomputed in the backward pass instead of keeping its activations.
        self.recompute = False
        self.stage3_channels = 256 * block.expansion
        self.stage4_channels = 512 * block.expansion

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._run(self.layer2, self._run(self.layer1, self._run(self.stem, x)))
        c3 = self._run(self.layer3, x)
        return c3, self._run(self.layer4, c3)

    def _run(self, part: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """`part(x)`; with `recompute` and gradients on, each of its blocks keeps only its input and is computed
        again in the backward pass (pspnet.model.recompute)."""
        if not (self.recompute and torch.is_grad_enabled()):
            return part(x)
        for block in part if isinstance(part, nn.Sequential) else (part,):
            x = recomputed(block, x)
        return x
