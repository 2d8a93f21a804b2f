"""Label conversions of the benchmarks into train ids 0..C-1 with 255 = ignore (see ../shared/REFERENCE.md)."""

from __future__ import annotations

import numpy as np

from pspnet.classes import IGNORE_INDEX
from pspnet.errors import PSPNetError

CAMVID_VOID = 11

# Cityscapes label id → train id (cityscapesScripts labels.py); every id not listed is ignored.
CITYSCAPES_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def _lookup(table: dict[int, int], default: int | None) -> np.ndarray:
    lut = np.arange(256, dtype=np.uint8) if default is None else np.full(256, default, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lut


_CAMVID_LUT = _lookup({CAMVID_VOID: IGNORE_INDEX}, None)
_ADE20K_LUT = np.array([IGNORE_INDEX] + list(range(255)), dtype=np.uint8)  # 0 → ignore, k → k-1
_CITYSCAPES_LUT = _lookup(CITYSCAPES_ID_TO_TRAIN_ID, IGNORE_INDEX)


def camvid_to_train_ids(label: np.ndarray) -> np.ndarray:
    """SegNet CamVid: 0..10 stay, 11 (void) → 255. Other values are kept so that the check reports them."""
    return _CAMVID_LUT[label]


def ade20k_to_train_ids(label: np.ndarray) -> np.ndarray:
    """ADE20K SceneParsing: 0 ("other") → 255, 1..150 → 0..149."""
    return _ADE20K_LUT[label]


def cityscapes_to_train_ids(label: np.ndarray) -> np.ndarray:
    """Cityscapes `*_gtFine_labelIds.png` → the 19 train ids; all other ids → 255."""
    return _CITYSCAPES_LUT[label]


def sbd_to_train_ids(mat_path: str) -> np.ndarray:
    """An SBD `cls/NAME.mat` (GTcls.Segmentation: 0 background, 1..20 classes) → uint8 H×W (already VOC ids)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PSPNetError(f"{mat_path}: reading SBD .mat labels needs scipy: pip install 'pspnet[voc]'") from None
    seg = loadmat(mat_path, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    return np.asarray(seg, dtype=np.uint8)
