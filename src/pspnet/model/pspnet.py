"""PSPNet: dilated ResNet → pyramid pooling → 3×3 head, plus the auxiliary head on stage 3, upsampled to the input."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pspnet.classes import DatasetInfo
from pspnet.errors import PSPNetError
from pspnet.model.config import ModelConfig
from pspnet.model.head import SegmentationHead
from pspnet.model.pyramid_conv import convolvable_at_bins, pyramid_conv
from pspnet.model.pyramid_pooling import PyramidPooling
from pspnet.model.resnet import DilatedResNet
from pspnet.model.upsample import resize_by_matmul

AUX_WEIGHT = 0.4  # loss = main + 0.4 × aux, as the paper


class PSPNet(nn.Module):
    """The published PSPNet.

    `PSPNet(num_classes=150, backbone="resnet50")` builds it; every setting of `ModelConfig` is a keyword.

    Input: a normalised float tensor N×3×H×W (RGB, `(x / 255 - info.mean) / info.std`), any H and W.
    Eval mode: returns the logits N×C×H×W, bilinearly upsampled from 1/8 resolution to exactly H×W.
    Training mode: returns `(logits, aux_logits)`, both N×C×H×W; `aux_logits` is None without the aux head.

    `upsample_by_matmul` (an execution switch, not a weight; `Recipe.matmul_upsample` sets it): the final upsampling
    as two matrix products (`pspnet.model.upsample`), the same function. `pyramid_at_bins` (likewise;
    `Recipe.pyramid_at_bins`): the head's 3×3 convolution takes the pyramid's branches at their bins, before they
    are upsampled (`pspnet.model.pyramid_conv`), the same function with 21% less arithmetic for PSPNet-50.
    """

    def __init__(self, num_classes: int, *, info: DatasetInfo | None = None, **settings: Any) -> None:
        super().__init__()
        try:
            config = ModelConfig(num_classes=num_classes, **settings)
        except TypeError as e:
            raise PSPNetError(f"PSPNet: {e}") from None
        self.config = config
        self.upsample_by_matmul = False
        self.pyramid_at_bins = False
        self.info = info or DatasetInfo.generic(num_classes)
        if self.info.num_classes != num_classes:
            raise PSPNetError(f"PSPNet: {self.info.num_classes} class names given for {num_classes} classes")
        self.backbone = DilatedResNet(
            config.backbone, deep_stem=config.deep_stem, output_stride=config.output_stride,
            dilation=config.dilation, norm=config.norm, stem_channels=config.stem_channels,
            stride_on_1x1=config.stride_on_1x1, ceil_pool=config.ceil_pool,
        )
        self.ppm = PyramidPooling(self.backbone.stage4_channels, config.bins, config.norm, config.align_corners,
                                  config.ppm_channels)
        self.head = SegmentationHead(self.ppm.out_channels, config.head_channels, num_classes, config.norm,
                                     config.dropout)
        self.aux_head = (
            SegmentationHead(self.backbone.stage3_channels, config.aux_channels, num_classes, config.norm,
                             config.dropout)
            if config.aux
            else None
        )

    @classmethod
    def from_config(cls, config: ModelConfig, info: DatasetInfo | None = None) -> PSPNet:
        settings = config.to_dict()
        return cls(settings.pop("num_classes"), info=info, **settings)

    def forward(self, x: torch.Tensor) -> Any:
        check_input(x)
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)
        if self.pyramid_at_bins and convolvable_at_bins(self.head.conv):
            features = pyramid_conv(self.head.conv, c4, self.ppm.pooled(c4), self.config.align_corners,
                                    channels=self.ppm.channels, bins=self.ppm.bins)
            logits = self.upsample(self.head.classify(features), size)
        else:
            logits = self.upsample(self.head(self.ppm(c4)), size)
        if not self.training:
            return logits
        aux = self.upsample(self.aux_head(c3), size) if self.aux_head is not None else None
        return logits, aux

    def upsample(self, logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if self.upsample_by_matmul:
            return resize_by_matmul(logits, size, self.config.align_corners)
        return F.interpolate(logits, size, mode="bilinear", align_corners=self.config.align_corners)


def check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise PSPNetError(f"PSPNet expects a tensor N×3×H×W, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise PSPNetError(f"PSPNet expects a normalised float tensor N×3×H×W (RGB), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise PSPNetError(f"PSPNet expects a normalised float tensor, got dtype {x.dtype}; normalise the image first")
