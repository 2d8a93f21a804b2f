"""Peak memory of a piece of work: the process's peak resident set on the CPU, allocated bytes on CUDA.

On Linux the kernel's peak-RSS counter (VmHWM) is reset by writing "5" to /proc/self/clear_refs, so each
measurement gets its own peak. The CPU figure is the whole process (Python, torch, every loaded model included):
what a user would see, and an upper bound on what the measured work needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def saved_for_backward(work: Callable[[], object]) -> int:
    """The bytes of the tensors autograd keeps for the backward pass while `work()` runs (a tensor kept by several
    operations counts each time): what activation checkpointing removes, exact and the same on every machine."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        work()
    return total


def resident_bytes() -> int | None:
    """The process's current resident set in bytes (None where /proc is not available)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


class PeakMemory:
    """`with PeakMemory(device) as peak: ...` then `peak.bytes` (None when the platform cannot tell)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None
        self._resettable = True

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                CLEAR_REFS.write_text("5")
            except OSError:
                self._resettable = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._resettable:
            kib = _status_kib("VmHWM")
            self.bytes = None if kib is None else kib * 1024
