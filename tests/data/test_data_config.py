import pytest
import yaml

from pspnet.configfile import from_dict
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.errors import PSPNetError


def test_data_config_loads_from_yaml_with_types_coerced():
    text = """
dataset: camvid
root: /data/camvid
crop_size: [360, 480]
scale_range: [0.5, 2]
workers: 2
"""
    cfg = from_dict(DataConfig, yaml.safe_load(text), "test.yaml")
    assert cfg.crop_size == (360, 480) and cfg.scale_range == (0.5, 2.0) and str(cfg.root) == "/data/camvid"


@pytest.mark.parametrize("bad,message", [
    ({"dataset": "imagenet"}, "expected one of camvid"),
    ({"dataset": "lists"}, "set data.num_classes"),
    ({"dataset": "camvid", "num_classes": 12}, "camvid has 11 classes"),
    ({"dataset": "camvid", "blur": 2}, "data.blur = 2.0; expected a probability"),
    ({"dataset": "camvid", "scale_range": [2, 1]}, "expected 0 < min <= max"),
])
def test_bad_settings_name_the_setting(bad, message):
    with pytest.raises(PSPNetError, match=message):
        from_dict(DataConfig, bad, "test.yaml")


def test_known_dataset_without_prepared_lists_says_to_run_prepare(tmp_path):
    with pytest.raises(PSPNetError, match="run `pspnet data prepare camvid"):
        build_dataset(DataConfig(dataset="camvid", root=tmp_path), "train")
