"""Files in and out: every file the project writes is written so that a crash or a kill never leaves half of it, and
every weight file it reads is read without unpickling arbitrary objects."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pspnet.errors import PSPNetError


def write_atomically(path: Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_kind(path: Path) -> str:
    """"safetensors", "torch-zip" or "torch-pickle"; anything else is an error naming the file."""
    if not path.is_file():
        raise PSPNetError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if zipfile.is_zipfile(path):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-pickle"
    raise PSPNetError(f"{path}: not a checkpoint (expected a pspnet .safetensors file or a PyTorch .pth file)")


def read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only; anything else is refused, unrun."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise PSPNetError(
            f"{path}: refused to load: it holds Python objects other than tensors, which could run code "
            f"({first}). Only weight files are accepted."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise PSPNetError(f"{path}: cannot read it as a PyTorch checkpoint ({str(e).splitlines()[0]})") from None
