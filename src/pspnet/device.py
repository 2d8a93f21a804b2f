"""`--device auto|cpu|cuda[:i]` → a torch.device, checked."""

from __future__ import annotations

import torch

from pspnet.errors import PSPNetError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when available, else the CPU; "cuda:1" must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PSPNetError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PSPNetError(f"device {name!r} asked for, but this machine has no usable CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PSPNetError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise PSPNetError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    return device
