"""Messages about many files, said without flooding the terminal: the first few one line each, then a count."""

from __future__ import annotations

import sys
from collections.abc import Sequence

SHOWN = 5  # files named one by one; a whole split of one mistake is then one line more, not thousands


def print_first(messages: Sequence[str], prefix: str, what: str, listed: bool) -> None:
    """`prefix` + each of the first `SHOWN` messages on stderr, then "... and N more `what` (M in all)", naming
    --json FILE where `listed` is False (the JSON records them all)."""
    for message in messages[:SHOWN]:
        print(f"{prefix}{message}", file=sys.stderr)
    if len(messages) > SHOWN:
        hint = "" if listed else "; --json FILE lists them"
        print(f"{prefix}... and {len(messages) - SHOWN} more {what} ({len(messages)} in all{hint})", file=sys.stderr)
