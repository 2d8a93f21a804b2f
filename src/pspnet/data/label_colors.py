"""Colour-coded label images: RGB PNGs in which each class is drawn in its own colour, as many annotation tools
(CVAT, LabelMe exports, the original CamVid) write them. `data.label_colors` lists the colour of each class,
`data.ignore_colors` the colours that mean "not labelled"; labels are turned into class indices as they are read,
and a colour in neither list is an error naming the file and the colour, never a silent class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pspnet.classes import IGNORE_INDEX, Color
from pspnet.errors import PSPNetError

SHOWN = 4  # colours named in an error message
UNLISTED = 65535  # a colour's entry in LabelColors.table when it is not listed


def _key(rgb: np.ndarray) -> np.ndarray:
    """One int32 per colour: r·65536 + g·256 + b."""
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def parse_colors(value: Sequence[Sequence[int]], setting: str) -> tuple[Color, ...]:
    """`value` as (r, g, b) tuples of 0..255; anything else raises PSPNetError naming `setting`."""
    colors = []
    for i, c in enumerate(value):
        if (not isinstance(c, (list, tuple)) or len(c) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
            raise PSPNetError(f"{setting}[{i}] = {c!r}; expected [r, g, b] with values 0..255")
        colors.append((int(c[0]), int(c[1]), int(c[2])))
    return tuple(colors)


@dataclass
class LabelColors:
    """The colour of class i is `colors[i]`; pixels in an `ignore` colour become `ignore_index`."""

    colors: tuple[Color, ...]
    ignore: tuple[Color, ...] = ()
    ignore_index: int = IGNORE_INDEX
    _table: np.ndarray | None = field(default=None, init=False, repr=False)  # see `table`

    def __post_init__(self) -> None:
        if not self.colors:
            raise PSPNetError("data.label_colors = []; expected the colour of each class")
        seen: dict[Color, str] = {}
        for name, colors in (("data.label_colors", self.colors), ("data.ignore_colors", self.ignore)):
            for i, c in enumerate(colors):
                if c in seen:
                    raise PSPNetError(f"{name}[{i}] = {list(c)} is also {seen[c]}; expected each colour once")
                seen[c] = f"{name}[{i}]"

    def table(self) -> np.ndarray:
        """The class index (or ignore_index) of every 24-bit colour, UNLISTED for the others: 32 MB, built at the
        first label (3 ms) and not pickled into loader workers. A lookup is 6.8× faster than a binary search over the
        colours (12 against 84 ms for a 1024×2048 label: BENCHMARKS.md, benchmarks/label_colors.py)."""
        if self._table is None:
            table = np.full(1 << 24, UNLISTED, dtype=np.uint16)
            table[[int(_key(np.asarray(c))) for c in self.colors]] = np.arange(len(self.colors))
            table[[int(_key(np.asarray(c))) for c in self.ignore]] = self.ignore_index
            self._table = table
        return self._table

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_table": None}

    def to_indices(self, rgb: np.ndarray, path: str | Path) -> np.ndarray:
        """uint8 H×W class indices of an H×W×3 colour label; an unlisted colour raises PSPNetError naming `path`."""
        keys = _key(rgb)
        indices = self.table()[keys]
        unlisted = indices == UNLISTED
        if unlisted.any():
            raise PSPNetError(f"{path}: colour {describe(keys[unlisted], pixels=True)} is in neither "
                              "data.label_colors nor data.ignore_colors; expected only the listed colours")
        return indices.astype(np.uint8)


def colors_in(rgb: np.ndarray) -> set[Color]:
    """The colours an H×W×3 label holds."""
    return {(k >> 16, (k >> 8) & 255, k & 255) for k in np.unique(_key(rgb)).tolist()}


def colors_of(rgb: np.ndarray) -> str:
    """The colours of an H×W×3 label, most frequent first, as a short text for messages."""
    return describe(_key(rgb), pixels=False)


def describe(keys: np.ndarray, pixels: bool) -> str:
    """The most frequent colours among `keys` (with their pixel counts), then how many more there are."""
    found, counts = np.unique(keys, return_counts=True)
    top = np.argsort(-counts, kind="stable")[:SHOWN]
    shown = ", ".join(_rgb(int(found[i])) + (f" ({_pixels(int(counts[i]))})" if pixels else "") for i in top)
    return shown + (f" and {len(found) - SHOWN} more" if len(found) > SHOWN else "")


def _pixels(count: int) -> str:
    return f"{count} pixel" if count == 1 else f"{count} pixels"


def _rgb(key: int) -> str:
    return f"[{key >> 16}, {(key >> 8) & 255}, {key & 255}]"
