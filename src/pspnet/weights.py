"""Named published weights: the catalogue (`catalogue.json`, built by scripts/build_catalogue.py from the sources'
own metadata) and their download into the torch hub cache, hash-checked. `pspnet.load(NAME)` and every command that
takes a checkpoint accept a name; the conversion to our format happens in `pspnet.checkpoint` and is cached too.

PSPNET_WEIGHTS_URL replaces OpenMMLab's download host (`https://download.openmmlab.com/`) in every URL: a mirror,
or a local server in the tests.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pspnet.download import UnreachableError, download
from pspnet.errors import PSPNetError

CATALOGUE = Path(__file__).with_name("catalogue.json")
URL_ENV = "PSPNET_WEIGHTS_URL"
HOST = "https://download.openmmlab.com/"


@dataclass(frozen=True)
class Weights:
    """One catalogue entry: where the file is, its hash, what it was trained on and what it scores (the source's
    published single-scale and multi-scale mIoU; mmseg's multi-scale includes flips). `download`: "direct" (a URL
    with the sha256 prefix in its name) or "page" (the authors' Caffe files, on Google Drive pages: downloaded by
    hand and put into the cache as `file`)."""

    name: str
    source: str
    url: str
    sha256_prefix: str
    dataset: str
    architecture: str
    backbone: str
    stem: str
    train: dict[str, Any]
    mIoU: float | None  # noqa: N815 (the source's name)
    mIoU_ms_flip: float | None  # noqa: N815
    config: str
    license: str
    file: str = ""
    download: str = "direct"

    @property
    def filename(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1]

    @property
    def align_corners(self) -> bool:
        """mmseg's 769×769 Cityscapes configs resize with align_corners=True (configs/pspnet/
        pspnet_r50-d8_769x769_40k_cityscapes.py); the rest of the zoo with False."""
        return self.source.startswith("mmsegmentation") and "769x769" in self.name

    @property
    def test_preset(self) -> str | None:
        """The `--preset` of the test behind the published mIoU: "ss" or "ms" (the paper's protocol) for the authors'
        releases, "mmseg" for mmsegmentation's ADE20K, VOC and Cityscapes entries; None where this project does not
        hold the source's test settings (mmseg's other datasets)."""
        if not self.source.startswith("mmsegmentation"):
            return "ss" if self.mIoU is not None else "ms"  # the authors' VOC figure is multi-scale only
        if self.align_corners:
            return "mmseg-769"  # test_cfg slide, crop (769, 769), stride (513, 513)
        return "mmseg" if self.dataset in MMSEG_TEST_DATASETS else None


MMSEG_TEST_DATASETS = ("ADE20K", "Cityscapes", "Pascal VOC 2012", "Pascal VOC 2012 + Aug")


@dataclass(frozen=True)
class Backbone:
    """Named ImageNet weights of a backbone (`train.imagenet: NAME`)."""

    name: str
    source: str
    url: str
    sha256_prefix: str
    backbone: str
    stem: str
    license: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@cache
def _catalogue() -> dict[str, Any]:
    return json.loads(CATALOGUE.read_text(encoding="utf-8"))


def list_models() -> tuple[Weights, ...]:
    """Every named model, in the catalogue's order."""
    return tuple(Weights(**entry) for entry in _catalogue()["models"])


def list_backbones() -> tuple[Backbone, ...]:
    """Every named ImageNet backbone."""
    return tuple(Backbone(**entry) for entry in _catalogue()["backbones"])


def find_backbone(name: str) -> Backbone | None:
    return next((b for b in list_backbones() if b.name == name), None)


def find(name: str) -> Weights | None:
    return next((w for w in list_models() if w.name == name), None)


def similar_names(name: str, limit: int = 3) -> tuple[list[str], int]:
    """Published model names a mistyped or shortened `name` may mean (names containing it first, then close
    spellings), at most `limit` of them, and how many names contain it in all."""
    names = [w.name for w in list_models()]
    containing = [n for n in names if name.lower() in n.lower()]
    close = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
    return list(dict.fromkeys(containing + close))[:limit], len(containing)


def cache_dir() -> Path:
    """torch hub's checkpoint cache (TORCH_HOME, default ~/.cache/torch/hub/checkpoints)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def source_url(weights: Weights | Backbone) -> str:
    mirror = os.environ.get(URL_ENV)
    if mirror and weights.url.startswith(HOST):
        return mirror.rstrip("/") + "/" + weights.url.removeprefix(HOST)
    return weights.url


def fetch(weights: Weights | Backbone, progress: bool = True) -> Path:
    """The weight file in the cache, downloaded once (resumable, with a progress bar) and checked against the hash
    in its name: a mismatch deletes the file and says so; no connection is a one-line error naming the URL."""
    if getattr(weights, "download", "direct") == "page":
        path = cache_dir() / weights.filename
        if path.is_file():
            return path
        raise PSPNetError(f"{weights.name}: {weights.filename} is published on a download page only "
                          f"({weights.url}); download it by hand and put it at {path}, then run again")
    url = source_url(weights)
    path = cache_dir() / weights.filename
    try:
        return download(url, path, sha256=weights.sha256_prefix, progress=progress)
    except UnreachableError as e:  # e.g. a cluster node without internet: the file can be brought by hand
        raise PSPNetError(f"{weights.name}: {e}; without internet here, download it elsewhere and copy it to {path}, "
                          f"or set {URL_ENV} to a mirror") from None
    except PSPNetError as e:
        raise PSPNetError(f"{weights.name}: {e}") from None
