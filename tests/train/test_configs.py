"""Every config the project ships loads (a mistyped key in one would otherwise surface only when a user runs it)."""

from pathlib import Path

import pytest
import torch

import pspnet
from pspnet import PSPNet
from pspnet.train.config import load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory) -> Path:
    """Stands in for a published name (no download in tests): a ResNet-50 PSPNet with ADE20K's 150 classes."""
    torch.manual_seed(0)
    return pspnet.save(PSPNet(150, backbone="resnet50"), tmp_path_factory.mktemp("w") / "ade20k.safetensors")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_loads(path: Path, local_weights: Path) -> None:
    overrides = [f"train.init={local_weights}"] if "init:" in path.read_text() else []
    cfg = load_train_config(path, overrides)
    assert cfg.model.num_classes >= 2 and cfg.train.out_dir.parts[0] == "runs"


def test_the_fine_tuning_template_takes_the_architecture_from_the_weights(local_weights: Path) -> None:
    cfg = load_train_config(CONFIGS[0].parent / "finetune_folders.yaml", [f"train.init={local_weights}"])
    assert (cfg.model.backbone, cfg.model.num_classes, cfg.train.lr) == ("resnet50", 2, 0.001)


@pytest.mark.parametrize("data, val, expected", [
    # Your own data: each image at its own size, in windows of the training crop (not ADE20K's 512 / 473).
    ({"dataset": "folders", "root": "d", "num_classes": 2, "crop_size": [97, 129]}, {}, (None, (97, 129))),
    ({"dataset": "lists", "root": "d", "num_classes": 2}, {}, (None, (473, 473))),  # the default crop
    ({"dataset": "cityscapes", "root": "d"}, {}, (2048, (713, 713))),  # a published dataset: its own protocol
    ({"dataset": "ade20k", "root": "d"}, {}, (512, (473, 473))),
    # What the config says wins, key by key.
    ({"dataset": "folders", "root": "d", "num_classes": 2, "crop_size": [97, 97]}, {"base_size": 300}, (300, (97, 97))),
    ({"dataset": "cityscapes", "root": "d"}, {"crop_size": [512, 1024]}, (2048, (512, 1024))),
], ids=["folders", "lists", "cityscapes", "ade20k", "folders-base-given", "cityscapes-crop-given"])
def test_validation_sizes_follow_the_data_where_the_config_is_silent(tmp_path: Path, data, val, expected) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": data, "val": val} if val else {"data": data}))
    cfg = load_train_config(path)
    assert (cfg.val.base_size, cfg.val.crop_size) == expected
