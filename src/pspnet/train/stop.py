"""Stopping a training run when asked: SIGTERM (a cluster scheduler preempting the job, `kill`, torchrun passing on
its own stop) or SIGINT (Ctrl-C). The run finishes the iteration it is in, saves a checkpoint at it, and stops, every
process of a torchrun at the same iteration; `--resume` continues from there as if nothing had happened. A validation
in progress is cut short after the images in flight (it can take minutes, more than a scheduler's grace period):
the checkpoint then says so, and `--resume` runs that validation first. A second
request stops at once without saving (the last checkpoint stays). A request that arrives within a second of the first
is the same one: a Ctrl-C reaches the workers of a torchrun twice, from the terminal and from torchrun."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch

from pspnet.distributed import Distributed, all_reduce_sum

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_WINDOW_S = 1.0  # requests this close to the first are the same request


class TrainingStopped(Exception):
    """The run stopped when asked, after saving `checkpoint` at `iteration`."""

    def __init__(self, signum: int, iteration: int, checkpoint: str, validating: bool = False,
                 resume: str = "--resume") -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        name = signal.Signals(signum).name
        if validating:
            super().__init__(f"stopped by {name} during the validation of iteration {iteration}: saved {checkpoint}; "
                             f"`{resume}` validates it first, then continues")
        else:
            super().__init__(f"stopped by {name} after iteration {iteration}: saved {checkpoint}; `{resume}` "
                             "continues from it")


class StopRequests:
    """Between `install` and `restore`, SIGTERM and SIGINT are requests, read at the end of each iteration with
    `agreed`. Signal handlers can only be set in the main thread: elsewhere (a training run started from a thread)
    the signals keep their handlers."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.received: int = 0
        self.at = 0.0
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._request) for sig in SIGNALS}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _request(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self.received:
            self.received, self.at = signum, now
            self.say(f"{signal.Signals(signum).name} received: stopping after this iteration with a checkpoint, "
                     "cutting a validation short (a second one stops at once, without saving)")
        elif now - self.at > REPEAT_WINDOW_S:
            self.restore()
            raise KeyboardInterrupt

    def agreed(self, d: Distributed) -> int:
        """The signal asked for by any process (0: none); every process calls it at the same iteration."""
        if not d.enabled:
            return self.received
        # the largest signal number any process received: all processes stop alike, whichever got what
        numbers = torch.zeros(d.world_size, dtype=torch.int64, device=d.device)
        numbers[d.rank] = self.received
        return int(all_reduce_sum(numbers, d).max())
