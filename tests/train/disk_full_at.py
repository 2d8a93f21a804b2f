"""`python disk_full_at.py NAME ARGS...`: `pspnet ARGS...` in which writing a file named NAME fails as on a full disk
(ENOSPC), as `write_atomically` would fail there: nothing of it is left. Run under torchrun, where the first process
writes the run's files."""

import errno
import sys
from pathlib import Path

from pspnet import checkpoint
from pspnet.cli.main import main
from pspnet.train import checkpoints

name = sys.argv[1]
real = checkpoints.write_atomically


def write_atomically(path, write):  # noqa: ANN001, ANN201 (the patched function's own signature)
    if Path(path).name == name:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, write)


checkpoints.write_atomically = checkpoint.write_atomically = write_atomically
sys.exit(main(sys.argv[2:]))
