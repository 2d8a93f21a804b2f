"""Per-class loss weights: given in the config, or median-frequency balanced from the training labels.

Median-frequency balancing (Eigen & Fergus 2015, used by SegNet on CamVid): a class's frequency is its pixel count
divided by the pixel count of the images it appears in, and its weight is the median frequency over this.
Rare thin classes (poles, signs, cyclists) then weigh several times more than road and sky. Its square root
(`sqrt_median_frequency`) is the milder choice: full weights trade too much accuracy on the large classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pspnet.data.imageops import read_label
from pspnet.data.label_colors import LabelColors
from pspnet.data.label_values import LabelValues
from pspnet.data.lists import Pair
from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar

MEDIAN_FREQUENCY = "median_frequency"
SQRT_MEDIAN_FREQUENCY = "sqrt_median_frequency"
BALANCING = {MEDIAN_FREQUENCY: 1.0, SQRT_MEDIAN_FREQUENCY: 0.5}  # the power the median-frequency weights are raised to


def label_counts(pairs: Sequence[Pair], num_classes: int, ignore_index: int, progress: bool = False,
                 coding: LabelColors | LabelValues | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, pixels of the images containing that class), over the labels of `pairs` (colour-coded
    and value-coded ones read through `coding`)."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    present = np.zeros(num_classes, dtype=np.int64)

    def count(pair: Pair) -> tuple[np.ndarray, int]:
        label = read_label(pair.label, coding)
        valid = label[label != ignore_index]
        if valid.size and int(valid.max()) >= num_classes:
            raise PSPNetError(f"{pair.label}: label value {int(valid.max())} out of range; "
                              f"expected 0..{num_classes - 1} or {ignore_index}")
        return np.bincount(valid.ravel(), minlength=num_classes), label.size

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(count, pairs)
        for counts, size in progress_bar(results, total=len(pairs), desc="class weights", disable=not progress,
                                 dynamic_ncols=True):
            pixels += counts
            present += np.where(counts > 0, size, 0)
    return pixels, present


def median_frequency_weights(pixels: np.ndarray, present: np.ndarray) -> np.ndarray:
    """median(freq) / freq per class, freq = pixels / present; a class never seen gets weight 0 (nothing to learn)."""
    seen = pixels > 0
    if not seen.any():
        raise PSPNetError("the training labels contain no class pixels (all ignore?); cannot balance class weights")
    freq = np.zeros(len(pixels), dtype=np.float64)
    freq[seen] = pixels[seen] / present[seen]
    weights = np.zeros(len(pixels), dtype=np.float64)
    weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights


def resolve_class_weights(setting: str | list[float] | None, pairs: Sequence[Pair], num_classes: int,
                          ignore_index: int, progress: bool = False, coding: LabelColors | LabelValues | None = None
                          ) -> list[float] | None:
    """train.class_weights → one weight per class (None: unweighted cross-entropy)."""
    check_class_weights(setting, num_classes)
    if setting is None:
        return None
    if isinstance(setting, str):
        pixels, present = label_counts(pairs, num_classes, ignore_index, progress, coding)
        return [float(w) for w in median_frequency_weights(pixels, present) ** BALANCING[setting]]
    return [float(w) for w in setting]


def check_class_weights(setting: str | list[float] | None, num_classes: int) -> None:
    """A train.class_weights value that cannot be used is an error (checked with the config, before any data is
    read)."""
    if isinstance(setting, str) and setting not in BALANCING:
        raise PSPNetError(f"train.class_weights = {setting!r}; expected {' or '.join(map(repr, BALANCING))}, "
                          f"a list of {num_classes} numbers, or null")
    if isinstance(setting, list):
        if len(setting) != num_classes:
            raise PSPNetError(f"train.class_weights has {len(setting)} values; expected one per class ({num_classes})")
        if any(w < 0 for w in setting) or not any(w > 0 for w in setting):
            raise PSPNetError(f"train.class_weights = {setting}; expected non-negative weights, at least one positive")
