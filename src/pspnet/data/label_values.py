"""Index labels whose pixel values are not the class indices: binary masks saved as 0/255, an annotation tool's own
ids. `data.label_values` lists the value of each class, `data.ignore_values` the values of unlabelled pixels; labels
are turned into class indices as they are read, and a value in neither list is an error naming the file and the
value, never a silent class (as `data.label_colors` does for colour-coded labels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pspnet.classes import IGNORE_INDEX
from pspnet.errors import PSPNetError

TOP = 65535  # 16-bit label PNGs hold values up to this
UNLISTED = -1  # a value's entry in LabelValues.table when it is not listed
SHOWN = 4  # values named in an error message


def parse_values(value: Sequence[int], setting: str) -> tuple[int, ...]:
    """`value` as a tuple of label values 0..65535; anything else raises PSPNetError naming `setting`."""
    if not isinstance(value, (list, tuple)):
        raise PSPNetError(f"{setting} = {value!r}; expected a list of label values, e.g. [0, 255]")
    for i, v in enumerate(value):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= TOP:
            raise PSPNetError(f"{setting}[{i}] = {v!r}; expected a label value 0..{TOP}")
    return tuple(int(v) for v in value)


@dataclass
class LabelValues:
    """Class i is drawn with the value `values[i]`; pixels of an `ignore` value become `ignore_index`."""

    values: tuple[int, ...]
    ignore: tuple[int, ...] = ()
    ignore_index: int = IGNORE_INDEX
    _table: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise PSPNetError("data.label_values = []; expected the value of each class")
        seen: dict[int, str] = {}
        for name, values in (("data.label_values", self.values), ("data.ignore_values", self.ignore)):
            for i, v in enumerate(values):
                if v in seen:
                    raise PSPNetError(f"{name}[{i}] = {v} is also {seen[v]}; expected each value once")
                seen[v] = f"{name}[{i}]"

    def table(self) -> np.ndarray:
        """The class index (or ignore_index) of every label value, UNLISTED for the others."""
        if self._table is None:
            table = np.full(TOP + 1, UNLISTED, dtype=np.int16)
            table[list(self.values)] = np.arange(len(self.values))
            table[list(self.ignore)] = self.ignore_index
            self._table = table
        return self._table

    def to_indices(self, label: np.ndarray, path: str | Path) -> np.ndarray:
        """uint8 H×W class indices of an H×W label of values; an unlisted value raises PSPNetError naming `path`."""
        indices = self.table()[label]
        unlisted = indices == UNLISTED
        if unlisted.any():
            found, counts = np.unique(label[unlisted], return_counts=True)
            top = np.argsort(-counts, kind="stable")[:SHOWN]
            shown = ", ".join(f"{int(found[i])} ({int(counts[i])} pixel{'s' if counts[i] != 1 else ''})" for i in top)
            more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
            raise PSPNetError(f"{path}: value {shown}{more} is in neither data.label_values nor data.ignore_values; "
                              "expected only the listed values")
        return indices.astype(np.uint8)
