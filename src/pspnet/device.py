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


def cpu_features() -> set[str]:
    """The CPU's instruction-set flags that matter for speed (avx2, avx512f, avx512_bf16, avx512_vnni, amx_*),
    read from /proc/cpuinfo; empty where it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return {flag for flag in line.split(":", 1)[1].split()
                            if flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni") or flag.startswith("amx")}
    except OSError:
        pass
    return set()


NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})  # CPU flags of bf16 arithmetic in hardware


def bf16_warning(device: torch.device, precision: str) -> str | None:
    """A warning for bf16 on a CPU without bf16 arithmetic (AVX-512 BF16 or AMX), where it is emulated and measured
    ~50× slower than fp32 (BENCHMARKS.md); None when there is nothing to say."""
    if precision != "bf16" or device.type != "cpu":
        return None
    features = cpu_features()
    if not features or features & NATIVE_BF16:
        return None
    return ("bf16 on this CPU is emulated (no AVX-512 BF16 or AMX: it has " + (", ".join(sorted(features)) or "none")
            + "), so it runs far slower than fp32 (~50× measured); use fp32 here")
