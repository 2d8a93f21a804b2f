"""Colour-coded label images (`data.label_colors`, `data.ignore_colors`): read as class indices, or refused in one
line that names the file and the colours."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from synthetic_data import save_image

from pspnet.cli.main import main
from pspnet.data.check import check_dataset
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.data.imageops import read_label
from pspnet.data.label_colors import LabelColors
from pspnet.errors import PSPNetError

ROAD, CAR, SKY, VOID = (128, 64, 128), (0, 0, 142), (70, 130, 180), (0, 0, 0)
COLORS = LabelColors((ROAD, CAR, SKY), (VOID,))


def save_rgb(path, rgb, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert(mode).save(path)
    return path


def painted(indices, colors=(ROAD, CAR, SKY, VOID)):
    """An H×W×3 colour label: index i painted in colors[i]."""
    return np.asarray(colors, dtype=np.uint8)[np.asarray(indices)]


def test_a_colour_label_becomes_class_indices_and_ignore(tmp_path):
    path = save_rgb(tmp_path / "a.png", painted([[0, 1, 2, 3], [2, 2, 1, 0]]))
    assert read_label(path, COLORS).tolist() == [[0, 1, 2, 255], [2, 2, 1, 0]]


def test_the_colour_table_is_not_sent_to_loader_workers(tmp_path):
    path = save_rgb(tmp_path / "a.png", painted([[0, 1, 2, 3]]))
    colors = LabelColors((ROAD, CAR, SKY), (VOID,))
    assert read_label(path, colors).tolist() == [[0, 1, 2, 255]]  # the table is built
    copy = pickle.loads(pickle.dumps(colors))
    assert len(pickle.dumps(colors)) < 10_000 and read_label(path, copy).tolist() == [[0, 1, 2, 255]]


def test_an_rgba_label_is_read_without_its_alpha(tmp_path):
    path = save_rgb(tmp_path / "a.png", painted([[0, 1], [2, 3]]), mode="RGBA")
    assert read_label(path, COLORS).tolist() == [[0, 1], [2, 255]]


def test_an_index_label_is_read_as_indices_even_with_label_colors(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 2], [1, 255]], dtype=np.uint8), mode="L").save(path)
    assert read_label(path, COLORS).tolist() == [[0, 2], [1, 255]]


def test_a_palette_label_is_read_by_its_colours_when_label_colors_are_given(tmp_path):
    """A palette PNG whose palette order is not the class order: the colours say the classes."""
    path = tmp_path / "p.png"
    image = Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8), mode="P")
    image.putpalette([*SKY, *ROAD, *VOID, *CAR] + [0] * 3 * 252)
    image.save(path)
    assert read_label(path, COLORS).tolist() == [[2, 0], [255, 1]]
    assert read_label(path).tolist() == [[0, 1], [2, 3]]  # without colours: the indices, as VOC's labels


@pytest.mark.parametrize("colors", [None, COLORS])
def test_a_jpeg_label_is_refused_whatever_its_content(tmp_path, colors):
    path = tmp_path / "a.jpg"
    Image.fromarray(painted([[0, 1], [2, 3]])).save(path)
    with pytest.raises(PSPNetError, match=r"a\.jpg: a JPEG label; lossy compression changes class values"):
        read_label(path, colors)


def test_an_unlisted_colour_names_the_file_the_colour_and_its_pixels(tmp_path):
    rgb = painted([[0, 1, 2, 3]])
    rgb[0, :3] = (9, 9, 9)  # three pixels in a colour nobody listed
    path = save_rgb(tmp_path / "odd.png", rgb)
    with pytest.raises(PSPNetError) as e:
        read_label(path, COLORS)
    assert str(e.value).startswith(f"{path}: colour [9, 9, 9] (3 pixels) is in neither data.label_colors nor "
                                   "data.ignore_colors")


def test_a_colour_label_without_label_colors_says_what_to_set(tmp_path):
    path = save_rgb(tmp_path / "a.png", painted([[0, 0, 1]]))
    with pytest.raises(PSPNetError) as e:
        read_label(path)
    message = str(e.value)
    assert message.startswith(f"{path}: a colour-coded label (colours [128, 64, 128], [0, 0, 142])")
    assert "data.label_colors" in message and "cannot read" not in message


def test_a_photograph_given_as_a_label_is_called_one(tmp_path):
    """An image folder passed as the labels: thousands of colours are no colour coding."""
    photo = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)  # 6400 pixels, ~6400 colours
    path = save_rgb(tmp_path / "photo.png", photo)
    with pytest.raises(PSPNetError) as e:
        read_label(path)
    assert str(e.value).startswith(f"{path}: a photograph rather than a label (")
    assert "an image folder given as the labels?" in str(e.value)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"num_classes": 3, "label_colors": [ROAD, CAR]}, "data.label_colors has 2 colours for 3 classes"),
    ({"label_colors": [ROAD, (0, 300, 0)]}, "data.label_colors[1] = (0, 300, 0); expected [r, g, b] with values"),
    ({"label_colors": [ROAD, CAR], "ignore_colors": [CAR]}, "data.ignore_colors[0] = [0, 0, 142] is also "
                                                             "data.label_colors[1]"),
    ({"num_classes": 2, "ignore_colors": [VOID]}, "data.ignore_colors is set without data.label_colors"),
    ({"dataset": "camvid", "label_colors": [ROAD] * 11}, "data.label_colors is set but camvid"),
])
def test_bad_colour_settings_are_one_line_errors(settings, expected):
    with pytest.raises(PSPNetError) as e:
        DataConfig(**{"dataset": "folders", **settings})
    assert expected in str(e.value)


def test_the_classes_are_counted_from_the_colours_and_colour_the_predictions(tmp_path):
    save_image(tmp_path / "images" / "train" / "a.png", 2, 4)
    save_rgb(tmp_path / "labels" / "train" / "a.png", painted([[0, 1, 2, 3], [3, 2, 1, 0]]))
    cfg = DataConfig(dataset="folders", root=tmp_path, label_colors=[ROAD, CAR, SKY], ignore_colors=[VOID])
    dataset = build_dataset(cfg, "train")
    assert cfg.num_classes == 3 and dataset.info.palette == [ROAD, CAR, SKY]
    assert dataset[0]["label"].tolist() == [[0, 1, 2, 255], [255, 2, 1, 0]]
    assert check_dataset(cfg, ("train",)) == []


def test_data_check_reports_each_label_with_an_unlisted_colour(tmp_path, capsys):
    for name, colors in (("good", (ROAD, CAR, SKY, VOID)), ("bad", (ROAD, CAR, SKY, (1, 2, 3)))):
        save_image(tmp_path / "images" / "train" / f"{name}.png", 2, 4)
        save_rgb(tmp_path / "labels" / "train" / f"{name}.png", painted([[0, 1, 2, 3], [0, 0, 0, 0]], colors))
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  label_colors: [[128, 64, 128], [0, 0, 142], "
                      "[70, 130, 180]]\n  ignore_colors: [[0, 0, 0]]\n  crop_size: 4\n")
    rc = main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0] == (f"{tmp_path / 'labels/train/bad.png'}: unreadable label: colour [1, 2, 3] (1 pixel) is in "
                      "neither data.label_colors nor data.ignore_colors; expected only the listed colours")
    assert out[-1].endswith("1 problem(s)")


def test_score_reads_colour_coded_ground_truth_through_a_config(tmp_path, capsys):
    indices = [[0, 1, 2, 3], [2, 2, 1, 0]]
    save_rgb(tmp_path / "gt" / "a.png", painted(indices))
    pred = np.array(indices, dtype=np.uint8)
    pred[0, 3] = 1  # an ignored pixel: not scored whatever its prediction
    pred[1, 3] = 1  # one road pixel taken for a car
    (tmp_path / "pred").mkdir()
    Image.fromarray(pred, mode="L").save(tmp_path / "pred" / "a.png")
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  dataset: folders\n  class_names: [road, car, sky]\n  label_colors: [[128, 64, 128], "
                      "[0, 0, 142], [70, 130, 180]]\n  ignore_colors: [[0, 0, 0]]\n")
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--config", str(config),
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "road" in out and "1 of 1 ground-truth files scored" in out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 3]]
