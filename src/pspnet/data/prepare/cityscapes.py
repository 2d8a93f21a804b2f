"""Cityscapes (fine annotations): label ids → 19 train ids, or the ready `*_gtFine_labelTrainIds.png`.

Downloads need a login at cityscapes-dataset.com, so the user downloads the two zips and passes --source."""

from __future__ import annotations

from pathlib import Path

from pspnet.classes import CITYSCAPES
from pspnet.data.labels import cityscapes_to_train_ids
from pspnet.data.lists import Pair
from pspnet.data.prepare.common import Prepared, convert_label, find_or_fetch, finish, place
from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar

IMAGES = ("leftImg8bit", "leftImg8bit_trainvaltest.zip")
LABELS = ("gtFine", "gtFine_trainvaltest.zip")
SPLITS = ("train", "val")  # the test split's labels are withheld
LOGIN = ("Cityscapes needs a login: register at https://www.cityscapes-dataset.com/, download "
         "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into one folder, then run "
         "`pspnet data prepare cityscapes --root DIR --source THAT_FOLDER`")


def prepare_cityscapes(root: Path, source: str | None, progress: bool = True) -> Prepared:
    if source is None:
        raise PSPNetError(LOGIN)
    result = Prepared("cityscapes", root)
    image_base = find_or_fetch(source, root, IMAGES[0], IMAGES[1], None, None, progress)
    label_base = find_or_fetch(source, root, LABELS[0], LABELS[1], None, None, progress)
    assert image_base is not None and label_base is not None
    pairs: dict[str, list[Pair]] = {}
    for split in SPLITS:
        images = sorted((image_base / IMAGES[0] / split).glob("*/*_leftImg8bit.png"))
        split_pairs = []
        for image in progress_bar(images, desc=f"cityscapes {split}", unit="pair", disable=not progress, leave=False):
            name = image.name.removesuffix("_leftImg8bit.png")
            pair = Pair(root / "images" / split / f"{name}.png", root / "labels" / split / f"{name}.png")
            place(image, pair.image)
            labels = label_base / LABELS[0] / split / image.parent.name
            train_ids = labels / f"{name}_gtFine_labelTrainIds.png"
            label_ids = labels / f"{name}_gtFine_labelIds.png"
            if train_ids.exists():
                convert_label(train_ids, pair.label, None)
            elif label_ids.exists():
                convert_label(label_ids, pair.label, cityscapes_to_train_ids)
            split_pairs.append(pair)
        pairs[split] = split_pairs
    return finish(result, pairs, CITYSCAPES.num_classes, progress)
