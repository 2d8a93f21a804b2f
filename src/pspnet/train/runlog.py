"""What a run records: `metrics.jsonl` (one JSON object per line), and TensorBoard scalars and validation images
when tensorboard is installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class RunLog:
    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer: Any = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                SummaryWriter = None  # noqa: N806
                print("warning: train.tensorboard is on but tensorboard is not installed (pip install "
                      "'pspnet[tensorboard]'); the metrics still go to metrics.jsonl", file=sys.stderr)
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def scalars(self, iteration: int, values: dict[str, float], kind: str = "train",
                notes: dict[str, Any] | None = None) -> None:
        """One metrics.jsonl record; `values` also go to TensorBoard, `notes` (e.g. the recipe) to the file only."""
        if not self.enabled:
            return
        record = {"kind": kind, "iteration": iteration, "time": round(time.time(), 3), **values, **(notes or {})}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, iteration)

    @property
    def shows_images(self) -> bool:
        return self.writer is not None

    def image(self, iteration: int, tag: str, picture: np.ndarray) -> None:
        """An H×W×3 uint8 picture to TensorBoard (images have no place in metrics.jsonl)."""
        if self.writer is not None:
            self.writer.add_image(tag, picture, iteration, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
