import numpy as np
import pytest
from PIL import Image
from synthetic_data import save_image, save_label

from pspnet.cli.main import main
from pspnet.data.check import check_dataset
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset, held_out
from pspnet.errors import PSPNetError


def lists_dataset(root, lines_train, lines_val=None):
    (root / "train.txt").write_text("".join(f"{a} {b}\n" for a, b in lines_train))
    (root / "val.txt").write_text("".join(f"{a} {b}\n" for a, b in (lines_val or lines_train)))
    return DataConfig(dataset="lists", root=root, train_list="train.txt", val_list="val.txt", num_classes=3)


def good_pair(root, name, h=8, w=10):
    save_image(root / "img" / f"{name}.png", h, w)
    save_label(root / "lab" / f"{name}.png", np.zeros((h, w)))
    return f"img/{name}.png", f"lab/{name}.png"


def problems_of(cfg, splits=("train",)):
    return [(p.path, p.reason) for p in check_dataset(cfg, splits)]


def test_a_clean_dataset_has_no_problems(tmp_path):
    cfg = lists_dataset(tmp_path, [good_pair(tmp_path, "a"), good_pair(tmp_path, "b")])
    assert check_dataset(cfg, ("train", "val")) == []


def test_unreadable_image_is_reported_with_its_file(tmp_path):
    pair = good_pair(tmp_path, "a")
    (tmp_path / pair[0]).write_bytes(b"not a png")
    [(path, reason)] = problems_of(lists_dataset(tmp_path, [pair]))
    assert path == str(tmp_path / pair[0]) and "unreadable image" in reason


def test_label_of_another_size_is_reported(tmp_path):
    pair = good_pair(tmp_path, "a")
    save_label(tmp_path / pair[1], np.zeros((5, 10)))
    [(path, reason)] = problems_of(lists_dataset(tmp_path, [pair]))
    assert path == str(tmp_path / pair[1]) and reason == (f"label is 10×5 but its image {tmp_path / pair[0]} is 10×8; "
                                                          "expected the same size")


def test_a_label_drawn_on_a_sideways_photo_before_its_exif_turn_is_reported_with_why(tmp_path):
    """A phone photo stored 10×8 with EXIF orientation 6 is read upright, 8×10 (as viewers show it); a label drawn on
    the stored pixels is 10×8: the problem says so. A label drawn upright is fine."""
    pair = good_pair(tmp_path, "a")  # image and label stored 10 wide, 8 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.open(tmp_path / pair[0]).save(tmp_path / "img" / "a.jpg", exif=exif)
    pair = ("img/a.jpg", pair[1])
    [(path, reason)] = problems_of(lists_dataset(tmp_path, [pair]))
    assert reason.startswith(f"label is 10×8 but its image {tmp_path / 'img/a.jpg'} is 8×10; expected the same size "
                             "(the image is stored 10×8 and turned upright by its EXIF orientation, as viewers show "
                             "it; the label matches the stored pixels: save it upright"), reason
    save_label(tmp_path / pair[1], np.zeros((10, 8)))  # drawn on the upright photo
    assert problems_of(lists_dataset(tmp_path, [pair])) == []
    Image.open(tmp_path / pair[0]).save(tmp_path / "img" / "a.jpg")  # no orientation: a plain size mismatch
    [(path, reason)] = problems_of(lists_dataset(tmp_path, [pair]))
    assert reason.endswith("expected the same size"), reason


def test_label_values_out_of_range_are_reported_but_ignore_is_fine(tmp_path):
    pair = good_pair(tmp_path, "a")
    save_label(tmp_path / pair[1], np.array([[0, 2, 3, 255, 7]]).repeat(8, 0).repeat(2, 1))
    [(path, reason)] = problems_of(lists_dataset(tmp_path, [pair]))
    assert path == str(tmp_path / pair[1]) and reason.startswith("label values 3, 7 out of range; expected 0..2")


def test_file_named_in_the_list_but_missing_is_reported(tmp_path):
    cfg = lists_dataset(tmp_path, [good_pair(tmp_path, "a"), ("img/gone.png", "lab/gone.png")])
    found = problems_of(cfg)
    assert found == [(str(tmp_path / "img/gone.png"), "image file is missing (the image of gone.png)"),
                     (str(tmp_path / "lab/gone.png"), "label file is missing (the label of gone.png)")]


def test_empty_split_is_reported(tmp_path):
    cfg = lists_dataset(tmp_path, [good_pair(tmp_path, "a")])
    (tmp_path / "val.txt").write_text("\n")
    assert problems_of(cfg, ("val",)) == [(str(tmp_path / "val.txt"), "the val split is empty; expected at least "
                                                                       "one pair")]


def test_missing_list_file_is_reported(tmp_path):
    cfg = DataConfig(dataset="lists", root=tmp_path, train_list="nope.txt", num_classes=3)
    assert problems_of(cfg) == [(str(tmp_path / "nope.txt"), "no such list file")]


def test_malformed_list_line_names_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("a.png b.png c.png\n")
    cfg = DataConfig(dataset="lists", root=tmp_path, train_list="train.txt", num_classes=3)
    [(path, reason)] = problems_of(cfg)
    assert path == f"{tmp_path / 'train.txt'}:1" and "expected 'IMAGE LABEL'" in reason


def test_folders_dataset_pairs_images_with_labels_by_name(tmp_path):
    save_image(tmp_path / "images" / "train" / "x.jpg")
    save_label(tmp_path / "labels" / "train" / "x.png", np.ones((12, 16)))
    save_image(tmp_path / "images" / "train" / "y.png")  # its label is missing
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2)
    assert problems_of(cfg) == [(str(tmp_path / "labels/train/y.png"), "label file is missing (the label of y.png)")]


def test_a_label_saved_in_another_format_is_named_with_what_to_do(tmp_path, capsys):
    from PIL import Image

    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    (tmp_path / "labels" / "train").mkdir(parents=True)
    for name, suffix in (("lossy", ".jpg"), ("bitmap", ".bmp")):
        save_image(tmp_path / "images" / "train" / f"{name}.jpg")
        Image.fromarray(mask).save(tmp_path / "labels" / "train" / f"{name}{suffix}")
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2)
    found = dict(problems_of(cfg))
    assert found[str(tmp_path / "labels/train/lossy.png")].startswith(
        "label file is missing (the label of lossy.jpg); lossy.jpg is beside it, a lossy format: lossy compression "
        "changes class values")
    assert found[str(tmp_path / "labels/train/bitmap.png")] == (
        "label file is missing (the label of bitmap.jpg); bitmap.bmp is beside it: labels are PNGs; convert it to "
        "bitmap.png (its values unchanged)")
    # Where a label is read (eval, predict's scoring), the same hint.
    with pytest.raises(PSPNetError, match=r"lossy\.png: no such label file; lossy\.jpg is beside it, a lossy"):
        from pspnet.data.imageops import read_label

        read_label(tmp_path / "labels/train/lossy.png")


def test_cli_check_takes_overrides_of_the_options_settings(tmp_path, capsys):
    """`--dataset folders --root R` and a setting no option gives (0/255 masks), without writing a config."""
    save_image(tmp_path / "images" / "train" / "a.jpg")
    save_label(tmp_path / "labels" / "train" / "a.png", np.where(np.tri(12, 16) > 0, 255, 0))
    args = ["data", "check", "--dataset", "folders", "--root", str(tmp_path), "--splits", "train", "--no-progress"]
    assert main([*args, "data.label_values=[0,255]"]) == 0
    assert "no problems" in capsys.readouterr().out
    assert main([*args, "data.num_classes=2"]) == 0  # read as indices, 255 is ignored: class 1 is in no label
    assert "class 1 (class_1) appears in no train label" in capsys.readouterr().out
    assert main([*args, "--num-classes", "2", "data.label_values=[0]"]) == 2
    assert capsys.readouterr().err.strip() == ("pspnet data: error: command line data.label_values=[0]: "
                                                "data.label_values has 1 values for 2 classes; expected one value "
                                                "per class")
    assert main([*args, "--num-classes", "1"]) == 2  # a binary mask's background is a class too
    assert capsys.readouterr().err.strip() == ("pspnet data: error: --num-classes 1: data.num_classes = 1: 1 class; "
                                                "expected 2 or more: PSPNet scores every class, the background too (a "
                                                "binary mask is 2 classes; saved as 0/255: data.label_values: [0, "
                                                "255])")
    assert main([*args, "data.label_values=[255]"]) == 2
    assert "data.label_values = [255]: 1 class; expected 2 or more" in capsys.readouterr().err
    labels = str(tmp_path / "labels" / "train")
    assert main(["score", "--pred", labels, "--gt", labels, "--num-classes", "1"]) == 2
    assert "--num-classes 1: expected 2 or more" in capsys.readouterr().err
    assert main([*args, "train.lr=1"]) == 2
    assert "override train.lr=1: expected a setting under data:" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [False, True])
def test_cli_check_prints_each_problem_and_fails(tmp_path, capsys, bad):
    pair = good_pair(tmp_path, "a")
    if bad:
        (tmp_path / pair[0]).unlink()
    lists_dataset(tmp_path, [pair])
    rc = main(["data", "check", "--dataset", "lists", "--root", str(tmp_path), "--train-list", "train.txt",
               "--val-list", "val.txt", "--num-classes", "3", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == (1 if bad else 0)
    assert ("image file is missing" in out) == bad
    assert out.strip().endswith("2 problem(s)" if bad else "no problems")


def test_a_dataset_named_as_data_prepare_takes_it_says_which_options_name_it(capsys):
    assert main(["data", "check", "camvid"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "pspnet data: error: data check camvid: the dataset is named with --dataset camvid --root DIR " \
                  "(or --config FILE)"


def test_a_root_or_config_given_without_its_option_is_answered_with_the_command_meant(tmp_path, capsys):
    prepared, mine, config = tmp_path / "cv", tmp_path / "mine", tmp_path / "data.yaml"
    prepared.mkdir()
    (prepared / "pspnet-prepared.json").write_text('{"dataset": "camvid", "splits": {}}')
    (mine / "images").mkdir(parents=True)
    (mine / "labels").mkdir()
    config.write_text("data: {dataset: folders, root: mine, num_classes: 3}\n")
    said = {}
    for path in (prepared, mine, config, tmp_path):
        assert main(["data", "check", str(path)]) == 2
        said[path] = capsys.readouterr().err.strip().removeprefix("pspnet data: error: ")
    assert said[prepared] == (f"{prepared}: the dataset's root goes after --root: pspnet data check --dataset camvid "
                              f"--root {prepared}")  # the stamp `data prepare` wrote names it
    assert said[mine].endswith(f"pspnet data check --dataset folders --root {mine}")
    assert said[config] == f"{config}: the config goes after --config: pspnet data check --config {config}"
    assert said[tmp_path].startswith(f"{tmp_path}: the dataset's root goes after --root, with its kind: pspnet data "
                                     f"check --dataset KIND --root {tmp_path} (KIND: folders for")


def test_every_malformed_list_line_is_reported_and_the_good_pairs_still_checked(tmp_path):
    good = good_pair(tmp_path, "a")
    cfg = lists_dataset(tmp_path, [good])
    with open(tmp_path / "train.txt", "a") as f:
        f.write("only_one_path\nx y z\nimg/missing.png lab/missing.png\n")
    found = problems_of(cfg)
    assert [p for p, _ in found[:2]] == [f"{tmp_path / 'train.txt'}:2", f"{tmp_path / 'train.txt'}:3"]
    assert all("expected 'IMAGE LABEL'" in reason for _, reason in found[:2])
    assert any("missing.png" in path for path, _ in found[2:])


def test_labels_without_an_image_are_named_in_a_note_not_a_problem(tmp_path):
    save_image(tmp_path / "images" / "train" / "a.jpg")
    for name in ("a", "a_mask", "b_mask"):
        save_label(tmp_path / "labels" / "train" / f"{name}.png", np.tri(12, 16))  # both classes
    notes = []
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2, crop_size=(16, 16))
    assert check_dataset(cfg, ("train",), notes=notes) == []
    assert notes == [f"{tmp_path / 'labels/train'}: 2 label(s) without an image of the same name, left out "
                     "(a_mask.png, b_mask.png); an image NAME.* is paired with the label NAME.png"]


def test_labels_named_with_a_suffix_are_paired_by_label_suffix_and_the_note_says_so(tmp_path):
    for name in ("a", "b"):
        save_image(tmp_path / "images" / "train" / f"{name}.jpg")
        save_label(tmp_path / "labels" / "train" / f"{name}_mask.png", np.tri(12, 16))
    notes = []
    plain = DataConfig(dataset="folders", root=tmp_path, num_classes=2, crop_size=(16, 16))
    assert len(check_dataset(plain, ("train",), notes=notes)) == 2  # a.png and b.png are missing
    assert notes[0].endswith("; these labels are named NAME_mask.png: set data.label_suffix: _mask.png")
    suffixed = DataConfig(dataset="folders", root=tmp_path, num_classes=2, crop_size=(16, 16), label_suffix="_mask.png")
    notes = []
    assert check_dataset(suffixed, ("train",), notes=notes) == [] and notes == []
    assert [p.label.name for p in build_dataset(suffixed, "train").pairs] == ["a_mask.png", "b_mask.png"]
    with pytest.raises(PSPNetError, match="data.label_suffix = '_mask.jpg'; expected an ending in .png"):
        DataConfig(dataset="folders", num_classes=2, label_suffix="_mask.jpg")


def test_val_fraction_holds_out_a_share_of_the_train_split_by_name(tmp_path):
    names = [f"img{i:02d}" for i in range(20)]
    for name in names:
        save_image(tmp_path / "images" / "train" / f"{name}.png", 4, 4)
        save_label(tmp_path / "labels" / "train" / f"{name}.png", np.zeros((4, 4)))
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2, val_fraction=0.2)
    train, val = (build_dataset(cfg, split) for split in ("train", "val"))
    assert len(val) == 4 and len(train) == 16
    assert sorted(p.name for p in train.pairs + val.pairs) == names  # disjoint, and together the whole split
    assert check_dataset(cfg, ("train", "val")) == []
    # The choice depends on the names, not on their order (nor on the seed or the machine).
    again = held_out(sorted(names, reverse=True), 0.2, "x")
    assert {sorted(names, reverse=True)[i] for i in again} == {p.name for p in val.pairs}


@pytest.mark.parametrize(("fraction", "count", "expected"), [(0.01, 10, 1), (0.99, 10, 9), (0.5, 3, 2)])
def test_val_fraction_holds_out_at_least_one_pair_and_leaves_one(fraction, count, expected):
    assert len(held_out([str(i) for i in range(count)], fraction, "x")) == expected


def test_a_train_split_too_small_to_hold_some_out_is_one_problem_not_one_per_split(tmp_path):
    save_image(tmp_path / "images" / "train" / "a.png", 4, 4)
    save_label(tmp_path / "labels" / "train" / "a.png", np.zeros((4, 4)))
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2, val_fraction=0.5)
    problems = check_dataset(cfg, ("train", "val"))
    assert len(problems) == 1 and "has 1 pair(s); expected at least 2 to hold some out" in str(problems[0])


def test_bad_val_fractions_are_one_line_errors():
    with pytest.raises(PSPNetError, match=r"data.val_fraction = 1.0; expected 0 \(use the val split\) or a share"):
        DataConfig(dataset="folders", num_classes=2, val_fraction=1.0)
    with pytest.raises(PSPNetError, match="x has 1 pair"):
        held_out(["a"], 0.5, "x")


def test_a_folders_dataset_reads_its_subfolders_and_names_by_path_in_the_tree(tmp_path):
    """As mmsegmentation's datasets: images anywhere under images/SPLIT pair with labels at the same path under
    labels/SPLIT; a nested pair is named by that path (its predictions and per-image rows), hidden folders are left
    out, and a nested label without an image is named in the note by its path."""
    for name in ("seq1/a", "seq2/a", "b"):
        save_image(tmp_path / "images" / "train" / f"{name}.jpg")
        save_label(tmp_path / "labels" / "train" / f"{name}.png", np.tri(12, 16))
    save_image(tmp_path / "images" / "train" / ".thumbs" / "a.jpg")
    save_label(tmp_path / "labels" / "train" / "seq3" / "c.png", np.tri(12, 16))
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2, crop_size=(16, 16))
    dataset = build_dataset(cfg, "train")
    assert [p.name for p in dataset.pairs] == ["b", "seq1/a", "seq2/a"]
    assert [p.label for p in dataset.pairs] == [tmp_path / "labels" / "train" / f"{n}.png" for n in ("b", "seq1/a",
                                                                                                     "seq2/a")]
    notes = []
    assert check_dataset(cfg, ("train",), notes=notes) == []
    assert notes == [f"{tmp_path / 'labels/train'}: 1 label(s) without an image of the same name, left out "
                     "(seq3/c.png); an image NAME.* is paired with the label NAME.png"]


def test_eval_of_image_and_label_trees_saves_predictions_at_their_paths(tmp_path, capsys):
    import torch

    import pspnet
    from pspnet.classes import DatasetInfo

    torch.manual_seed(0)
    model = pspnet.PSPNet(2, backbone="resnet18", info=DatasetInfo("toy", ["a", "b"]))
    ckpt = pspnet.save(model, tmp_path / "m.safetensors")
    for name in ("seq1/a", "seq2/a"):
        save_image(tmp_path / "images" / f"{name}.jpg")
        save_label(tmp_path / "labels" / f"{name}.png", np.tri(12, 16))
    out = tmp_path / "out"
    assert main(["eval", str(ckpt), "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                 "--crop-size", "33", "--base-size", "0", "--quiet", "--workers", "0", "--backend", "torch",
                 "--out", str(out), "--save-predictions", "--outputs", "labels"]) == 0
    assert "2 of 2 images scored" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["seq1/a.png", "seq2/a.png"]


def test_images_smaller_than_the_crop_at_every_scale_get_a_note_with_a_crop_that_holds_them(tmp_path):
    """Default 473×473 crops of 12×16 images are 99% padding: computed, ignored. The note names a crop holding the
    largest image at the largest scale; with that crop, or where some image fills the crop, no note."""
    for name, (h, w) in (("a", (12, 16)), ("b", (20, 10))):
        save_image(tmp_path / "images" / "train" / f"{name}.jpg", h, w)
        save_label(tmp_path / "labels" / "train" / f"{name}.png", np.tri(h, w))
    notes: list[str] = []
    cfg = DataConfig(dataset="folders", root=tmp_path, num_classes=2)
    assert check_dataset(cfg, ("train",), notes=notes) == []
    assert notes == [f"{tmp_path / 'images/train'} + {tmp_path / 'labels/train'}: every train image is smaller than "
                     "data.crop_size 473×473, even at the largest scale (×2 of data.scale_range: at most 40×32): most "
                     "of each crop is padding, computed and ignored; a crop of the largest scaled image's size holds "
                     "the same pixels in less compute (e.g. data.crop_size: [41, 41], 1% of the pixels per crop)"]
    for crop in ((41, 41), (40, 8)):  # the suggestion, and a crop one image reaches in height
        notes = []
        assert check_dataset(DataConfig(dataset="folders", root=tmp_path, num_classes=2, crop_size=crop), ("train",),
                             notes=notes) == [] and notes == []


def test_a_split_of_no_readable_label_has_no_class_shares_to_print(tmp_path, capsys):
    """Every label unreadable (here colour-coded, with no data.label_colors): the shares line says none were read
    rather than 0.0% for every class."""
    save_image(tmp_path / "images" / "train" / "a.png")
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0] = 200
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "labels" / "train" / "a.png")
    assert main(["data", "check", "--dataset", "folders", "--root", str(tmp_path), "--num-classes", "2", "--splits",
                 "train", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "a colour-coded label (colours [200, 0, 0])" in out
    assert "train pixels: none read (see the problems above)\n" in out


def test_a_class_name_given_twice_is_an_error():
    with pytest.raises(PSPNetError, match=r"^data.class_names: 'road' names two classes; expected a different name"):
        DataConfig(dataset="folders", root="d", class_names=["road", "car", "road"])


def test_a_known_dataset_read_from_its_raw_download_says_how_to_prepare_from_it(tmp_path, capsys):
    """`data check --root` of the unpacked ADE20K download suggested `data prepare ade20k --root THAT`, which refuses
    a folder of files it did not write; the source goes to --source."""
    from pspnet.cli.main import main

    raw = tmp_path / "ADEChallengeData2016"
    (raw / "images" / "training").mkdir(parents=True)
    assert main(["data", "check", "--dataset", "ade20k", "--root", str(raw)]) != 0
    assert (f"if {raw} is the ade20k download, run `pspnet data prepare ade20k --source {raw} --root data/ade20k` "
            "and set data.root to data/ade20k") in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "ade20k", "--root", str(tmp_path / "empty")]) != 0
    assert f"run `pspnet data prepare ade20k --root {tmp_path / 'empty'}` first" in capsys.readouterr().out
