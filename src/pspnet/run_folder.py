"""A training run's folder: where its checkpoints are, what it says about the run (how far it got, its validations),
and the model a command given the folder uses."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pspnet.checkpoint import read_metadata
from pspnet.errors import PSPNetError

NAME = re.compile(r"iter_(\d+)\.pt")  # a training checkpoint, checkpoints/iter_0000450.pt


LOCK = ".pspnet-training.lock"  # held (flock) by the process that trains into the folder, for the run's life


@contextmanager
def training_lock(folder: Path) -> Iterator[None]:
    """Held while a run trains into `folder`: a second `pspnet train` into it (a --resume while it still runs) is a
    PSPNetError naming the process that holds it, not two runs interleaving their checkpoints. A folder made for the
    lock alone is removed again. Where the OS has no flock (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise PSPNetError(f"train.out_dir = {folder}: another `pspnet train` is training into it now "
                              f"({f.read().strip() or 'a process'}); wait for it to end or stop it, or choose another "
                              "train.out_dir") from None
        except OSError:  # a filesystem without locks (some network ones): the run goes on unguarded, as before
            yield
            return
        f.truncate(0)
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            if made and [p.name for p in folder.iterdir()] == [LOCK]:  # the run wrote nothing (a config mistake)
                path.unlink()
                folder.rmdir()
            fcntl.flock(f, fcntl.LOCK_UN)


def training_now(folder: Path) -> str | None:
    """Who is training into `folder` now ("process N on HOST"), else None."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        with open(folder / LOCK) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().strip() or "a process"
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return directory / f"iter_{iteration:07d}.pt"


def checkpoint_iteration(path: Path) -> int:
    """The iteration of a training checkpoint by its name (iter_0000450.pt: 450)."""
    match = NAME.fullmatch(path.name)
    if match is None:
        raise ValueError(f"{path}: not named as a training checkpoint (iter_N.pt)")
    return int(match[1])


def list_checkpoints(directory: Path) -> list[Path]:
    """Training checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if NAME.fullmatch(p.name)), key=checkpoint_iteration)


@dataclass
class RunStatus:
    folder: Path
    finished: bool  # final.safetensors written
    iteration: int | None  # of the final model, else of the latest checkpoint
    total: int | None  # the iterations the run was set to (recorded with its best and final models)
    validations: list[tuple[int, float]] = field(default_factory=list)  # (iteration, val mIoU), in order
    best: Path | None = None
    final: Path | None = None
    latest: Path | None = None  # checkpoints/iter_N.pt

    @property
    def top_validation(self) -> tuple[int, float] | None:
        """(iteration, val mIoU) of the best validation; None before the first."""
        return max(self.validations, key=lambda v: v[1]) if self.validations else None

    @property
    def model(self) -> Path | None:
        """The file to describe or use: the best model, else the final one, else the latest checkpoint."""
        return self.best or self.final or self.latest

    def to_dict(self) -> dict[str, object]:
        return {"folder": str(self.folder), "finished": self.finished, "iteration": self.iteration,
                "iterations": self.total, "validations": [{"iteration": i, "val_mIoU": m} for i, m in self.validations],
                "best": _name(self.best), "final": _name(self.final), "latest_checkpoint": _name(self.latest)}


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)


def is_run_folder(path: Path) -> bool:
    """A folder `pspnet train` wrote into (its config.yaml beside a log or checkpoints)."""
    return path.is_dir() and (path / "config.yaml").is_file() and (
        (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir())


def read_run(folder: Path) -> RunStatus:
    final, best = folder / "final.safetensors", folder / "best.safetensors"
    checkpoints = list_checkpoints(folder / "checkpoints") if (folder / "checkpoints").is_dir() else []
    latest = checkpoints[-1] if checkpoints else None
    status = RunStatus(folder, final.is_file(), None, None, best=best if best.is_file() else None,
                       final=final if final.is_file() else None, latest=latest)
    for model in (status.final, status.best):  # the final model's record is the later one
        if model is None:
            continue
        try:
            provenance = read_metadata(model).get("provenance") or {}
        except PSPNetError:
            continue
        status.total = status.total or provenance.get("iterations")
        if model == status.final:
            status.iteration = provenance.get("iteration")
    if status.iteration is None and latest is not None:
        status.iteration = checkpoint_iteration(latest)
    log = folder / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill mid-write
                continue
            if isinstance(record, dict) and record.get("kind") == "val" and "val_mIoU" in record:
                status.validations.append((int(record["iteration"]), float(record["val_mIoU"])))
    return status


def run_model(path: Path) -> tuple[Path, str] | None:
    """For a training run's folder, the model a command given the folder uses (the best model, else the final one,
    else the latest checkpoint) and a line saying which; None for any other path. A run with no model yet is an
    error saying how far it got."""
    if not is_run_folder(path):
        return None
    status = read_run(path)
    model = status.model
    if model is None:
        raise PSPNetError(f"{path}: a training run with no model yet (no best.safetensors, final.safetensors or "
                          f"checkpoints/iter_N.pt); `pspnet info {path}` says how far it got")
    if model == status.best:
        top = status.top_validation
        scored = f" (val mIoU {top[1]:.4f} at iteration {top[0]})" if top else ""
        which = f"its best model, {model}{scored}"
    elif model == status.final:
        which = f"its final model, {model} (no validation chose a best one)"
    else:
        which = f"its latest checkpoint, {model} (stopped at iteration {status.iteration}; no best model yet)"
    return model, f"{path}: a training run; using {which}"


def describe_run(status: RunStatus) -> list[str]:
    """A run's state in a few lines, ending with what to do next when it is unfinished."""
    folder = status.folder
    of = f" of {status.total}" if status.total else ""
    if (holder := training_now(folder)) is not None:  # first: a finished run may be resumed to train longer
        last = f" (at iteration {status.iteration}{of} by its last checkpoint)" if status.latest is not None else ""
        state = f"training now, by {holder}{last}"
    elif status.finished:
        state = f"finished, {status.iteration or status.total} iterations ({status.final})"
    elif status.latest is not None:
        state = (f"stopped at iteration {status.iteration}{of} (its last checkpoint, {status.latest}); `pspnet train "
                 f"--config {folder / 'config.yaml'} --resume` continues it")
    else:
        state = "no checkpoint yet (stopped before its first, or still starting)"
    lines = [f"run: {folder}: {state}"]
    if (top_validation := status.top_validation) is not None:
        top_iteration, top = top_validation
        iterations = ", ".join(str(i) for i, _ in status.validations)
        best = f" ({status.best})" if status.best else ""
        lines.append(f"validations: {len(status.validations)} (iterations {iterations}); best val mIoU {top:.4f} at "
                     f"iteration {top_iteration}{best}")
    else:
        lines.append("validations: none yet")
    return lines
