"""The segmentation heads: 3×3 conv → norm → ReLU → Dropout2d → 1×1 classifier (main head and auxiliary head)."""

from __future__ import annotations

import torch
from torch import nn

from pspnet.model.norm import make_norm


class SegmentationHead(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)
        self.norm = make_norm(norm, mid_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.conv(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The head after its 3×3 convolution, given that convolution's output."""
        return self.classifier(self.dropout(self.relu(self.norm(features))))
