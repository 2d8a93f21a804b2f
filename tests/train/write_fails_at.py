"""`python write_fails_at.py NAME ARGS...`: `pspnet ARGS...` in which writing a file named NAME fails as on a full
disk (ENOSPC), as `write_atomically` would fail there: nothing of it is left; with NAME = `move:X`, moving the file or
folder X fails instead (EBUSY, as a mount point's would). Run under torchrun, where the first process writes the
run's files."""

import errno
import sys
from pathlib import Path

from pspnet import checkpoint
from pspnet.cli.main import main
from pspnet.train import checkpoints

name = sys.argv[1]
real_write, real_rename = checkpoints.write_atomically, Path.rename


def write_atomically(path, write):  # noqa: ANN001, ANN201 (the patched function's own signature)
    if Path(path).name == name:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(path, write)


def rename(self, target):  # noqa: ANN001, ANN201
    if f"move:{self.name}" == name:
        raise OSError(errno.EBUSY, "Device or resource busy")
    return real_rename(self, target)


checkpoints.write_atomically = checkpoint.write_atomically = write_atomically
Path.rename = rename
sys.exit(main(sys.argv[2:]))
