"""A segmentation dataset is a list of (image, label) file pairs; items are decoded uint8 tensors, nothing more.

Augmentation happens later, batched on the training device (pspnet.data.augment), so loader workers only decode.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from pspnet.classes import KNOWN, DatasetInfo
from pspnet.data.config import DataConfig
from pspnet.data.imageops import label_size_problem, read_image, read_label, to_tensor
from pspnet.data.label_colors import LabelColors
from pspnet.data.label_values import LabelValues
from pspnet.data.lists import Pair, pair_folders, read_list
from pspnet.errors import PSPNetError

SPLITS = ("train", "val", "test")
PREPARED_STAMP = "pspnet-prepared.json"  # written by `pspnet data prepare` once every pair checked out
PREPARING = ".pspnet-preparing"  # written when a prepare starts: what it leaves, if stopped, is its own to continue


class SegmentationDataset(Dataset):
    """`dataset[i]` → {"image": uint8 3×H×W, "label": uint8 H×W (255 = ignore), "name": stem, "image_path": str,
    "label_path": str}."""

    def __init__(self, pairs: list[Pair], info: DatasetInfo, split: str = "train", source: str = "",
                 label_coding: LabelColors | LabelValues | None = None) -> None:
        self.pairs = list(pairs)
        self.info = info
        self.split = split
        self.source = source  # the list file or folder the pairs came from, for messages
        self.label_coding = label_coding  # labels drawn with colours or other values: how they become indices

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        image = read_image(pair.image)
        label = read_label(pair.label, self.label_coding)
        if problem := label_size_problem(pair.image, image.shape, label.shape):
            raise PSPNetError(f"{pair.label}: {problem}")
        return {"image": to_tensor(image), "label": torch.from_numpy(label), "name": pair.name,
                "image_path": str(pair.image), "label_path": str(pair.label)}

    def __repr__(self) -> str:
        return f"SegmentationDataset({self.info.name} {self.split}: {len(self)} pairs from {self.source})"


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    """Class names and palette: a known dataset's own, or generic/user names for lists and folders."""
    if cfg.dataset in KNOWN:
        return KNOWN[cfg.dataset]
    palette = list(cfg.label_colors or [])  # empty: the default palette
    if cfg.class_names is not None:
        return DatasetInfo(cfg.dataset, list(cfg.class_names), palette)
    assert cfg.num_classes is not None  # DataConfig checks it
    generic = DatasetInfo.generic(cfg.num_classes)
    return DatasetInfo(generic.name, generic.classes, palette)


def list_path(cfg: DataConfig, split: str) -> Path:
    """The list file of a split: train_list/val_list when set, else ROOT/{split}.txt."""
    given = {"train": cfg.train_list, "val": cfg.val_list}.get(split)
    if given is None and cfg.dataset == "lists":
        raise PSPNetError(f"data.dataset = lists: set data.{split}_list (a file of 'image label' lines)")
    return cfg.root / (given if given is not None else f"{split}.txt")


def folder_pair(cfg: DataConfig, split: str) -> tuple[Path, Path]:
    """The image and label folders of a split of a folders dataset."""
    return cfg.root / cfg.image_dir.format(split=split), cfg.root / cfg.label_dir.format(split=split)


def build_dataset(cfg: DataConfig, split: str, malformed: list[str] | None = None) -> SegmentationDataset:
    """The `split` ("train", "val" or "test") of the configured dataset. Missing files are not checked here (that is
    check_dataset's job, which reports all of them at once); a missing list file or folder raises PSPNetError, and
    so does a malformed list line unless `malformed` collects them. With `data.val_fraction`, "val" is that share
    of the train split's pairs (see `held_out`) and "train" the rest."""
    if split not in SPLITS:
        raise PSPNetError(f"split {split!r}; expected one of {', '.join(SPLITS)}")
    if cfg.val_fraction > 0 and split in ("train", "val"):
        dataset = _read_split(cfg, "train", [] if split == "val" else malformed)  # its lines reported once, by train
        val = held_out([p.name for p in dataset.pairs], cfg.val_fraction, dataset.source)
        dataset.pairs = [p for i, p in enumerate(dataset.pairs) if (i in val) == (split == "val")]
        dataset.split = split
        dataset.source = f"{dataset.source}, {'the' if split == 'val' else 'all but the'} {len(val)} held out by " \
                         f"data.val_fraction {cfg.val_fraction:g}"
        return dataset
    return _read_split(cfg, split, malformed)


def held_out(names: list[str], fraction: float, source: str) -> set[int]:
    """The positions of round(fraction · n) names (at least 1, at most n − 1) held out for validation: those whose
    SHA-256 comes first, so the choice depends on the names only (not on their order, the seed or the machine)."""
    if len(names) < 2:
        raise PSPNetError(f"data.val_fraction: {source} has {len(names)} pair(s); expected at least 2 to hold some "
                          "out for validation")
    count = min(max(round(fraction * len(names)), 1), len(names) - 1)
    order = sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())
    return set(order[:count])


def _read_split(cfg: DataConfig, split: str, malformed: list[str] | None) -> SegmentationDataset:
    info = dataset_info(cfg)
    if cfg.dataset == "folders":
        image_dir, label_dir = folder_pair(cfg, split)
        pairs = pair_folders(image_dir, label_dir, cfg.label_suffix)
        return SegmentationDataset(pairs, info, split, f"{image_dir} + {label_dir}", cfg.label_coding())
    path = list_path(cfg, split)
    if not path.exists() and cfg.dataset in KNOWN and (cfg.root / PREPARED_STAMP).exists():
        raise PSPNetError(f"{path}: no such list file; the {split} split of {cfg.dataset} was not prepared here "
                          "(its source had none)")
    if not path.exists() and cfg.dataset in KNOWN:
        if cfg.root.is_dir() and any(cfg.root.iterdir()) and not (cfg.root / PREPARING).exists():
            # files of another making (the download itself, unpacked): prepare reads it, into a folder of its own
            raise PSPNetError(f"{path}: no such list file; if {cfg.root} is the {cfg.dataset} download, run `pspnet "
                              f"data prepare {cfg.dataset} --source {cfg.root} --root data/{cfg.dataset}` and set "
                              f"data.root to data/{cfg.dataset}")
        raise PSPNetError(f"{path}: no such list file; run `pspnet data prepare {cfg.dataset} --root {cfg.root}` "
                          "first, or set data.root to where you prepared it")
    return SegmentationDataset(read_list(path, cfg.root, malformed), info, split, str(path), cfg.label_coding())
