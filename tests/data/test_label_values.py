"""Index labels drawn with other values than the class indices (`data.label_values`, `data.ignore_values`), and the
note that catches the usual mistake without them: binary masks saved as 0/255, whose 255 is the ignore index."""

import json

import numpy as np
import pytest
from PIL import Image
from synthetic_data import save_image, save_label

from pspnet.cli.main import main
from pspnet.data.check import check_dataset
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.data.imageops import read_label
from pspnet.data.label_values import LabelValues
from pspnet.errors import PSPNetError
from pspnet.train.class_weights import label_counts

MASK = [[0, 0, 255, 255], [0, 255, 255, 0]]  # a binary mask as most tools save it


def masks(root, names=("a", "b"), mask=MASK):
    for name in names:
        save_image(root / "images" / "train" / f"{name}.png", 2, 4)
        save_label(root / "labels" / "train" / f"{name}.png", np.array(mask))
    return root


def test_values_become_class_indices_and_ignore(tmp_path):
    path = save_label(tmp_path / "a.png", np.array([[0, 255, 7], [128, 7, 0]]))
    coding = LabelValues(((0,), (255,), (128,)), (7,))
    assert read_label(path, coding).tolist() == [[0, 1, 255], [2, 255, 0]]


def test_several_values_of_one_class_merge_classes(tmp_path):
    path = save_label(tmp_path / "a.png", np.array([[0, 1, 2, 3], [4, 3, 11, 0]]))
    coding = DataConfig(dataset="folders", class_names=["other", "road"], label_values=[[0, 1, 2, 4], 3],
                        ignore_values=[11]).label_coding()
    assert read_label(path, coding).tolist() == [[0, 0, 0, 1], [0, 1, 255, 0]]


def test_a_16_bit_label_maps_values_beyond_255(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[1000, 0], [65535, 1000]], dtype=np.uint16)).save(path)
    assert read_label(path, LabelValues(((0,), (1000,)), (65535,))).tolist() == [[1, 0], [255, 1]]
    with pytest.raises(PSPNetError, match="label value 65535 does not fit 0..255"):
        read_label(path)


def test_an_unlisted_value_names_the_file_the_value_and_its_pixels(tmp_path):
    path = save_label(tmp_path / "a.png", np.array([[0, 255, 3, 3]]))
    with pytest.raises(PSPNetError) as e:
        read_label(path, LabelValues(((0,), (255,))))
    assert str(e.value) == (f"{path}: value 3 (2 pixels) is in neither data.label_values nor data.ignore_values; "
                            "expected only the listed values")


@pytest.mark.parametrize(("settings", "expected"), [
    ({"num_classes": 3, "label_values": [0, 255]}, "data.label_values has 2 values for 3 classes"),
    ({"label_values": [0, 70000]}, "data.label_values[1] = 70000; expected a label value or a list of them in "
                                   "0..65535"),
    ({"label_values": [0, 255], "ignore_values": [0]}, "data.ignore_values[0]: 0 is also in data.label_values[0]"),
    ({"label_values": [[0, 1], [2, 1]]}, "data.label_values[1]: 1 is also in data.label_values[0]"),
    ({"label_values": [0, 1], "ignore_values": [[2, 3]]}, "data.ignore_values[0] = [2, 3]; expected a label value "
                                                          "in 0..65535"),
    ({"label_colors": [[0, 0, 0], [9, 9, 9]], "ignore_values": [7]}, "data.ignore_values = [7] with "
     "data.label_colors; the colours of unlabelled pixels are data.ignore_colors, e.g. [[0, 0, 0]]"),
    ({"dataset": "camvid", "ignore_values": [11]}, "data.ignore_values is set but camvid is prepared with train ids"),
    ({"dataset": "camvid", "label_values": list(range(11))}, "data.label_values is set but camvid"),
    ({"label_values": [0, 1], "label_colors": [[0, 0, 0], [1, 1, 1]]}, "data.label_values and data.label_colors"),
    ({"label_values": "0, 255"}, "data.label_values = '0, 255'; expected a list of label values"),
])
def test_bad_value_settings_are_one_line_errors(settings, expected):
    with pytest.raises(PSPNetError) as e:
        DataConfig(**{"dataset": "folders", **settings})
    assert expected in str(e.value)


def test_binary_masks_saved_as_0_255_get_a_note_and_train_once_their_values_are_given(tmp_path, capsys):
    root = masks(tmp_path)
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  num_classes: 2\n  crop_size: 4\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train pixels: class_0 100.0%, class_1 0.0%; ignored 50.0% of all pixels\n" in out
    assert ("class 1 (class_1) appears in no train label; 50% of their pixels are 255, the ignore index: if 255 marks "
            "a class in your labels (a mask saved as 0/255), give each class's value, e.g. data.label_values: "
            "[0, 255]") in out
    # With a void value of their own ignored (data.ignore_values), the labels still hold the indices: the same note.
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  num_classes: 2\n  crop_size: 4\n"
                      "  ignore_values: [128]\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 0
    assert "a mask saved as 0/255), give each class's value, e.g. data.label_values: [0, 255]" in (
        capsys.readouterr().out)
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  label_values: [0, 255]\n  crop_size: 4\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 0
    assert "train pixels: class_0 50.0%, class_1 50.0%; ignored 0.0% of all pixels\n" in capsys.readouterr().out
    cfg = DataConfig(dataset="folders", root=root, label_values=[0, 255], crop_size=(4, 4))
    assert cfg.num_classes == 2
    assert build_dataset(cfg, "train")[0]["label"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 0]]
    notes: list[str] = []
    assert check_dataset(cfg, ("train",), notes=notes) == [] and notes == []
    pairs = build_dataset(cfg, "train").pairs
    assert label_counts(pairs, 2, 255, coding=cfg.label_coding())[0].tolist() == [8, 8]  # what class weights count


def test_a_class_absent_from_index_labels_is_a_note_without_the_mask_hint(tmp_path):
    masks(tmp_path, mask=[[0, 1, 1, 0], [0, 0, 1, 1]])
    notes: list[str] = []
    cfg = DataConfig(dataset="folders", root=tmp_path, class_names=["bg", "cat", "dog"], crop_size=(4, 4))
    assert check_dataset(cfg, ("train",), notes=notes) == []
    assert len(notes) == 1 and notes[0].endswith("class 2 (dog) appears in no train label")


def test_data_check_reports_each_label_with_an_unlisted_value(tmp_path, capsys):
    masks(tmp_path, names=("good",))
    masks(tmp_path, names=("bad",), mask=[[0, 0, 255, 254], [0, 0, 0, 0]])
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  label_values: [0, 255]\n  crop_size: 4\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{tmp_path / 'labels/train/bad.png'}: unreadable label: value 254 (1 pixel) is in neither "
                      "data.label_values nor data.ignore_values; expected only the listed values")


def test_a_void_value_is_a_note_naming_ignore_values_which_alone_ignores_it(tmp_path, capsys):
    """Index labels with a void class of their own (SegNet's CamVid: 11): data check says how to ignore it, and
    `data.ignore_values` alone does, the classes keeping their values and 255 staying ignored."""
    masks(tmp_path, names=("a", "b"), mask=[[0, 1, 11, 11], [0, 255, 1, 11]])
    (tmp_path / "images" / "val").mkdir()
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path}\n  num_classes: 2\n  crop_size: 4\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert out.count("label value 11 is no class (0..1) and not the ignore index 255: if it marks unlabelled "
                     "pixels, data.ignore_values: [11]; if it is a class, raise data.num_classes") == 1
    config.write_text(config.read_text() + "  ignore_values: [11]\n")
    assert main(["data", "check", "--config", str(config), "--splits", "train", "--no-progress"]) == 0
    assert "train pixels: class_0 50.0%, class_1 50.0%; ignored 50.0% of all pixels\n" in capsys.readouterr().out
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2, ignore_values=[11], crop_size=(4, 4))
    assert (cfg.label_values, cfg.ignore_values) == ([0, 1], [11, 255])  # what the run's config.yaml records
    assert build_dataset(cfg, "train")[0]["label"].tolist() == [[0, 1, 255, 255], [0, 255, 1, 255]]


def test_grey_labels_saved_as_rgb_hold_their_values_and_colours_stay_an_error(tmp_path):
    """A label map saved with three equal channels (many tools write RGB), or as greyscale with alpha, is the
    greyscale map it shows; a 1-bit mask holds 0 and 1; a label of real colours still needs data.label_colors."""
    values = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)
    opaque = np.full_like(values, 255)
    Image.fromarray(np.stack([values] * 3, -1)).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([values] * 3 + [opaque], -1)).save(tmp_path / "grey_rgba.png")
    Image.fromarray(np.stack([values, opaque], -1), mode="LA").save(tmp_path / "grey_alpha.png")
    for name in ("grey.png", "grey_rgba.png", "grey_alpha.png"):
        assert read_label(tmp_path / name).tolist() == values.tolist(), name
    Image.fromarray(values == 1).save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"
    assert read_label(tmp_path / "bits.png").tolist() == (values == 1).astype(int).tolist()
    assert read_label(tmp_path / "grey.png", LabelValues(((0,), (1,), (2,)), (255,))).tolist() == values.tolist()
    coloured = np.stack([values, values, values // 2], -1)
    Image.fromarray(coloured).save(tmp_path / "colour.png")
    with pytest.raises(PSPNetError, match="a colour-coded label"):
        read_label(tmp_path / "colour.png")


def test_score_reads_value_coded_ground_truth_through_a_config(tmp_path, capsys):
    save_label(tmp_path / "gt" / "a.png", np.array(MASK))
    pred = (np.array(MASK) == 255).astype(np.uint8)
    pred[0, 0] = 1  # one background pixel taken for the object
    save_label(tmp_path / "pred" / "a.png", pred)
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  dataset: folders\n  class_names: [background, object]\n  label_values: [0, 255]\n")
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--config", str(config),
                 "--json", str(tmp_path / "s.json")]) == 0
    assert "object" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["confusion_matrix"] == [[3, 1], [0, 4]]


def test_score_notes_0_255_ground_truth_scored_as_indices(tmp_path, capsys):
    save_label(tmp_path / "gt" / "a.png", np.array(MASK))
    save_label(tmp_path / "pred" / "a.png", np.zeros((2, 4)))  # all background: a perfect score without the note
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "2"]) == 0
    err = capsys.readouterr().err
    assert err == (f"pspnet score: note: {tmp_path / 'gt'}: class 1 (class_1) appears in no ground-truth label; 50% "
                   "of their pixels are 255, the ignore index: if 255 marks a class in your labels (a mask saved as "
                   "0/255), give each class's value, e.g. data.label_values=[0,255]\n")
    # As the note says, on the command line: the mask's object is class 1, and the all-background prediction misses it.
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "2",
                 "data.label_values=[0,255]", "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["confusion_matrix"] == [[4, 0], [4, 0]]


def test_a_prepared_benchmark_missing_a_class_gets_the_note_without_the_label_values_hint(tmp_path):
    """label_values is refused for the prepared benchmarks, so their note does not suggest it."""
    masks(tmp_path, mask=[[0, 1, 255, 0], [0, 0, 1, 1]])
    (tmp_path / "train.txt").write_text("".join(f"images/train/{n}.png labels/train/{n}.png\n" for n in ("a", "b")))
    notes: list[str] = []
    assert check_dataset(DataConfig(dataset="camvid", root=tmp_path, crop_size=(4, 4)), ("train",), notes=notes) == []
    assert len(notes) == 1 and "classes 2 (Pole), 3 (Road)" in notes[0]
    assert notes[0].endswith("and 4 more appear in no train label")
