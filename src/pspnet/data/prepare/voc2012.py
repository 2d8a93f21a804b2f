"""PASCAL VOC 2012 with SBD's extra annotations: train = train_aug (10,582 images), val = VOC val (1,449).

train_aug = (SBD train ∪ SBD val ∪ VOC train) − VOC val. Labels: VOC's palette PNGs where they exist (indices
0..20, 255 on object borders), SBD's cls/NAME.mat elsewhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pspnet.classes import VOC2012
from pspnet.data.labels import sbd_to_train_ids
from pspnet.data.lists import Pair
from pspnet.data.prepare.common import Prepared, convert_label, find_or_fetch, finish, place, write_label
from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar

VOC = ("VOCdevkit/VOC2012", "VOCtrainval_11-May-2012.tar",
       "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
       "6cd6e144f989b92b3379bac3b3de84fd")
SBD = ("benchmark_RELEASE/dataset", "benchmark.tgz",
       "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
       "82b4d87ceb2ed10f6038a1cba92111cb")  # md5 sums as torchvision checks them (the sites publish none)


def _names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def prepare_voc2012(root: Path, source: str | None, progress: bool = True) -> Prepared:
    result = Prepared("voc2012", root)
    if importlib.util.find_spec("scipy") is None:  # said before 3.4 GB are fetched and unpacked, not after
        raise PSPNetError("voc2012: its train_aug split reads SBD's .mat labels, which needs scipy: pip install "
                          "'pspnet[voc]'")
    voc_base = find_or_fetch(source, root, *VOC, progress)
    sbd_base = find_or_fetch(source, root, *SBD, progress, optional=True)
    assert voc_base is not None
    voc = voc_base / VOC[0]
    sets = voc / "ImageSets" / "Segmentation"
    val = _names(sets / "val.txt")
    train = set(_names(sets / "train.txt"))
    sbd = None
    if sbd_base is None:
        result.notes.append("SBD (benchmark.tgz) not found in the source: train is VOC train only, not train_aug")
    else:
        sbd = sbd_base / SBD[0]
        train |= set(_names(sbd / "train.txt")) | set(_names(sbd / "val.txt"))
    train -= set(val)
    pairs: dict[str, list[Pair]] = {}
    for split, names in (("train", sorted(train)), ("val", val)):
        split_pairs = []
        for name in progress_bar(names, desc=f"voc2012 {split}", unit="pair", disable=not progress, leave=False):
            pair = Pair(root / "images" / split / f"{name}.jpg", root / "labels" / split / f"{name}.png")
            image = voc / "JPEGImages" / f"{name}.jpg"
            if not image.exists() and sbd is not None:
                image = sbd / "img" / f"{name}.jpg"
            if image.exists():
                place(image, pair.image)
            png = voc / "SegmentationClass" / f"{name}.png"
            if png.exists():
                convert_label(png, pair.label, lambda x: x)  # palette PNG → plain greyscale indices
            elif sbd is not None and (sbd / "cls" / f"{name}.mat").exists() and not pair.label.exists():
                write_label(sbd_to_train_ids(str(sbd / "cls" / f"{name}.mat")), pair.label)
            split_pairs.append(pair)
        pairs[split] = split_pairs
    return finish(result, pairs, VOC2012.num_classes, progress)
