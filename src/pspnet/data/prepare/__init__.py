"""`pspnet data prepare`: fetch a benchmark, convert its labels to train ids, write list files, check every pair."""

from __future__ import annotations

from pathlib import Path

from pspnet.data.prepare.ade20k import prepare_ade20k
from pspnet.data.prepare.camvid import prepare_camvid
from pspnet.data.prepare.cityscapes import prepare_cityscapes
from pspnet.data.prepare.common import Prepared, already_prepared, check_source_exists, claim_root
from pspnet.data.prepare.voc2012 import prepare_voc2012
from pspnet.errors import PSPNetError

PREPARERS = {"camvid": prepare_camvid, "ade20k": prepare_ade20k, "cityscapes": prepare_cityscapes,
             "voc2012": prepare_voc2012}


def prepare_dataset(name: str, root: Path, source: str | None = None, progress: bool = True) -> Prepared:
    """Prepare `name` under `root`: ROOT/images/{split}/, ROOT/labels/{split}/ (train ids, 255 = ignore) and
    ROOT/{split}.txt. A root already prepared (stamp present, files there) is left alone: `already` is True."""
    if name not in PREPARERS:
        raise PSPNetError(f"cannot prepare {name!r}; expected one of {', '.join(PREPARERS)}")
    root = Path(root)
    done = already_prepared(root, name)
    if done is not None:
        return done
    check_source_exists(source)  # before --root is made: a mistyped source leaves nothing behind
    claim_root(root, name)
    return PREPARERS[name](root, source, progress)


__all__ = ["PREPARERS", "Prepared", "prepare_dataset"]
