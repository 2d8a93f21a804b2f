"""The confusion matrix and scores against a brute-force NumPy computation."""

import math

import numpy as np
import pytest
import torch

from pspnet.engine.metrics import ConfusionMatrix, image_score, per_image_csv, scores_from_matrix
from pspnet.errors import PSPNetError


def brute_force(preds: list[np.ndarray], gts: list[np.ndarray], c: int, ignore: int = 255) -> dict:
    inter = np.zeros(c)
    union = np.zeros(c)
    target = np.zeros(c)
    for p, g in zip(preds, gts, strict=True):
        valid = g != ignore
        for k in range(c):
            pk = (p == k) & valid
            gk = (g == k) & valid
            inter[k] += np.sum(pk & gk)
            union[k] += np.sum(pk | gk)
            target[k] += np.sum(gk)
    iou = [inter[k] / union[k] if union[k] else math.nan for k in range(c)]
    acc = [inter[k] / target[k] if target[k] else math.nan for k in range(c)]
    return {"iou": iou, "acc": acc, "miou": np.nanmean(iou), "macc": np.nanmean(acc),
            "allacc": inter.sum() / target.sum()}


def test_scores_match_brute_force_with_ignore_pixels_and_absent_classes() -> None:
    rng = np.random.default_rng(0)
    c = 7
    preds, gts = [], []
    cm = ConfusionMatrix(c)
    for shape in [(9, 13), (20, 5), (1, 1), (16, 16)]:
        p = rng.integers(0, 5, size=shape)  # classes 5 and 6 are never predicted
        g = rng.integers(0, 4, size=shape)  # classes 4..6 never occur in the ground truth
        g[rng.random(shape) < 0.2] = 255
        preds.append(p)
        gts.append(g)
        cm.update(torch.from_numpy(p), torch.from_numpy(g))
    ref = brute_force(preds, gts, c)
    s = cm.compute()
    np.testing.assert_allclose(s.iou, ref["iou"], equal_nan=True)
    np.testing.assert_allclose(s.acc, ref["acc"], equal_nan=True)
    assert s.miou == pytest.approx(ref["miou"])
    assert s.macc == pytest.approx(ref["macc"])
    assert s.allacc == pytest.approx(ref["allacc"])
    assert math.isnan(s.iou[5]) and math.isnan(s.iou[6])  # absent from both: undefined, not 0
    assert s.iou[4] == 0.0  # predicted but never in the ground truth: a real 0


def test_classes_all_present_give_the_official_formula() -> None:
    m = torch.tensor([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    s = scores_from_matrix(m)
    i = m.diagonal().double()
    u = m.sum(0) + m.sum(1) - m.diagonal()
    assert s.miou == pytest.approx(float((i / (u + 1e-10)).mean()))
    assert s.allacc == pytest.approx(16 / 20)


def test_json_dict_writes_undefined_classes_as_null() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    d = cm.compute().to_dict(["a", "b", "c"])
    assert d["IoU"] == [1.0, 1.0, None] and d["mIoU"] == 1.0 and d["classes"] == ["a", "b", "c"]


def test_all_ignored_update_counts_nothing() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), 255))
    assert int(cm.matrix.sum()) == 0


def test_out_of_range_values_are_errors_naming_the_source() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(PSPNetError, match="a.png: ground-truth value 7"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7), source="a.png")
    with pytest.raises(PSPNetError, match="predicted value 3"):
        cm.update(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(PSPNetError, match="differ"):
        cm.update(torch.zeros(2, 3), torch.zeros(3, 2))


def test_an_image_score_names_its_largest_confusion_and_the_table_puts_the_worst_first() -> None:
    good = image_score("good", torch.tensor([[50, 0, 0], [0, 50, 0], [0, 0, 0]]))
    bad = image_score("bad", torch.tensor([[10, 30, 0], [5, 55, 0], [0, 0, 0]]))
    empty = image_score("empty", torch.zeros(3, 3, dtype=torch.int64))
    assert good.miou == 1.0 and good.confused is None and good.pixels == 100
    assert bad.confused == (0, 1, 30) and bad.allacc == pytest.approx(65 / 100)
    assert bad.miou == pytest.approx((10 / 45 + 55 / 90) / 2)
    rows = per_image_csv([good, empty, bad], ["sky", "road, wet", "car"]).splitlines()
    assert rows[0] == "name,mIoU,allAcc,labelled_pixels,most_confused,confused_share"
    assert rows[1] == 'bad,0.4167,0.6500,100,"sky -> road, wet",0.3000'  # a name with a comma stays one field
    assert rows[2] == "good,1.0000,1.0000,100,," and rows[3] == "empty,,,0,,"


def test_ignored_pixels_are_counted_only_for_pairs_that_are_scored() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 255], [255, 1]]))
    cm.update(torch.zeros(2, 2, dtype=torch.int64), torch.full((2, 2), 255))
    with pytest.raises(PSPNetError):
        cm.update(torch.zeros(1, 2, dtype=torch.int64), torch.tensor([[255, 7]]))  # refused: nothing counted
    assert cm.ignored == 6 and int(cm.matrix.sum()) == 2
    cm.reset()
    assert cm.ignored == 0
