"""What a run records: `metrics.jsonl` (one JSON object per line), and TensorBoard scalars and validation images
when tensorboard is installed."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pspnet.classes import Color
from pspnet.engine.evaluate import Sample
from pspnet.engine.report import sample_grid
from pspnet.files import write_text_atomically


class RunLog:
    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        """Nothing is written before `open()`."""
        self.enabled, self.wants_tensorboard = enabled, tensorboard
        self.path = out_dir / "metrics.jsonl"
        self.tensorboard_dir = out_dir / "tensorboard"
        self.writer: Any = None
        self._threads: set[threading.Thread] = set()
        self._hook: Any = None

    def open(self, resumed_at: int = 0, validation_owed: bool = False) -> None:
        """Make the run's folder and start TensorBoard's writer (when asked for and installed: else a warning).
        `resumed_at`: the iteration a resumed run continues from; what was recorded after it (a run killed or out
        of disk space after its last checkpoint) is done again, so it is dropped from metrics.jsonl (with the
        validation at that iteration when it is `validation_owed`) and purged from TensorBoard's view."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_at and self.path.is_file():
            self._drop_records_after(resumed_at, validation_owed)
        if not self.wants_tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            print("warning: train.tensorboard is on but tensorboard is not installed (pip install "
                  "'pspnet[tensorboard]'); the metrics still go to metrics.jsonl", file=sys.stderr)
            return
        before = set(threading.enumerate())
        purge = {"purge_step": resumed_at + (0 if validation_owed else 1)} if resumed_at else {}
        self.writer = self._tensorboard(lambda: SummaryWriter(str(self.tensorboard_dir), **purge))
        self._threads = set(threading.enumerate()) - before  # its writer's thread
        self._hook = threading.excepthook
        threading.excepthook = self._quiet_writer_failure

    def _drop_records_after(self, iteration: int, validation_owed: bool) -> None:
        """metrics.jsonl without the records after `iteration` (and its validation's, when owed), rewritten whole."""
        def kept(line: str) -> bool:
            try:
                record = json.loads(line)
                at = int(record["iteration"])
            except (ValueError, KeyError, TypeError):
                return True  # not ours to judge: kept as it is
            return at < iteration or at == iteration and not (validation_owed and record.get("kind") == "val")

        lines = self.path.read_text().splitlines(keepends=True)
        if all(kept(line) for line in lines):
            return
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines if kept(line))
        write_text_atomically(self.path, text)

    def _quiet_writer_failure(self, args: Any) -> None:
        """TensorBoard writes from a thread of its own; a write that fails there (a full disk) would print that
        thread's traceback. It is raised again by the next call from the run (`_tensorboard`), named: not printed."""
        if not (args.thread in self._threads and isinstance(args.exc_value, OSError)):
            self._hook(args)

    def _tensorboard(self, call: Callable[[], Any]) -> Any:
        """A call into TensorBoard's writer; its OSError (its own or its thread's, raised by the next call) names
        the TensorBoard folder, as the failure of a file the run writes."""
        try:
            return call()
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(self.tensorboard_dir)) from e

    def record(self, iteration: int, values: dict[str, float], kind: str = "train",
               notes: dict[str, Any] | None = None) -> None:
        """One metrics.jsonl record: `values` and `notes`."""
        if not self.enabled:
            return
        record = {"kind": kind, "iteration": iteration, "time": round(time.time(), 3), **values, **(notes or {})}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def tensorboard_scalars(self, iteration: int, values: dict[str, float], kind: str = "train") -> None:
        """`values` as TensorBoard scalars `kind/name` (nothing without TensorBoard)."""
        if self.writer is not None:
            self._tensorboard(lambda: [self.writer.add_scalar(f"{kind}/{key}", value, iteration)
                                       for key, value in values.items()])

    @property
    def shows_images(self) -> bool:
        return self.writer is not None

    def samples(self, iteration: int, samples: Sequence[Sample], palette: Sequence[Color]) -> None:
        """A validation's samples to TensorBoard as one picture, a row of image | ground truth | prediction each
        (nothing without TensorBoard or samples; images have no place in metrics.jsonl)."""
        if self.writer is not None and samples:
            picture = sample_grid(samples, palette)
            self._tensorboard(lambda: self.writer.add_image("val/samples (image | ground truth | prediction)", picture,
                                                            iteration, dataformats="HWC"))

    def close(self) -> None:
        """Everything written (TensorBoard's pending events flushed); raises the OSError of a write that failed.
        Closing again does nothing."""
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                self._tensorboard(writer.flush)
                self._tensorboard(writer.close)
        finally:
            if self._hook is not None and threading.excepthook == self._quiet_writer_failure:
                threading.excepthook = self._hook
            self._hook = None
