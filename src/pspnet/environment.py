"""Settings read from the environment (torchrun's WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE): a value that is
no whole number (left over in a shell or a pod's spec) is one line naming the variable, not a traceback."""

from __future__ import annotations

import os

from pspnet.errors import PSPNetError


def environment_int(name: str, default: int) -> int:
    """The whole number in `$name` (`default` when unset or empty)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise PSPNetError(f"{name}={value}: expected a whole number (torchrun sets it for its processes; outside "
                          f"torchrun, unset it)") from None
