import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pspnet.cli.main import main
from pspnet.data.lists import Pair
from pspnet.errors import PSPNetError
from pspnet.train.class_weights import label_counts, median_frequency_weights, resolve_class_weights
from pspnet.train.loss import segmentation_loss

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


def label_pairs(tmp_path: Path, labels: list[list[list[int]]]) -> list[Pair]:
    pairs = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.array(label, dtype=np.uint8)).save(path)
        pairs.append(Pair(tmp_path / f"{i}.jpg", path))  # only the labels are read
    return pairs


@pytest.fixture
def pairs(tmp_path) -> list[Pair]:
    # class 0: 5 pixels over both images (8 pixels); classes 1 and 2: 1 pixel each in one 4-pixel image; 3: absent
    return label_pairs(tmp_path, [[[0, 0], [0, 1]], [[0, 0], [2, 255]]])


def test_label_counts_are_class_pixels_and_pixels_of_the_images_holding_the_class(pairs):
    pixels, present = label_counts(pairs, num_classes=4, ignore_index=255)
    assert pixels.tolist() == [5, 1, 1, 0]
    assert present.tolist() == [8, 4, 4, 0]


def test_median_frequency_weights_divide_the_median_frequency_by_each_class_frequency(pairs):
    weights = median_frequency_weights(*label_counts(pairs, num_classes=4, ignore_index=255))
    # frequencies 5/8, 1/4, 1/4 → median 1/4; the absent class gets 0
    np.testing.assert_allclose(weights, [0.4, 1.0, 1.0, 0.0])


def test_sqrt_median_frequency_is_the_square_root_of_median_frequency(pairs):
    full = resolve_class_weights("median_frequency", pairs, 4, 255)
    sqrt = resolve_class_weights("sqrt_median_frequency", pairs, 4, 255)
    np.testing.assert_allclose(sqrt, np.sqrt(full))


def test_no_setting_means_no_weights_and_a_list_is_taken_as_given(pairs):
    assert resolve_class_weights(None, pairs, 4, 255) is None
    assert resolve_class_weights([1, 2, 3, 4], pairs, 4, 255) == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(("setting", "message"), [
    ("inverse", "expected 'median_frequency' or 'sqrt_median_frequency'"),
    ([1.0, 2.0], "has 2 values; expected one per class (4)"),
    ([1.0, -1.0, 1.0, 1.0], "expected non-negative weights"),
])
def test_a_bad_setting_names_the_value_and_what_was_expected(pairs, setting, message):
    with pytest.raises(PSPNetError, match="train.class_weights") as e:
        resolve_class_weights(setting, pairs, 4, 255)
    assert message in str(e.value)


def test_a_bad_setting_is_an_error_of_the_config_before_any_data_is_read(tmp_path, capsys):
    """The data root does not exist: the config's own mistake comes first, with the line it is on."""
    cfg = config_dict(tmp_path / "no_data", tmp_path / "run", class_weights=[1.0, 2.0])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pspnet train: error: {tmp_path / 'c.yaml'}") and err.endswith(
        ": train.class_weights has 2 values; expected one per class (3)\n")


def test_a_label_value_beyond_the_classes_names_the_file(tmp_path):
    bad = label_pairs(tmp_path, [[[0, 7]]])
    with pytest.raises(PSPNetError, match=r"0\.png: label value 7 out of range; expected 0\.\.3"):
        resolve_class_weights("median_frequency", bad, 4, 255)


def test_a_zero_weight_class_drops_out_of_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    labels = torch.randint(0, 2, (1, 4, 4))
    weighted, _, _ = segmentation_loss(logits, None, labels, 255, 0.4, torch.tensor([1.0, 0.0]))
    only_zero = labels.masked_fill(labels == 1, 255)
    unweighted, _, _ = segmentation_loss(logits, None, only_zero, 255, 0.4)
    torch.testing.assert_close(weighted, unweighted)


def test_training_with_balanced_weights_runs_and_a_wrong_length_is_refused(tmp_path, capsys):
    root = make_folders_dataset(tmp_path / "data", n_train=4, n_val=1)
    cfg = config_dict(root, tmp_path / "run", iterations=1, class_weights="sqrt_median_frequency")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert "class weights: class_0" in capsys.readouterr().out
    other = f"train.out_dir={tmp_path / 'run2'}"
    assert main(["train", "--config", str(path), "train.class_weights=[1, 2]", other]) == 2
    assert "train.class_weights has 2 values; expected one per class (3)" in capsys.readouterr().err
