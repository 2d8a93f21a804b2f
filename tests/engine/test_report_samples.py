"""The report's grids: images spread over the whole set, and the images with the lowest per-image mIoU."""

import torch

from pspnet.classes import DatasetInfo
from pspnet.engine.evaluate import evaluate
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
