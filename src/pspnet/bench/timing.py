"""Wall-clock timing of repeated work, with the device synchronised and the first calls reported apart."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
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
    """Run `work` warmup + repeats times, timed; returns the measurement and the result of one more, untimed call."""
    measurements, results = measure_interleaved([work], device, repeats, warmup, items)
    return measurements[0], results[0]


def measure_interleaved(works: Sequence[Callable[[], Any]], device: torch.device, repeats: int, warmup: int,
                        items: int = 1) -> tuple[list[Measurement], list[Any]]:
    """Time several pieces of work in turns (A B A B ...), so that a machine that speeds up or slows down during
    the run (turbo, other processes, a noisy neighbour in a VM) shifts all of them alike and their ratios hold.
    Each call's peak memory is taken apart; a work's peak is the largest over its repetitions.

    No timed call runs while an earlier call's result is held: each is released as soon as its time is taken, as a
    loop that uses each output and drops it does, and the results returned (for the agreement check) come from one
    more round after the timed ones, untimed. Held until the work's next call, each output made that call write its
    own into fresh memory (on a VM that cost PSPNet-50's OpenVINO int8 call 0.3-0.5 s of kernel time zeroing pages:
    0.75-0.9 s instead of 0.37-0.50 s; BENCHMARKS.md), and counted in the peak memory of the works after it."""
    if repeats < 1:
        raise ValueError(f"repeats {repeats}: expected at least 1")
    warm: list[list[float]] = [[] for _ in works]
    seconds: list[list[float]] = [[] for _ in works]
    peaks: list[int | None] = [None] * len(works)
    for _ in range(warmup):
        for i, work in enumerate(works):
            start = time.perf_counter()
            work()
            synchronize(device)
            warm[i].append(time.perf_counter() - start)
    for _ in range(repeats):
        for i, work in enumerate(works):
            with PeakMemory(device) as peak:
                start = time.perf_counter()
                work()
                synchronize(device)
                seconds[i].append(time.perf_counter() - start)
            if peak.bytes is not None:
                peaks[i] = max(peaks[i] or 0, peak.bytes)
    results = [work() for work in works]
    synchronize(device)
    return [Measurement(seconds[i], warm[i], peaks[i], items) for i in range(len(works))], results
