import numpy as np
import pytest
import torch
from synthetic_data import save_image, save_label

from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.data.loader import ShardSampler, build_loader
from pspnet.errors import PSPNetError


@pytest.mark.parametrize("size,world", [(10, 3), (12, 4), (5, 1), (2, 4)])
def test_validation_shards_are_disjoint_and_cover_the_data(size, world):
    shards = [list(ShardSampler(size, shuffle=False, rank=r, world_size=world)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(size))


@pytest.mark.parametrize("size,world", [(10, 3), (12, 4), (7, 2)])
def test_training_shards_cover_the_data_with_equal_lengths(size, world):
    samplers = [ShardSampler(size, shuffle=True, seed=5, rank=r, world_size=world) for r in range(world)]
    for s in samplers:
        s.set_epoch(3)
    shards = [list(s) for s in samplers]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(size))
    assert len(flat) - len(set(flat)) == (-size) % world  # only the padding repeats
    if size % world == 0:
        assert len(flat) == len(set(flat))


def test_order_is_reproducible_per_epoch_and_changes_between_epochs():
    a, b = ShardSampler(50, shuffle=True, seed=1), ShardSampler(50, shuffle=True, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)


def test_resume_mid_epoch_skips_the_first_samples():
    s = ShardSampler(20, shuffle=True, seed=2, rank=1, world_size=2)
    s.set_epoch(7)
    full = list(s)
    s.set_epoch(7, start_index=4)
    assert list(s) == full[4:] and len(s) == len(full) - 4
    with pytest.raises(PSPNetError, match="start_index"):
        s.set_epoch(7, start_index=11)


def test_loader_yields_lists_of_uint8_tensors_and_drops_the_partial_training_batch(tmp_path):
    for i, (h, w) in enumerate([(10, 12), (14, 9), (8, 8)]):
        save_image(tmp_path / "images" / "train" / f"s{i}.png", h, w, seed=i)
        save_label(tmp_path / "labels" / "train" / f"s{i}.png", np.full((h, w), i))
    dataset = build_dataset(DataConfig(dataset="folders", root=tmp_path, num_classes=3), "train")
    batches = list(build_loader(dataset, 2, train=True, seed=0, workers=0, device="cpu"))
    assert len(batches) == 1
    item = batches[0]
    assert len(item["image"]) == 2 and item["image"][0].dtype == torch.uint8 and item["image"][0].shape[0] == 3
    assert item["label"][0].dtype == torch.uint8 and item["label"][0].shape == item["image"][0].shape[1:]
    assert all(name.startswith("s") for name in item["name"])
    val = list(build_loader(dataset, 2, train=False, workers=1, device="cpu"))
    assert [n for b in val for n in b["name"]] == ["s0", "s1", "s2"]


def test_more_workers_than_cpus_are_capped_at_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    dataset = torch.utils.data.TensorDataset(torch.zeros(4))
    assert build_loader(dataset, 2, train=False, workers=16).num_workers == 3
    assert build_loader(dataset, 2, train=False, workers=2).num_workers == 2
    assert build_loader(dataset, 2, train=False, workers=0).num_workers == 0
