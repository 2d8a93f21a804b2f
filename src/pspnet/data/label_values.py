"""Index labels whose pixel values are not the class indices: binary masks saved as 0/255, an annotation tool's own
ids. `data.label_values` lists the value of each class (or its values: classes merged into one),
`data.ignore_values` the values of unlabelled pixels; labels are turned into class indices as they are read, and a
value in neither list is an error naming the file and the value, never a silent class (as `data.label_colors` does
for colour-coded labels)."""

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


Values = tuple[int, ...]  # the label values of one class


def parse_values(value: Sequence[int | Sequence[int]], setting: str, merged: bool = True) -> tuple[Values, ...]:
    """`value` as one tuple of label values 0..65535 per entry (an entry is a value or, with `merged`, a list of
    them); anything else raises PSPNetError naming `setting`."""
    if not isinstance(value, (list, tuple)):
        raise PSPNetError(f"{setting} = {value!r}; expected a list of label values, e.g. [0, 255]")
    parsed = []
    for i, entry in enumerate(value):
        values = entry if merged and isinstance(entry, (list, tuple)) and entry else [entry]
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= TOP:
                what = "a label value" + (" or a list of them" if merged else "")
                raise PSPNetError(f"{setting}[{i}] = {entry!r}; expected {what} in 0..{TOP}")
        parsed.append(tuple(int(v) for v in values))
    return tuple(parsed)


@dataclass
class LabelValues:
    """Class i is drawn with the values `values[i]`; pixels of an `ignore` value become `ignore_index`."""

    values: tuple[Values, ...]
    ignore: Values = ()
    ignore_index: int = IGNORE_INDEX
    listed_in: str = "data.label_values nor data.ignore_values"  # where the values come from, for messages
    _table: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise PSPNetError("data.label_values = []; expected the value of each class")
        seen: dict[int, str] = {}
        for name, entries in (("data.label_values", self.values), ("data.ignore_values", [(v,) for v in self.ignore])):
            for i, values in enumerate(entries):
                for v in values:
                    if v in seen:
                        raise PSPNetError(f"{name}[{i}]: {v} is also in {seen[v]}; expected each value once")
                    seen[v] = f"{name}[{i}]"
        if self.indices and self.listed_in == LabelValues.listed_in:  # data.ignore_values alone
            self.listed_in = f"the class indices 0..{len(self.values) - 1} nor data.ignore_values"

    @property
    def indices(self) -> bool:
        """Whether each class is drawn as its index (only the ignored values differ from index labels)."""
        return self.values == tuple((i,) for i in range(len(self.values)))

    def table(self) -> np.ndarray:
        """The class index (or ignore_index) of every label value, UNLISTED for the others."""
        if self._table is None:
            table = np.full(TOP + 1, UNLISTED, dtype=np.int16)
            for index, values in enumerate(self.values):
                table[list(values)] = index
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
            raise PSPNetError(f"{path}: value {shown}{more} is in neither {self.listed_in}; "
                              "expected only the listed values")
        return indices.astype(np.uint8)


def beside_indices(num_classes: int, ignore: Sequence[int], ignore_index: int) -> tuple[list[int], list[int]]:
    """`data.ignore_values` without `data.label_values`: each class drawn as its index, and `ignore` besides the
    ignore index ignored. The label values and the ignored values that say so."""
    return list(range(num_classes)), sorted({*ignore, ignore_index})


def shown_values(values: Sequence[int]) -> str:
    """Label values as a message lists them: the first eight."""
    return ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")


def no_class_note(values: Sequence[int], num_classes: int, ignore_index: int, *, what: str = "label",
                  ignoring: str | None = None, classes: str | None = None) -> str:
    """How to use labels whose `values` are neither a class nor the ignore index: ignore them, when they mark
    unlabelled pixels (e.g. the void 11 of SegNet's CamVid), with `ignoring` (the setting that says so; default
    `data.ignore_values: [...]`); or, where the caller can (`classes`: the setting), count more classes."""
    listed, one = shown_values(values), len(values) == 1
    note = (f"{what} value{'' if one else 's'} {listed} {'is' if one else 'are'} no class (0..{num_classes - 1}) and "
            f"not the ignore index {ignore_index}: if {'it marks' if one else 'they mark'} unlabelled pixels, "
            f"{ignoring or f'data.ignore_values: [{listed}]'}")
    return note + (f"; if {'it is a class' if one else 'they are classes'}, raise {classes}" if classes else "")


def ignoring_option(values: Sequence[int], config: object | None, ignored: bool) -> str:
    """`no_class_note`'s `ignoring` for a command with --config, --ignore-index and `data.ignore_values=[...]`
    without a config (eval, score): `config` the --config given (or None), `ignored` whether the labels hold the
    ignore index too (--ignore-index cannot then say both)."""
    if config is not None:
        return f"data.ignore_values: [{shown_values(values)}] in {config}"
    if len(values) == 1 and not ignored:
        return f"--ignore-index {values[0]}"
    return f"data.ignore_values=[{','.join(str(v) for v in values)}]"


def holds_indices(coding: object) -> bool:
    """Whether labels read with `coding` hold the class indices themselves (None, or only void values ignored by
    data.ignore_values): labels that data.label_values could recode, as masks saved 0/255."""
    return coding is None or (isinstance(coding, LabelValues) and coding.indices)
