"""The values predicted label PNGs are written with (`pspnet predict --label-values`): the class indices (the
default, what `pspnet score` reads), one value per class of your choosing (e.g. 0 255 for a mask), or a benchmark's
submission format (Cityscapes: the label ids its server reads; ADE20K: 1..150, 0 being 'other')."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from pspnet.classes import IGNORE_INDEX, DatasetInfo
from pspnet.data.config import coding_from_settings
from pspnet.data.label_colors import LabelColors
from pspnet.data.label_values import LabelValues
from pspnet.data.labels import CITYSCAPES_ID_TO_TRAIN_ID
from pspnet.errors import PSPNetError

ADE20K_CLASSES = 150
# class index → the value each benchmark's test server reads
FORMATS: dict[str, tuple[int, ...]] = {
    "cityscapes": tuple(sorted(CITYSCAPES_ID_TO_TRAIN_ID, key=CITYSCAPES_ID_TO_TRAIN_ID.__getitem__)),
    "ade20k": tuple(range(1, ADE20K_CLASSES + 1)),
}
MAX_VALUE = 65535  # a 16-bit PNG's


def label_values(spec: Sequence[str], num_classes: int, trained: Sequence[int] | None = None,
                 option: str = "--label-values") -> tuple[int, ...]:
    """The value written for each class, from `spec`: one of FORMATS' names, `data` (the values of the labels the
    model was trained on, `trained`, as its training run recorded them) or one integer per class (distinct,
    0..65535), with spaces or commas between them (`0 255`, `0,255`)."""
    spec = [part.strip() for word in spec for part in word.split(",") if part.strip()]
    if list(spec) == ["data"]:
        if trained is None:
            raise PSPNetError(f"{option} data: the model records no label values (it was not trained with "
                              "data.label_values); give one value per class")
        return label_values([str(v) for v in trained], num_classes, None, option)
    if len(spec) == 1 and spec[0] in FORMATS:
        values = FORMATS[spec[0]]
        if len(values) != num_classes:
            raise PSPNetError(f"{option} {spec[0]}: there are {num_classes} classes; {spec[0]}'s format is for "
                              f"its {len(values)} (give one value per class instead)")
        return values
    expected = f"one value per class ({num_classes} integers 0..{MAX_VALUE}) or one of {', '.join(FORMATS)}, data"
    try:
        values = tuple(int(v) for v in spec)
    except ValueError:
        raise PSPNetError(f"{option} {' '.join(spec)}: expected {expected}") from None
    if len(values) != num_classes:
        raise PSPNetError(f"{option}: {len(values)} value(s) for {num_classes} classes; expected "
                          f"{expected}")
    if bad := [v for v in values if not 0 <= v <= MAX_VALUE]:
        raise PSPNetError(f"{option}: {bad[0]} does not fit a 16-bit PNG; expected {expected}")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise PSPNetError(f"{option}: {twice} is given to two classes; expected a different value for each class")
    return values


def encode_labels(labels: np.ndarray, values: Sequence[int] | None) -> np.ndarray:
    """H×W class indices → the values to write: uint8 where they fit, else uint16."""
    if values is None:
        return labels.astype(np.uint8)
    lut = np.asarray(values, dtype=np.uint8 if max(values) <= 255 else np.uint16)
    return lut[labels]


def trained_label_values(info: DatasetInfo) -> tuple[int, ...] | None:
    """Each class's label value in a model's training (the first where `data.label_values` gave it several), or None:
    its labels held the class indices (with other ignored values or not) or colours, or its file records no
    training (foreign checkpoints)."""
    coding = coding_from_settings(info.label_coding, IGNORE_INDEX, "the model's ")  # its ignore index: no part here
    if not isinstance(coding, LabelValues) or coding.indices:  # colours, none, or the class indices
        return None
    return tuple(v[0] for v in coding.values)


def trained_label_coding(info: DatasetInfo, ignore_index: int) -> LabelValues | LabelColors | None:
    """How a model's training read its labels (`info.label_coding`: `data.label_values` and `ignore_values`, or
    `data.label_colors` and `ignore_colors`), to read ground truth drawn the same way; None where it records none
    (index labels, foreign checkpoints)."""
    coding = coding_from_settings(info.label_coding, ignore_index, "the model's ")
    if isinstance(coding, LabelValues) and coding.indices:
        ignored = " ".join(map(str, coding.ignore))
        coding = replace(coding, listed_in=f"the class indices 0..{len(coding.values) - 1} nor the values {ignored} "
                                           "the model was trained to ignore (data.ignore_values)")
    elif isinstance(coding, LabelValues):
        shown = " ".join(str(list(v)) if len(v) > 1 else str(v[0]) for v in coding.values)
        coding = replace(coding, listed_in=f"the label values {shown} the model was trained with (data.label_values)")
    return coding
