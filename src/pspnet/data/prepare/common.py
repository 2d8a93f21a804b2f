"""What every `pspnet data prepare` shares: where the source files come from, placing and converting them, the list
files, the final check and the stamp that makes a second run a no-op."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pspnet.data.check import Problem, check_pairs
from pspnet.data.datasets import PREPARED_STAMP, PREPARING
from pspnet.data.imageops import read_label
from pspnet.data.lists import Pair, read_list, write_list
from pspnet.download import NotFoundError, download, file_digest
from pspnet.errors import PSPNetError

STAMP = PREPARED_STAMP
STARTED = PREPARING


@dataclass
class Prepared:
    """What a prepare run did: pairs per split, problems found, notes for the user (e.g. a skipped split)."""

    dataset: str
    root: Path
    splits: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    already: bool = False


def check_source_exists(spec: str | Path | None) -> None:
    """A local --source (not a URL) must exist."""
    if spec is not None and not str(spec).startswith(("http://", "https://")) and not Path(spec).exists():
        raise PSPNetError(f"--source {spec}: no such folder or file; expected a local copy of the dataset or an "
                          "http(s):// URL")


class Source:
    """A local folder or a base URL laid out like the upstream source; `fetch` returns a local path."""

    def __init__(self, spec: str | Path, cache: Path, progress: bool = False) -> None:
        spec = str(spec)
        self.is_url = spec.startswith(("http://", "https://"))
        self.base = (spec if spec.endswith("/") else spec + "/") if self.is_url else spec
        self.cache = cache
        self.progress = progress
        check_source_exists(spec)
        if not self.is_url and not Path(spec).is_dir():
            raise PSPNetError(f"--source {spec}: a file; expected the folder of a local copy laid out as the upstream "
                              "source (docs/data.md), or an http(s):// URL")

    def describe(self, rel: str) -> str:
        return self.base + rel if self.is_url else str(Path(self.base) / rel)

    def fetch(self, rel: str, optional: bool = False, progress: bool | None = None) -> Path | None:
        """The file `rel` (a path relative to the source); None if it is absent and `optional`."""
        if not self.is_url:
            path = Path(self.base) / rel
            if path.exists():
                return path
            if optional:
                return None
            raise PSPNetError(f"{path}: not found; expected the upstream layout under {self.base}")
        url = self.base + urllib.parse.quote(rel)
        try:
            return download(url, self.cache / rel, progress=self.progress if progress is None else progress)
        except NotFoundError:
            if optional:
                return None
            raise


def place(src: Path, dst: Path) -> None:
    """Put `src` at `dst`: a hard link when possible (no extra disk), else a copy. An existing `dst` is kept."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        # the file itself: os.link of a symbolic link (a git-annex or DVC source) links the link, whose relative
        # target then points nowhere from the root
        os.link(os.path.realpath(src), tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_label(label: np.ndarray, dst: Path) -> None:
    """Save train ids as an 8-bit greyscale PNG, atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.png")
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="L").save(tmp)
    os.replace(tmp, dst)


def convert_label(src: Path, dst: Path, convert: Callable[[np.ndarray], np.ndarray] | None) -> None:
    """Write `src`'s labels converted to train ids at `dst` (skipped when `dst` exists: resumable)."""
    if dst.exists():
        return
    if convert is None:
        place(src, dst)
        return
    write_label(convert(read_label(src)), dst)


def extract(archive: Path, dest: Path, md5: str | None = None, downloaded: bool = False) -> Path:
    """Unpack a .zip/.tar(.gz) once into `dest` (a marker file records that it finished). Checks `md5` first.
    `downloaded`: the archive is this command's download (a bad one is deleted by the user and fetched again), not
    the user's --source (which they must fetch again themselves)."""
    marker = dest / f".{archive.name}.extracted"
    if marker.exists():
        return dest
    again = "delete it and run again" if downloaded else "download it again and give that to --source"
    if md5 is not None:
        got = file_digest(archive, "md5")
        if got != md5:
            raise PSPNetError(f"{archive}: md5 {got}, expected {md5}; the file is damaged or not the published one — "
                              f"{again}")
    print(f"extracting {archive.name} ...", flush=True)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                if hasattr(tarfile, "data_filter"):  # Python ≥ 3.12 (and security backports): refuse unsafe members
                    t.extractall(dest, filter="data")
                else:
                    t.extractall(dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise PSPNetError(f"{archive}: cannot unpack it ({e}): truncated or damaged; {again}") from None
    marker.touch()
    return dest


def claim_root(root: Path, dataset: str) -> None:
    """Before anything is written: `root` is new, empty, or one a prepare of `dataset` started; a folder holding
    other images, labels or list files (your own dataset, another benchmark) is refused rather than mixed into."""
    if root.exists() and not root.is_dir():
        raise PSPNetError(f"--root {root}: a file, not a folder; give the folder to prepare the dataset in")
    started = root / STARTED
    if started.exists():
        other = started.read_text().strip()
        # A prepare that stopped before writing anything (a wrong dataset name, no --source) holds no claim
        if other != dataset and any(p.name != STARTED for p in root.iterdir()):
            raise PSPNetError(f"{root}: a `pspnet data prepare {other}` started there; use another --root for "
                              f"{dataset}")
        started.write_text(dataset + "\n")
        return
    if (root / STAMP).exists():  # prepared before (already_prepared refused another dataset's), files since changed
        return
    ours = [root / "images", root / "labels", *(root / f"{s}.txt" for s in ("train", "val", "test"))]  # its writes
    held = [p for p in ours if p.is_file() or (p.is_dir() and any(p.iterdir()))]
    if held:
        raise PSPNetError(f"{root}: holds {held[0].name}{'/' if held[0].is_dir() else ''} that `pspnet data prepare` "
                          f"did not write; prepare {dataset} into a new or empty --root (its files would be mixed "
                          "with those)")
    root.mkdir(parents=True, exist_ok=True)
    started.write_text(dataset + "\n")


def already_prepared(root: Path, dataset: str) -> Prepared | None:
    """The stamp of an earlier complete run, if every list file it names is still there with its pairs."""
    stamp = root / STAMP
    if not stamp.exists():
        return None
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if data.get("dataset") != dataset:
        raise PSPNetError(f"{root} already holds a prepared {data.get('dataset')!r}; use another --root for {dataset}")
    splits = data.get("splits", {})
    for split, count in splits.items():
        path = root / f"{split}.txt"
        try:
            pairs = read_list(path, root)
        except PSPNetError:
            return None
        if len(pairs) != count or not all(p.image.exists() and p.label.exists() for p in pairs):
            return None
    return Prepared(dataset, root, dict(splits), already=True)


def finish(result: Prepared, pairs: dict[str, list[Pair]], num_classes: int, progress: bool) -> Prepared:
    """Write the list files, check every pair, and stamp the root when nothing is wrong."""
    root = result.root
    if not any(pairs.values()):
        looked = "; ".join(result.notes) or "every split was empty"
        raise PSPNetError(f"{result.dataset}: found no image/label pairs ({looked}); expected the upstream layout "
                          "(see docs/data.md); nothing was marked prepared")
    for split, split_pairs in pairs.items():
        if not split_pairs:
            result.problems.append(Problem(str(root / f"{split}.txt"), f"the {split} split is empty"))
            continue
        write_list(root / f"{split}.txt", split_pairs, root)
        result.splits[split] = len(split_pairs)
        result.problems += check_pairs(split_pairs, num_classes, progress=progress, desc=f"checking {split}")
    if not result.problems:
        (root / STAMP).write_text(json.dumps({"dataset": result.dataset, "splits": result.splits}, indent=1) + "\n")
        (root / STARTED).unlink(missing_ok=True)
    made = [(root / kind).resolve() for kind in ("images", "labels")]
    for problem in result.problems:  # a converted file with a problem is made again from the source by the next run
        path = Path(problem.path)  # (kept, the run failed forever once the source was fixed)
        if path.is_file() and any(path.resolve().is_relative_to(folder) for folder in made):
            path.unlink()
    return result


def find_or_fetch(source: str | None, root: Path, folder: str, archive: str, url: str | None, md5: str | None,
                  progress: bool, optional: bool = False) -> Path | None:
    """A folder P with P/`folder` (the unpacked upstream layout), found or made from `archive`.

    `source`: None (download `url`), a base URL or the archive's URL, a folder holding `folder` or `archive`, or
    the archive itself. Archives are unpacked into ROOT/raw. None when `optional` and the source lacks it."""
    raw = root / "raw"
    if (raw / folder).exists() and (raw / f".{archive}.extracted").exists():
        return raw
    if source is None or source.startswith(("http://", "https://")):
        if source is None and url is None:
            raise PSPNetError(f"no --source given and {archive} cannot be downloaded without a login")
        if source is not None:
            url = source if source.endswith(archive) else source.rstrip("/") + "/" + archive
        assert url is not None
        try:
            path = download(url, root / "downloads" / archive, progress=progress)
        except NotFoundError:
            if optional:
                return None
            raise
        return extract(path, raw, md5, downloaded=True)
    src = Path(source)
    if src.is_file() and src.name == archive:
        return extract(src, raw, md5)
    if (src / folder).exists():
        return src
    first = Path(folder).parts[0]
    if src.name == first:
        return src.parent
    if (src / archive).is_file():
        return extract(src / archive, raw, md5)
    if optional:
        return None
    raise PSPNetError(f"--source {source}: holds neither {folder}/ nor {archive}; expected the upstream layout")
