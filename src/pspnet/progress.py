"""Progress bars on a terminal, plain periodic lines elsewhere (log files, CI, `nohup`): never escape codes or
carriage returns in a file. `progress_bar(...)` takes tqdm's arguments."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

LINE_INTERVAL = 30.0  # seconds between two lines of a plain progress report


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar when stderr is a terminal, else a `LineProgress` with the same interface."""
    if kwargs.get("disable") or sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)


class LineProgress:
    """The part of tqdm's interface the project uses, writing one line every LINE_INTERVAL seconds and one at the
    end: `desc: done/total unit (percent), rate unit/s, postfix`."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, unit_scale: bool = False, **_: Any) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
        self.desc, self.unit, self.unit_scale = desc, unit, unit_scale
        self.n = self.start_n = initial
        self.postfix = ""
        self.started = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LINE_INTERVAL:
            self.last = now
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n > self.start_n:
                self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        done = self._fmt(self.n) + (f"/{self._fmt(self.total)}" if self.total else "")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.start_n) / elapsed
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{pct}, {self._fmt(rate)} {self.unit}/s, {elapsed:.0f} s{extra}",
              file=sys.stderr, flush=True)

    def _fmt(self, value: float) -> str:
        if self.unit_scale and value >= 1024:
            for prefix in ("k", "M", "G", "T"):
                value /= 1024
                if value < 1024:
                    return f"{value:.1f}{prefix}"
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
