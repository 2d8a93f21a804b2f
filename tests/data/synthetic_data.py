"""Tiny synthetic datasets for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def save_label(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L").save(path)
    return path


def make_segnet_camvid(folder: Path, splits: tuple[str, ...] = ("train", "val", "test"), n: int = 2) -> Path:
    """The SegNet tutorial's CamVid layout, labels 0..11 (11 = void)."""
    for split in splits:
        lines = []
        for i in range(n):
            name = f"0001TP_{split}{i:02d}.png"
            save_image(folder / split / name, seed=i)
            save_label(folder / f"{split}annot" / name, (np.arange(12 * 16).reshape(12, 16) + i) % 12)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        (folder / f"{split}.txt").write_text("".join(lines))
    return folder
