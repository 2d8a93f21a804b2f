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


def _key(rgb: np.ndarray) -> np.ndarray:
    """One int32 per colour: r·65536 + g·256 + b."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


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
    _keys: np.ndarray = field(init=False, repr=False)  # every listed colour's key, sorted
    _values: np.ndarray = field(init=False, repr=False)  # the class index (or ignore_index) of each key

    def __post_init__(self) -> None:
        if not self.colors:
            raise PSPNetError("data.label_colors = []; expected the colour of each class")
        seen: dict[Color, str] = {}
        for name, colors in (("data.label_colors", self.colors), ("data.ignore_colors", self.ignore)):
            for i, c in enumerate(colors):
                if c in seen:
                    raise PSPNetError(f"{name}[{i}] = {list(c)} is also {seen[c]}; expected each colour once")
                seen[c] = f"{name}[{i}]"
        keys = [_key(np.asarray(c)) for c in (*self.colors, *self.ignore)]
        values = [*range(len(self.colors)), *[self.ignore_index] * len(self.ignore)]
        order = np.argsort(keys)
        self._keys = np.asarray(keys, dtype=np.int32)[order]
        self._values = np.asarray(values, dtype=np.uint8)[order]

    def to_indices(self, rgb: np.ndarray, path: str | Path) -> np.ndarray:
        """uint8 H×W class indices of an H×W×3 colour label; an unlisted colour raises PSPNetError naming `path`."""
        keys = _key(rgb)
        where = np.searchsorted(self._keys, keys).clip(max=len(self._keys) - 1)
        known = self._keys[where] == keys
        if not known.all():
            raise PSPNetError(f"{path}: colour {describe(keys[~known], pixels=True)} is in neither data.label_colors "
                              "nor data.ignore_colors; expected only the listed colours")
        return self._values[where]


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
