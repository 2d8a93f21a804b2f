"""The report's grids: images spread over the whole set, and the images with the lowest per-image mIoU."""

import pytest
import torch

from pspnet.classes import DatasetInfo
from pspnet.engine.evaluate import Sample, evaluate
from pspnet.engine.inference import InferenceSettings


class Items(torch.utils.data.Dataset):
    """Image i: a 4×4 grey image whose ground truth is class 0 in its first i pixels of 16, class 1 elsewhere."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        label = torch.ones(16, dtype=torch.uint8)
        label[:i] = 0
        return {"image": torch.full((3, 4, 4), 100, dtype=torch.uint8), "label": label.view(4, 4), "name": f"i{i}"}


def always_class_1(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(x.shape[0], 2, *x.shape[2:])
    out[:, 1] = 1.0
    return out


def test_samples_are_spread_over_the_set_and_the_worst_come_worst_first() -> None:
    settings = InferenceSettings(base_size=None, mode="whole", flip=False)
    ev = evaluate(always_class_1, Items(), settings, DatasetInfo("toy", ["a", "b"]), num_samples=3, progress=False)
    assert [s.name for s in ev.samples] == ["i0", "i6", "i11"]  # first, middle, last — not the first three
    assert [s.name for s in ev.worst] == ["i11", "i10", "i9"]  # more class-0 pixels missed: lower mIoU
    assert ev.worst[0].miou < ev.worst[1].miou < ev.worst[2].miou
    assert ev.samples[0].miou == 1.0  # all class 1, all predicted 1 (class 0 absent: left out of the mean)


def test_the_sample_grid_keeps_each_pictures_shape_and_puts_the_key_right_under_it(tmp_path) -> None:
    """Rows of their own pictures' height, none over another, whatever the number of classes in the key (60 classes
    drew the second row over the first, stretched)."""
    pytest.importorskip("matplotlib")
    import numpy as np
    from PIL import Image

    from pspnet.engine.report import _pyplot, _samples

    colors = [(0, 255, 0), (255, 0, 255)]  # in no palette below: each sample's image found by its colour
    shapes = [(300, 400), (500, 300)]  # a wide picture, then a tall one
    samples = [Sample(f"s{i}", np.full((h, w, 3), colors[i], np.uint8), np.arange(h * w).reshape(h, w) % 60,
                      np.zeros((h, w), np.int64), 0.5) for i, (h, w) in enumerate(shapes)]
    palette = [(c, 255 - c, 128) for c in range(60)]
    _samples(_pyplot(), tmp_path / "grid.png", samples, palette, [f"class {c}" for c in range(60)])
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    boxes = []
    for color, (h, w) in zip(colors, shapes, strict=True):
        ys, xs = np.nonzero((grid == color).all(axis=2))
        top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        assert ((grid[top:bottom, left:right] == color).all(axis=2)).mean() > 0.99  # one whole, uncovered picture
        assert abs((bottom - top) / (right - left) - h / w) < 0.02  # not stretched
        boxes.append((top, bottom))
    assert boxes[0][1] < boxes[1][0]  # the first row above the second
    below = grid[boxes[1][1]:]
    swatches = np.nonzero((below == palette[1]).all(axis=2))[0]  # class 1's square in the key
    assert swatches.size and swatches.min() < 40  # right under the last row (under 0.4 inches)
