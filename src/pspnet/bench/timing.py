"""Wall-clock timing of repeated work, with the device synchronised and the first calls reported apart."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pspnet.bench.memory import PeakMemory


@dataclass
class Measurement:
    """Seconds per repetition (after warm-up), the warm-up calls' seconds (compilation shows there) and the peak
    memory over the repetitions. `items` is how many images one repetition processes."""

    seconds: list[float]
    warmup_seconds: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    items: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_item(self) -> float:
        """Median seconds per image."""
        return self.median / self.items

    @property
    def rate(self) -> float:
        """Images per second, from the median repetition."""
        return self.items / self.median

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(work: Callable[[], Any], device: torch.device, repeats: int, warmup: int, items: int = 1
            ) -> tuple[Measurement, Any]:
    """Run `work` warmup + repeats times; returns the measurement and the last call's result."""
    if repeats < 1:
        raise ValueError(f"repeats {repeats}: expected at least 1")
    result: Any = None
    warm: list[float] = []
    for _ in range(warmup):
        start = time.perf_counter()
        result = work()
        synchronize(device)
        warm.append(time.perf_counter() - start)
    seconds: list[float] = []
    with PeakMemory(device) as peak:
        for _ in range(repeats):
            start = time.perf_counter()
            result = work()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return Measurement(seconds, warm, peak.bytes, items), result
