import numpy as np
import pytest

from pspnet.data.labels import (
    ade20k_to_train_ids,
    camvid_to_train_ids,
    cityscapes_to_train_ids,
    sbd_to_train_ids,
)


def test_camvid_void_becomes_ignore_and_classes_stay():
    raw = np.array([[0, 5, 10, 11]], dtype=np.uint8)
    assert camvid_to_train_ids(raw).tolist() == [[0, 5, 10, 255]]


def test_ade20k_other_becomes_ignore_and_classes_shift_down():
    raw = np.array([[0, 1, 2, 150]], dtype=np.uint8)
    assert ade20k_to_train_ids(raw).tolist() == [[255, 0, 1, 149]]


def test_cityscapes_label_ids_map_to_19_train_ids_and_the_rest_to_ignore():
    raw = np.array([[7, 8, 26, 33, 0, 1, 6, 9, 34, 255]], dtype=np.uint8)
    assert cityscapes_to_train_ids(raw).tolist() == [[0, 1, 13, 18, 255, 255, 255, 255, 255, 255]]
    assert sorted(set(cityscapes_to_train_ids(np.arange(256, dtype=np.uint8)).tolist())) == [*range(19), 255]


def test_sbd_mat_segmentation_is_read_as_voc_ids(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    seg = np.array([[0, 1], [20, 15]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "x.mat", {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1)}})
    assert sbd_to_train_ids(str(tmp_path / "x.mat")).tolist() == seg.tolist()
