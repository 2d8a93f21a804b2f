"""Tiny synthetic segmentation data for training tests: images whose colour says the class."""

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], dtype=np.uint8)


def make_folders_dataset(root: Path, n_train: int = 8, n_val: int = 2, size: tuple[int, int] = (32, 40),
                         seed: int = 0) -> Path:
    """`root/images/{split}/i.png` + `root/labels/{split}/i.png`: 3 classes in random rectangles, colour-coded."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = np.zeros((h, w), dtype=np.uint8)
            for c in (1, 2):
                y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
                label[y:y + rng.integers(6, h // 2), x:x + rng.integers(6, w // 2)] = c
            noise = rng.integers(-20, 20, size=(h, w, 3))
            image = np.clip(COLOURS[label].astype(int) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            Image.fromarray(label).save(root / "labels" / split / f"{i}.png")
    return root


def config_dict(root: Path, out_dir: Path, **train: object) -> dict:
    return {
        "model": {"backbone": "resnet18", "dropout": 0.0},
        "data": {"dataset": "folders", "root": str(root), "num_classes": 3, "crop_size": [32, 32], "workers": 0},
        "train": {"out_dir": str(out_dir), "iterations": 4, "batch_size": 2, "lr": 0.01, "log_every": 1,
                  "checkpoint_every": 2, "keep_last": 5, "val_every": -1, "tensorboard": False,
                  "precision": "fp32", **train},  # fp32 on every CPU: tests compare runs to 1e-5 (auto: maybe bf16)
        "val": {"base_size": None, "crop_size": [32, 32], "mode": "whole", "flip": False},
    }
