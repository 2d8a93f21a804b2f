"""The architecture settings of a PSPNet: what a checkpoint needs to rebuild its model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pspnet.errors import PSPNetError
from pspnet.model.norm import NORM_NAMES
from pspnet.model.resnet import DEPTHS, DILATION_PATTERNS, OUTPUT_STRIDES


@dataclass
class ModelConfig:
    num_classes: int
    backbone: str = "resnet50"
    deep_stem: bool = True  # the official 3×3 64-64-128 stem; False: torchvision's 7×7 stem
    stem_channels: tuple[int, int, int] = (64, 64, 128)  # the deep stem's widths (mmsegmentation's ResNetV1c: 32-32-64)
    output_stride: int = 8
    dilation: str = "official"  # or "contracted" (first block of a dilated stage keeps the previous dilation)
    bins: tuple[int, ...] = (1, 2, 3, 6)
    align_corners: bool = True
    norm: str = "batch"  # "batch", "syncbatch" (DDP) or "group" (tiny batches)
    aux: bool = True  # the auxiliary head on stage 3, used in training only
    dropout: float = 0.1
    stride_on_1x1: bool = False  # a bottleneck's stride on its first 1×1 conv, as the authors' Caffe models
    ceil_pool: bool = False  # the stem's max-pool rounds its output size up, as Caffe
    head_channels: int = 512  # the head's 3×3 conv (mmsegmentation's ResNet-18 PSPNet: 128)
    ppm_channels: int = 0  # each pyramid branch's; 0: stage-4 channels / len(bins), as the paper
    aux_channels: int = 256  # the auxiliary head's 3×3 conv (mmsegmentation's ResNet-18: 64)

    def __post_init__(self) -> None:
        self.bins = tuple(int(b) for b in self.bins)
        self.stem_channels = tuple(int(c) for c in self.stem_channels)  # type: ignore[assignment]
        if len(self.stem_channels) != 3 or min(self.stem_channels) < 1:
            raise PSPNetError(f"stem_channels must be three positive widths, got {list(self.stem_channels)}")
        for name in ("head_channels", "aux_channels"):
            if getattr(self, name) < 1:
                raise PSPNetError(f"{name} must be positive, got {getattr(self, name)}")
        if self.ppm_channels < 0:
            raise PSPNetError(f"ppm_channels must be 0 (in / len(bins)) or positive, got {self.ppm_channels}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise PSPNetError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if self.backbone not in DEPTHS:
            raise PSPNetError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(DEPTHS)}")
        if self.output_stride not in OUTPUT_STRIDES:
            raise PSPNetError(f"output_stride must be one of {OUTPUT_STRIDES}, got {self.output_stride!r}")
        if self.dilation not in DILATION_PATTERNS:
            raise PSPNetError(f"unknown dilation {self.dilation!r}; expected one of {', '.join(DILATION_PATTERNS)}")
        if self.norm not in NORM_NAMES:
            raise PSPNetError(f"unknown norm {self.norm!r}; expected one of {', '.join(NORM_NAMES)}")
        if not self.bins or any(b < 1 for b in self.bins):
            raise PSPNetError(f"bins must be positive integers, got {self.bins!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise PSPNetError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bins"] = list(self.bins)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model settings") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PSPNetError(f"{source}: unknown model setting(s) {', '.join(unknown)}; expected {', '.join(known)}")
        if "num_classes" not in d:
            raise PSPNetError(f"{source}: missing model setting num_classes")
        return cls(**d)
