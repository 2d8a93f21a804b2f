"""ADE20K (SceneParsing, ADEChallengeData2016): 150 classes; raw label 0 ("other") → ignore, 1..150 → 0..149."""

from __future__ import annotations

from pathlib import Path

from pspnet.classes import ADE20K
from pspnet.data.labels import ade20k_to_train_ids
from pspnet.data.lists import Pair
from pspnet.data.prepare.common import Prepared, convert_label, find_or_fetch, finish, place
from pspnet.progress import progress_bar

URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
ARCHIVE = "ADEChallengeData2016.zip"
FOLDER = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}


def prepare_ade20k(root: Path, source: str | None, progress: bool = True) -> Prepared:
    result = Prepared("ade20k", root)
    base = find_or_fetch(source, root, FOLDER, ARCHIVE, URL, None, progress)
    assert base is not None
    data = base / FOLDER
    pairs: dict[str, list[Pair]] = {}
    for split, upstream in SPLITS.items():
        images = sorted((data / "images" / upstream).glob("*.jpg"))
        split_pairs = []
        for image in progress_bar(images, desc=f"ade20k {split}", unit="pair", disable=not progress, leave=False):
            pair = Pair(root / "images" / split / image.name, root / "labels" / split / f"{image.stem}.png")
            place(image, pair.image)
            label = data / "annotations" / upstream / f"{image.stem}.png"
            if label.exists():  # a missing one is reported by the check
                convert_label(label, pair.label, ade20k_to_train_ids)
            split_pairs.append(pair)
        pairs[split] = split_pairs
    return finish(result, pairs, ADE20K.num_classes, progress)
