"""A run's folder: never trained into twice by accident. A folder that holds a run is continued with --resume or
started afresh with --overwrite (the old run's files moved aside, not deleted); otherwise the run refuses."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pspnet.errors import PSPNetError


@dataclass(frozen=True)
class RunOptions:
    """How the caller names continuing a run and starting it afresh, for the messages that say which to use: the
    command's flags, or the arguments of `pspnet.fit`."""

    resume: str = "--resume"
    overwrite: str = "--overwrite"


COMMAND = RunOptions()
FIT = RunOptions("resume=True", "overwrite=True")

RUN_FILES = ("config.yaml", "metrics.jsonl", "tensorboard", "checkpoints", "best.safetensors", "final.safetensors")


def run_files(out_dir: Path) -> list[Path]:
    """The files and folders of an earlier run in `out_dir`."""
    return [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]


def check_out_dir(out_dir: Path, resume: object, overwrite: bool, names: RunOptions = COMMAND,
                  init: str | None = None) -> bool:
    """Before anything is computed: refuse to mix a new run into an old one (every process calls it), and to move
    aside the weights the new run starts from (`init`, train.init). True where the run starts afresh with the
    earlier files moved aside: `overwrite`, or a resume of a run that saved no weights (stopped before its first
    checkpoint: nothing to continue from, and a rerun of `scripts/camvid.sh` resumes)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PSPNetError(f"train.out_dir = {out_dir}: exists and is not a folder; expected a folder for the run")
    existing = next((p for p in (out_dir, *out_dir.absolute().parents) if p.exists()), None)
    if existing is not None and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        where = "" if existing == out_dir else f": {existing}, where it would be made, is not a writable folder"
        raise PSPNetError(f"train.out_dir = {out_dir}: cannot write into it{where}; choose a folder you can write to")
    if resume and overwrite:
        raise PSPNetError(f"{names.resume} continues the run in train.out_dir and {names.overwrite} starts it afresh: "
                          "choose one")
    found = run_files(out_dir)
    if overwrite and init and (moved := next((p for p in found if _within(Path(init), p)), None)):
        raise PSPNetError(f"train.init = {init}: part of the earlier run in train.out_dir = {out_dir} ({moved.name}), "
                          f"which {names.overwrite} moves aside; train into another train.out_dir (e.g. "
                          f"{out_dir.with_name(out_dir.name + '-finetuned')})")
    has_checkpoints = (out_dir / "checkpoints").is_dir() and any((out_dir / "checkpoints").glob("iter_*.pt"))
    weights = has_checkpoints or any(p.suffix == ".safetensors" for p in found)
    if found and resume is True and not overwrite and not weights:
        return True
    if found and not overwrite and not (resume and (has_checkpoints or resume is not True)):
        what = f"continue it with {names.resume}, or " if has_checkpoints else ""
        raise PSPNetError(f"train.out_dir = {out_dir}: holds an earlier run ({', '.join(p.name for p in found)}); "
                          f"{what}start afresh with {names.overwrite} (its files are moved aside), or choose another "
                          "train.out_dir")
    return overwrite


def _within(path: Path, run_file: Path) -> bool:
    try:
        return path.exists() and path.resolve().is_relative_to(run_file.resolve())
    except OSError:
        return False


def move_aside(out_dir: Path, found: list[Path] | None = None) -> Path | None:
    """--overwrite: the earlier run's files (or the files `found` of the run) into a new folder
    `out_dir/replaced-<time>[-N]/` (a run replaced twice in one second keeps both); returns that folder (None:
    nothing to move). A move that fails is one PSPNetError naming the folders and where the files are."""
    found = run_files(out_dir) if found is None else found
    if not found:
        return None
    stamp = time.strftime("replaced-%Y%m%d-%H%M%S")
    aside, n = out_dir / stamp, 1
    moved: list[Path] = []
    try:
        while True:
            try:
                aside.mkdir()
                break
            except FileExistsError:
                n += 1
                aside = out_dir / f"{stamp}-{n}"
        for path in found:
            path.rename(aside / path.name)
            moved.append(path)
    except OSError as e:
        why = f"train.out_dir = {out_dir}: cannot move the earlier run aside into {aside} ({e.strerror or e})"
        try:  # put back what was moved: the folder holds the earlier run as it was, not half of it
            for path in reversed(moved):
                (aside / path.name).rename(path)
            if aside.is_dir():
                aside.rmdir()
        except OSError:
            raise PSPNetError(f"{why}; {', '.join(p.name for p in moved)} are in {aside}") from e
        raise PSPNetError(f"{why}; nothing was moved") from e
    return aside
