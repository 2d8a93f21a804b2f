"""Find every problem in a dataset before compute is spent: `pspnet data check` and the trainer's start-up."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pspnet.classes import KNOWN
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset, folder_pair
from pspnet.data.imageops import label_size_problem, other_format, read_image, read_label
from pspnet.data.label_colors import LabelColors
from pspnet.data.label_values import LabelValues, holds_indices, no_class_note
from pspnet.data.lists import Pair, unpaired_note, windows_separators
from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _message(e: PSPNetError, path: Path) -> str:
    # imageops errors start with the path; drop it since Problem carries it separately
    text = str(e)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def check_pair(pair: Pair, num_classes: int, ignore_index: int, coding: LabelColors | LabelValues | None = None,
               counts: np.ndarray | None = None, sizes: list[tuple[int, int]] | None = None) -> list[Problem]:
    """The problems of one pair: missing or unreadable files, sizes that differ, label values out of range.
    `counts` (256 int64, one per label value after `coding`) receives the label's pixel counts, `sizes` the image's
    (height, width)."""
    problems = []
    image = label = None
    for path, kind, other in ((pair.image, "image", pair.label), (pair.label, "label", pair.image)):
        if not path.is_file():
            problems.append(Problem(str(path), f"{kind} file is missing (the {kind} of {other.name})"
                                               f"{other_format(path) if kind == 'label' else ''}"
                                               f"{windows_separators(path)}"))
            continue
        try:
            if kind == "image":
                image = read_image(path)
            else:
                label = read_label(path, coding)
        except PSPNetError as e:
            problems.append(Problem(str(path), f"unreadable {kind}: {_message(e, path)}"))
    if label is not None and counts is not None:
        counts += np.bincount(label.ravel(), minlength=256)
    if image is not None and sizes is not None:
        sizes.append((image.shape[0], image.shape[1]))
    if image is not None and label is not None:
        if problem := label_size_problem(pair.image, image.shape, label.shape):
            problems.append(Problem(str(pair.label), problem))
        values = np.unique(label)
        bad = values[(values >= num_classes) & (values != ignore_index)]
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
            problems.append(Problem(str(pair.label), f"label values {shown} out of range; expected 0..{num_classes - 1}"
                                                     f" or {ignore_index} (ignore)"))
    return problems


def check_pairs(pairs: Sequence[Pair], num_classes: int, ignore_index: int = 255, *, progress: bool = False,
                desc: str = "checking", threads: int | None = None, coding: LabelColors | LabelValues | None = None,
                counts: np.ndarray | None = None, sizes: list[tuple[int, int]] | None = None) -> list[Problem]:
    """check_pair over all pairs, decoding in threads (PIL releases the GIL), problems in list order; `counts`
    (256 int64) receives the pixel count of every label value over all labels, `sizes` every image's size."""
    threads = threads or min(8, os.cpu_count() or 1)

    def check(pair: Pair) -> tuple[list[Problem], np.ndarray]:
        own = np.zeros(256, dtype=np.int64)
        return check_pair(pair, num_classes, ignore_index, coding, own, sizes), own

    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(check, pairs)
        results = progress_bar(results, total=len(pairs), desc=desc, unit="pair", disable=not progress, leave=False)
        problems = []
        for found, own in results:
            problems += found
            if counts is not None:
                counts += own
        return problems


def absent_classes(counts: np.ndarray, names: Sequence[str], ignore_index: int, split: str,
                   hint: bool, override: bool = False) -> str | None:
    """A note when classes appear in none of a split's labels (`counts`: pixels per label value); with `hint` (index
    labels that `data.label_values` could recode) also the likely cause when pixels are `ignore_index`: masks that
    draw a class with that value (0/255 binary masks), the setting named as in a config or, with `override`, as a
    command-line override."""
    absent = [i for i in range(len(names)) if counts[i] == 0]
    if not absent or not counts.any():  # no label read at all (missing files, said as problems): nothing to note
        return None
    shown = ", ".join(f"{i} ({names[i]})" for i in absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5
                                                                  else "")
    note = f"class{'es' if len(absent) > 1 else ''} {shown} appear{'' if len(absent) > 1 else 's'} in no {split} label"
    ignored = counts[ignore_index] / max(int(counts.sum()), 1)
    if ignored > 0 and hint:
        values = [int(v) for v in np.flatnonzero(counts)]
        example = ", ".join(str(v) for v in values) if len(values) == len(names) else f"0, {ignore_index}"
        note += (f"; {ignored:.0%} of their pixels are {ignore_index}, the ignore index: if {ignore_index} marks a "
                 f"class in your labels (a mask saved as 0/{ignore_index}), give each class's value, e.g. "
                 + (f"data.label_values=[{example.replace(' ', '')}]" if override else
                    f"data.label_values: [{example}]"))
    return note


def crops_of_padding(sizes: Sequence[tuple[int, int]], cfg: DataConfig) -> str | None:
    """A note when every training image, even at the largest augmentation scale, is smaller than the crop in both
    dimensions, and a crop holding them all has less than half its pixels: most of each crop is then padding
    (ignored), which costs the compute of the whole crop and trains nothing."""
    if not sizes:
        return None
    crop_h, crop_w = cfg.crop_size
    top = max(cfg.scale_range)
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    side = round(max(height, width) * top) // 8 * 8 + 1  # 8n+1, the paper's habit, holding the largest scaled image
    share = side * side / (crop_h * crop_w)
    if height * top >= crop_h or width * top >= crop_w or share > 0.5:  # some image fills it, or little to gain
        return None
    scaled = f"{round(height * top)}×{round(width * top)}"
    return (f"every train image is smaller than data.crop_size {crop_h}×{crop_w}, even at the largest scale (×{top:g}"
            f" of data.scale_range: at most {scaled}): most of each crop is padding, computed and ignored; a crop "
            f"of the largest scaled image's size holds the same pixels in less compute (e.g. data.crop_size: "
            f"[{side}, {side}], {share:.0%} of the pixels per crop)")


def class_shares(counts: np.ndarray, names: Sequence[str], ignore_index: int) -> str:
    """`counts` (pixels per label value) as each class's share of the labelled pixels, then the ignored share."""
    labelled = max(int(counts[: len(names)].sum()), 1)
    shares = ", ".join(f"{name} {counts[i] / labelled:.1%}" for i, name in enumerate(names))
    return f"{shares}; ignored {counts[ignore_index] / max(int(counts.sum()), 1):.1%} of all pixels"


def check_dataset(cfg: DataConfig, splits: Sequence[str] = ("train", "val"), *, progress: bool = False,
                  notes: list[str] | None = None, pixels: dict[str, np.ndarray] | None = None) -> list[Problem]:
    """Every problem of the configured splits: missing list files or folders, empty splits, and check_pair's.
    `notes` receives what is not a problem but suspicious: label files of a folders dataset without an image (left
    out), classes that appear in no train label. `pixels` receives each checked split's pixel count per label value
    (256, after the label coding)."""
    problems = []
    said: set[str] = set()
    for split in splits:
        if cfg.dataset == "folders" and notes is not None:
            image_dir, label_dir = folder_pair(cfg, split)
            if note := unpaired_note(image_dir, label_dir, cfg.label_suffix, "data.label_suffix:"):
                notes.append(note)
        malformed: list[str] = []
        try:
            dataset = build_dataset(cfg, split, malformed)
        except PSPNetError as e:
            text = str(e)
            path, _, reason = text.partition(": ")
            problem = Problem(path, reason) if reason else Problem(f"{split} split", text)
            if problem not in problems:  # both splits of data.val_fraction fail alike: said once
                problems.append(problem)
            continue
        for message in malformed:
            where, _, reason = message.partition(": ")
            problems.append(Problem(where, reason))
        if len(dataset) == 0 and malformed:
            continue
        if len(dataset) == 0:
            problems.append(Problem(dataset.source, f"the {split} split is empty; expected at least one pair"))
            continue
        counts = np.zeros(256, dtype=np.int64)
        sizes: list[tuple[int, int]] | None = [] if split == "train" and notes is not None else None  # for the note
        problems += check_pairs(dataset.pairs, dataset.info.num_classes, cfg.ignore_index, progress=progress,
                                desc=f"checking {split}", coding=dataset.label_coding, counts=counts, sizes=sizes)
        if sizes is not None and notes is not None and (note := crops_of_padding(sizes, cfg)):
            notes.append(f"{dataset.source}: {note}")
        if pixels is not None:
            pixels[split] = counts
        recodable = holds_indices(dataset.label_coding) and cfg.dataset not in KNOWN
        classes = dataset.info.num_classes
        extra = [int(v) for v in np.flatnonzero(counts) if v >= classes and v != cfg.ignore_index]
        if recodable and notes is not None and extra and (note := no_class_note(
                extra, classes, cfg.ignore_index, classes="data.num_classes")) not in said:
            said.add(note)  # once: the val split's labels usually hold the same values (each file is a problem)
            notes.append(f"{dataset.source}: {note}")
        if split == "train" and notes is not None and (note := absent_classes(
                counts, dataset.info.classes, cfg.ignore_index, split, recodable)):
            notes.append(f"{dataset.source}: {note}")
    return problems
