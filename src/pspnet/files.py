"""Files in and out: every file the project writes is written so that a crash or a kill never leaves half of it, and
every weight file it reads is read without unpickling arbitrary objects."""

from __future__ import annotations

import difflib
import itertools
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from pspnet.errors import PSPNetError

LONG_NAME = 200  # bytes: a file name longer than this gets a temporary twin of a short name
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # files read as images


def write_atomically(path: Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`. A write that fails
    (a full disk) raises an OSError naming `path`."""
    with atomic_target(path) as tmp:
        try:
            write(tmp)
        except OSError as e:
            raise _named(e, tmp, path) from None


def write_text_atomically(path: Path, text: str) -> None:
    """`text` into `path` (UTF-8) as `write_atomically` writes. A file name that is no UTF-8 (Latin-1 bytes from an
    old archive or a Samba share) reaches Python as surrogates: they are written back as the name's own bytes (a
    traceback before, the file and those after it not written)."""
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="surrogateescape"))


def shown(name: str) -> str:
    """A file name fit for display where surrogates are refused (a chart's title): its undecodable bytes as �."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _named(error: OSError, tmp: str, path: Path) -> OSError:
    """`error` as the failure of writing `path` where it came from writing `tmp` (or named no file); else as is."""
    return OSError(error.errno, error.strerror, str(path)) if error.filename in (None, tmp) else error


@contextmanager
def atomic_target(path: Path) -> Iterator[str]:
    """A temporary file beside `path` to write, renamed over `path` when the block ends normally and removed when it
    fails: `path` is written whole or not at all (several targets nest, e.g. in a `contextlib.ExitStack`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named after the file, unless that would pass the 255 bytes a name may have (a long name of CJK characters
    # fitted, its temporary twin with 14 bytes more did not)
    prefix = f".{path.name}." if len(os.fsencode(path.name)) <= LONG_NAME else ".pspnet-write."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:  # the file being written, not its temporary twin
            raise _named(e, tmp, path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_folder(path: Path, pattern: str) -> Iterator[Path]:
    """A temporary folder beside `path` to write files into, whose files move into `path` when the block ends
    normally (each replacing its namesake; files matching `pattern` in `path` that the block did not write, an
    earlier and longer run's, removed) and which is removed with its files when the block fails: after a failure or
    an interruption, `path` holds exactly what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield staging
        path.mkdir(exist_ok=True)
        written = set()
        for f in sorted(staging.iterdir()):
            os.replace(f, path / f.name)
            written.add(f.name)
        for stale in path.glob(pattern):
            if stale.name not in written:
                stale.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


NEAR_MISS_NAMES = 2000  # the most names of a folder `near_miss` compares a mistyped name with


def near_miss(path: Path) -> str:
    """For a path that does not exist: "; did you mean P?" where one name in it, nearly spelled (the first missing
    one), makes a path P that does; else empty."""
    parts = path.parts
    for i in range(len(parts)):
        folder = Path(*parts[:i]) if i else Path(".")
        if not (folder / parts[i]).exists():
            break
    else:
        return ""
    try:
        names = [p.name for p in itertools.islice(folder.iterdir(), NEAR_MISS_NAMES + 1)] if folder.is_dir() else []
    except OSError:
        return ""
    if len(names) > NEAR_MISS_NAMES:  # a folder of a dataset's images: spelling against them all takes seconds
        return ""
    for name in difflib.get_close_matches(parts[i], names, n=3, cutoff=0.75):
        meant = folder / name / Path(*parts[i + 1:]) if i + 1 < len(parts) else folder / name
        if meant.exists():
            return f"; did you mean {meant}?"
    return ""


class ImageNotModel(PSPNetError):
    """An image where a model file goes: on the command line of predict or eval, the arguments' order mistaken."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: an image, not a checkpoint; the model is named first, then the images")
        self.path = path


def file_kind(path: Path) -> str:
    """"safetensors", "torch-zip" or "torch-pickle"; anything else is an error naming the file."""
    if path.is_dir():
        found = [p.name for p in (path / "best.safetensors", path / "final.safetensors") if p.is_file()]
        hint = f" {path / found[0]} (a training run's model)" if found else " a file in it"
        raise PSPNetError(f"{path}: a folder, not a checkpoint file; give{hint}")
    if not path.is_file():
        raise PSPNetError(f"{path}: no such checkpoint file{near_miss(path)}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ImageNotModel(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise PSPNetError(f"{path}: a config file, not a checkpoint (a .safetensors or .pth model, or a published "
                          "model's name)")
    if path.suffix.lower() in (".onnx", ".xml"):
        raise PSPNetError(f"{path}: an exported graph, not a checkpoint; this takes the checkpoint it was exported "
                          "from (or a published model's name)")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if zipfile.is_zipfile(path):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-pickle"
    if head[:4] == b"PK\x03\x04":  # a zip archive (as PyTorch saves) whose end is missing
        raise PSPNetError(f"{path}: a zip archive cut short or damaged (a PyTorch .pth file is one); download or copy "
                          "it again")
    # No checkpoint by its content: a part of a model that is given whole?
    if path.suffix.lower() == ".bin" and path.with_suffix(".xml").is_file():
        raise PSPNetError(f"{path}: the weights of the OpenVINO IR {path.with_suffix('.xml')}; give the .xml")
    if path.name == "quantization.json" and (path.parent / "model.xml").is_file():
        raise PSPNetError(f"{path}: the record `pspnet quantize` keeps beside its model; give "
                          f"{path.parent / 'model.xml'} (or the folder)")
    raise PSPNetError(f"{path}: not a checkpoint (expected a pspnet .safetensors file or a PyTorch .pth file)")


def read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only; anything else is refused, unrun."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:  # a TorchScript archive holds code: torch.load refuses it, in 5 lines
            if any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist()):
                raise PSPNetError(f"{path}: a TorchScript archive (as `pspnet export --format torchscript` writes), "
                                  "which the commands and pspnet.load do not run; give its checkpoint, or an .onnx or "
                                  ".xml export (in Python, pspnet.export.TorchScriptModel runs it)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines() if line.strip()]
        # torch's line that names the object refused ("Unsupported global: GLOBAL x.Y ...", "Trying to load
        # unsupported GLOBAL posix.system ..."), not its advice around it
        named = ([line.partition("WeightsUnpickler error: ")[2] for line in lines if "WeightsUnpickler error: " in line]
                 or [line for line in lines if "global" in line.lower()] or lines or ["unsupported content"])
        first = named[0].partition(". Please")[0].rstrip(".")
        raise PSPNetError(
            f"{path}: refused to load: it holds Python objects other than tensors, which could run code "
            f"({first}). Only weight files are accepted."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise PSPNetError(f"{path}: cannot read it as a PyTorch checkpoint ({str(e).splitlines()[0]})") from None


def check_output_folder(path: Path, option: str) -> None:
    """Before any compute: `path` is a folder, or can be made one, that this process can write in; else a one-line
    PSPNetError naming the option, the path and what is wrong."""
    if path.exists() and not path.is_dir():
        raise PSPNetError(f"{option} {path}: exists and is not a folder; expected a folder for the outputs")
    if path.is_symlink() and not path.exists():  # (mkdir said "File exists")
        raise PSPNetError(f"{option} {path}: a symbolic link to {os.readlink(path)}, which does not exist; make that "
                          "folder, or choose another")
    _check_creatable(path, option)


def check_output_file(path: Path, option: str, overwrite: bool) -> None:
    """Before any compute: `path` can be written, and is not an existing file unless `overwrite`."""
    if path.is_dir():
        raise PSPNetError(f"{option} {path}: is a folder; expected a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:  # a link to nowhere is replaced by the file too
        raise PSPNetError(f"{option} {path}: exists; pass --overwrite to replace it, or choose another name")
    if path.exists() and not os.access(path, os.W_OK):
        raise PSPNetError(f"{option} {path}: exists and is not writable")
    _check_creatable(path.parent, option, path)


def check_not_inputs(paths: list[Path], inputs: list[Path], option: str,
                     remedy: str = "choose another file") -> None:
    """None of `paths` is one of the `inputs` of this run, whatever the options (--overwrite too)."""
    inputs_resolved = {p.resolve() for p in inputs}
    clashes = [p for p in paths if p.resolve() in inputs_resolved]
    if clashes:
        raise PSPNetError(f"{option}: the output {clashes[0]} would replace an input of this run; {remedy}")


def check_new_outputs(paths: list[Path], inputs: list[Path], overwrite: bool, option: str,
                      skippable: bool = False) -> None:
    """Before any compute: none of `paths` is one of the `inputs` (never, whatever the options), and none exists
    unless `overwrite` (outputs of an earlier run); `skippable`: the command takes --skip-existing, named too."""
    check_not_inputs(paths, inputs, option, "choose an output folder that holds no inputs")
    for folder in dict.fromkeys(p.parent for p in paths):  # e.g. a file where OUT/color/ must go
        _check_creatable(folder, option)
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        skip = (", --skip-existing to do only the inputs whose outputs are not all there (an interrupted run)"
                if skippable else "")
        raise PSPNetError(f"{option}: {existing[0]} exists{more}, from an earlier run; pass --overwrite to replace "
                          f"such outputs{skip}, or choose another folder")


def _check_creatable(folder: Path, option: str, target: Path | None = None) -> None:
    """The nearest existing ancestor of `folder` is a folder this process can write in."""
    named = target or folder
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PSPNetError(f"{option} {named}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PSPNetError(f"{option} {named}: {existing} is not writable")
