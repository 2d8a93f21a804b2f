"""The pyramid pooling module: pool the stage-4 map to b×b bins, reduce, upsample back, concatenate with the input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pspnet.model.adaptive_pool import adaptive_avg_pool2d
from pspnet.model.norm import batch_norm_without_batch_stats, make_norm, needs_batch_stats_fallback


class PoolBranch(nn.Module):
    """Adaptive average pooling to bins×bins → 1×1 conv (no bias) → norm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, bins: int, norm: str) -> None:
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Our matrix-product pooling, not F.adaptive_avg_pool2d: the same numbers and speed, and it exports to ONNX
        # for any feature size (F.adaptive_avg_pool2d only when the size is fixed and divisible by the bins).
        y = self.conv(adaptive_avg_pool2d(x, self.bins))
        # The 1×1 bin at batch size 1 has one value per channel: BatchNorm cannot take statistics of it.
        y = batch_norm_without_batch_stats(self.norm, y) if needs_batch_stats_fallback(self.norm, y) else self.norm(y)
        return self.relu(y)


class PyramidPooling(nn.Module):
    """Concatenates `[x, branch(b) for b in bins]`; each branch reduces to `channels`, by default (the paper)
    in_channels / len(bins)."""

    def __init__(self, in_channels: int, bins: Sequence[int], norm: str, align_corners: bool,
                 channels: int = 0) -> None:
        super().__init__()
        reduced = channels or in_channels // len(bins)
        self.align_corners = align_corners
        self.bins = tuple(bins)
        self.channels = (in_channels, *[reduced] * len(bins))  # the concatenation's parts: the input, each branch
        self.branches = nn.ModuleList(PoolBranch(in_channels, reduced, b, norm) for b in bins)
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        upsampled = [F.interpolate(p, size, mode="bilinear", align_corners=self.align_corners) for p in self.pooled(x)]
        return torch.cat([x, *upsampled], dim=1)

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch's output at its bins×bins, before the upsampling (`pspnet.model.pyramid_conv` takes them)."""
        return [branch(x) for branch in self.branches]
