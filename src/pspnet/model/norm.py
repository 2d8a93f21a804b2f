"""The normalisation layer, chosen by name: BatchNorm (default), SyncBatchNorm (DDP) or GroupNorm (tiny batches)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

NormName = Literal["batch", "syncbatch", "group"]
NORM_NAMES: tuple[str, ...] = ("batch", "syncbatch", "group")
GROUPS = 32  # at most; fewer when the channel count is not a multiple of 32 (e.g. 3 pyramid bins)


def make_norm(name: str, channels: int) -> nn.Module:
    """A normalisation layer over `channels` channels (BN eps 1e-5 and momentum 0.1 as the official code)."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "syncbatch":
        return nn.SyncBatchNorm(channels)
    if name == "group":
        return nn.GroupNorm(math.gcd(GROUPS, channels), channels)
    raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORM_NAMES)}")


def batch_norm_without_batch_stats(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a BatchNorm layer with its running statistics, neither using nor updating the batch's statistics.

    Used in training when a map has a single value per channel (the 1×1 pyramid bin at batch size 1), where batch
    statistics do not exist and plain BatchNorm raises.
    """
    assert isinstance(norm, nn.modules.batchnorm._BatchNorm)
    return nn.functional.batch_norm(
        x, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=False, momentum=0.0, eps=norm.eps
    )


def needs_batch_stats_fallback(norm: nn.Module, x: torch.Tensor) -> bool:
    """True when `norm` would compute batch statistics from a single value per channel (a crash in plain BN)."""
    if not (norm.training and isinstance(norm, nn.modules.batchnorm._BatchNorm)):
        return False
    values_per_channel = x.shape[0] * x.shape[2] * x.shape[3]
    if values_per_channel > 1:
        return False
    if isinstance(norm, nn.SyncBatchNorm) and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size() == 1  # several ranks: statistics are pooled across them
    return True
