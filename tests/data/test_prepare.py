import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from synthetic_data import make_segnet_camvid, save_image, save_label

from pspnet.cli.main import main
from pspnet.data.config import DataConfig
from pspnet.data.datasets import build_dataset
from pspnet.data.imageops import read_label
from pspnet.data.prepare import prepare_dataset
from pspnet.errors import PSPNetError


def test_prepare_camvid_from_a_mirror_url(tmp_path, serve, capsys):
    url = serve(make_segnet_camvid(tmp_path / "mirror"))
    root = tmp_path / "camvid"
    assert main(["data", "prepare", "camvid", "--root", str(root), "--source", url, "--no-progress"]) == 0
    assert "prepared and checked (train 2, val 2, test 2 pairs)" in capsys.readouterr().out
    assert (root / "train.txt").read_text().splitlines()[0] == \
        "images/train/0001TP_train00.png labels/train/0001TP_train00.png"
    dataset = build_dataset(DataConfig(dataset="camvid", root=root), "val")
    item = dataset[1]
    assert item["name"] == "0001TP_val01" and item["image"].shape == (3, 12, 16)
    assert set(item["label"].unique().tolist()) == set(range(11)) | {255}  # void 11 became ignore


def test_prepare_twice_is_a_no_op_that_succeeds(tmp_path, capsys):
    source = make_segnet_camvid(tmp_path / "src")
    root = tmp_path / "camvid"
    args = ["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]
    assert main(args) == 0
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    capsys.readouterr()
    assert main(args) == 0
    assert "already prepared (train 2, val 2, test 2 pairs); nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_a_root_holding_other_data_is_refused_before_anything_is_written(tmp_path, capsys):
    source = make_segnet_camvid(tmp_path / "src")
    mine = tmp_path / "mine"  # the user's own folders dataset, or a lists dataset's train.txt
    save_image(mine / "images" / "train" / "a.jpg", 8, 8)
    before = sorted(mine.rglob("*"))
    args = ["data", "prepare", "camvid", "--source", str(source), "--no-progress"]
    assert main([*args, "--root", str(mine)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pspnet data: error: {mine}: holds images/ that `pspnet data prepare` did not write; prepare camvid into a "
        "new or empty --root (its files would be mixed with those)")
    assert sorted(mine.rglob("*")) == before
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("a.jpg a.png\n")
    assert main([*args, "--root", str(lists)]) == 2
    assert "holds train.txt that `pspnet data prepare` did not write" in capsys.readouterr().err
    assert (lists / "train.txt").read_text() == "a.jpg a.png\n"
    assert main([*args, "--root", str(lists / "train.txt")]) == 2  # a file given as the root: was a traceback
    assert capsys.readouterr().err == (f"pspnet data: error: --root {lists / 'train.txt'}: a file, not a folder; give "
                                       "the folder to prepare the dataset in\n")


def test_a_stopped_prepare_continues_in_its_own_root(tmp_path, capsys):
    source = make_segnet_camvid(tmp_path / "src")
    root = tmp_path / "camvid"
    args = ["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]
    assert main(args) == 0
    (root / "pspnet-prepared.json").unlink()  # as if stopped before the end: files there, no stamp
    (root / ".pspnet-preparing").write_text("camvid\n")
    capsys.readouterr()
    assert main(["data", "prepare", "ade20k", "--root", str(root), "--source", str(source), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (f"pspnet data: error: {root}: a `pspnet data prepare camvid` started "
                                               "there; use another --root for ade20k")
    assert main(args) == 0 and "prepared and checked" in capsys.readouterr().out
    assert not (root / ".pspnet-preparing").exists()


def test_missing_test_split_is_skipped_with_a_note(tmp_path, capsys):
    source = make_segnet_camvid(tmp_path / "src", splits=("train", "val"))
    assert main(["data", "prepare", "camvid", "--root", str(tmp_path / "r"), "--source", str(source),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "note: test split:" in out and "test.txt not found; skipped it" in out
    assert "(train 2, val 2 pairs)" in out


def test_file_missing_in_the_source_fails_the_check_and_names_it(tmp_path, capsys):
    source = make_segnet_camvid(tmp_path / "src", splits=("train", "val"))
    (source / "valannot" / "0001TP_val01.png").unlink()
    root = tmp_path / "r"
    assert main(["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{root / 'labels/val/0001TP_val01.png'}: label file is missing (the label of 0001TP_val01.png)" in out
    assert not (root / "pspnet-prepared.json").exists()


def test_a_bad_source_file_once_fixed_is_converted_again_by_the_next_run(tmp_path, capsys):
    """The converted copy of a bad label was kept, and the rerun after fixing the source failed the same way
    forever; now it is made again from the source, and the other files are kept."""
    source = make_segnet_camvid(tmp_path / "src", splits=("train", "val"))
    bad = source / "trainannot" / "0001TP_train00.png"
    good = bad.read_bytes()
    label = np.asarray(read_label(bad)).copy()
    label[:2, :2] = 40  # no CamVid class
    save_label(bad, label)
    root = tmp_path / "r"
    run = ["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]
    assert main(run) == 1
    out = capsys.readouterr().out
    assert f"{root / 'labels/train/0001TP_train00.png'}: label values 40 out of range" in out
    assert "fix the source and run again (the files named are made again from it, the others are kept)" in out
    kept = (root / "images" / "train" / "0001TP_train00.png").stat().st_mtime_ns
    bad.write_bytes(good)
    assert main(run) == 0
    assert "prepared and checked (train 2, val 2 pairs)" in capsys.readouterr().out
    assert (root / "images" / "train" / "0001TP_train00.png").stat().st_mtime_ns == kept


def test_prepare_ade20k_from_its_archive_shifts_labels(tmp_path):
    data = tmp_path / "build" / "ADEChallengeData2016"
    for upstream in ("training", "validation"):
        save_image(data / "images" / upstream / "ADE_1.jpg")
        save_label(data / "annotations" / upstream / "ADE_1.png", np.tile([0, 1, 150, 2], (12, 4)))
    (tmp_path / "up").mkdir()
    with zipfile.ZipFile(tmp_path / "up" / "ADEChallengeData2016.zip", "w") as z:
        for path in data.rglob("*.*"):
            z.write(path, path.relative_to(data.parent).as_posix())
    result = prepare_dataset("ade20k", tmp_path / "ade", str(tmp_path / "up"), progress=False)
    assert result.splits == {"train": 1, "val": 1} and not result.problems
    label = read_label(tmp_path / "ade" / "labels" / "val" / "ADE_1.png")
    assert label[0, :4].tolist() == [255, 0, 149, 1]


def test_cityscapes_without_source_explains_the_login(tmp_path):
    with pytest.raises(PSPNetError, match="Cityscapes needs a login.*leftImg8bit_trainvaltest.zip"):
        prepare_dataset("cityscapes", tmp_path / "cs", None, progress=False)


def test_prepare_cityscapes_converts_label_ids(tmp_path):
    up = tmp_path / "up"
    for split in ("train", "val"):
        save_image(up / "leftImg8bit" / split / "aachen" / "aachen_000000_000019_leftImg8bit.png")
        save_label(up / "gtFine" / split / "aachen" / "aachen_000000_000019_gtFine_labelIds.png",
                   np.tile([7, 26, 0, 33], (12, 4)))
    result = prepare_dataset("cityscapes", tmp_path / "cs", str(up), progress=False)
    assert result.splits == {"train": 1, "val": 1} and not result.problems
    label = read_label(tmp_path / "cs" / "labels" / "train" / "aachen_000000_000019.png")
    assert label[0, :4].tolist() == [0, 13, 255, 18]


def test_prepare_voc2012_builds_train_aug_from_voc_and_sbd(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    voc = tmp_path / "up" / "VOCdevkit" / "VOC2012"
    sbd = tmp_path / "up" / "benchmark_RELEASE" / "dataset"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("b\n")
    for name in ("a", "b"):
        save_image(voc / "JPEGImages" / f"{name}.jpg")
        save_label(voc / "SegmentationClass" / f"{name}.png", np.tile([0, 15, 255, 20], (12, 4)))
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("c\nb\n")  # b is VOC val: left out of train_aug
    (sbd / "val.txt").write_text("")
    save_image(sbd / "img" / "c.jpg")
    scipy_io.savemat(sbd / "cls" / "c.mat", {"GTcls": {"Segmentation": np.full((12, 16), 3, np.uint8)}})
    result = prepare_dataset("voc2012", tmp_path / "voc", str(tmp_path / "up"), progress=False)
    assert result.splits == {"train": 2, "val": 1} and not result.problems
    assert [line.split()[0] for line in (tmp_path / "voc" / "train.txt").read_text().splitlines()] == \
        ["images/train/a.jpg", "images/train/c.jpg"]
    assert (read_label(tmp_path / "voc" / "labels" / "train" / "c.png") == 3).all()
    assert json.loads((tmp_path / "voc" / "pspnet-prepared.json").read_text())["dataset"] == "voc2012"


def test_a_source_with_the_wrong_layout_fails_marks_nothing_and_a_correct_rerun_works(tmp_path, capsys):
    (tmp_path / "wrong" / "somewhere_else").mkdir(parents=True)
    root = tmp_path / "camvid"
    code = main(["data", "prepare", "camvid", "--root", str(root), "--source", str(tmp_path / "wrong"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "found no image/label pairs" in err and "train.txt" in err
    assert not any(root.glob("*prepared*"))
    source = make_segnet_camvid(tmp_path / "src")
    assert main(["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]) == 0
    assert "prepared and checked (train 2, val 2, test 2 pairs)" in capsys.readouterr().out


def test_a_source_that_is_missing_or_a_file_is_one_line_and_leaves_no_root_behind(tmp_path, capsys):
    root = tmp_path / "r"
    run = ["data", "prepare", "camvid", "--root", str(root), "--no-progress", "--source"]
    assert main([*run, str(tmp_path / "nope")]) == 2
    assert f"--source {tmp_path / 'nope'}: no such folder or file" in capsys.readouterr().err
    assert not root.exists()  # an empty --root was left behind
    config = tmp_path / "base.yaml"
    config.write_text("data: {}\n")
    assert main([*run, str(config)]) == 2  # was "base.yaml/train.txt not found"
    assert f"--source {config}: a file; expected the folder of a local copy" in capsys.readouterr().err
    assert main([*run, str(make_segnet_camvid(tmp_path / "src", splits=("train", "val")))]) == 0


def test_a_prepare_that_wrote_nothing_leaves_the_root_free_for_the_corrected_command(tmp_path, capsys):
    """A wrong dataset name (or Cityscapes without --source) stopped before writing a file, yet the root was
    claimed for it and the corrected command refused ("a `pspnet data prepare cityscapes` started there")."""
    source = make_segnet_camvid(tmp_path / "src", splits=("train", "val"))
    root = tmp_path / "r"
    assert main(["data", "prepare", "cityscapes", "--root", str(root), "--source", str(source), "--no-progress"]) == 2
    capsys.readouterr()
    assert main(["data", "prepare", "camvid", "--root", str(root), "--source", str(source), "--no-progress"]) == 0
    stopped = tmp_path / "stopped"  # a prepare of camvid stopped after writing files: its root stays its own
    (stopped / "images").mkdir(parents=True)
    (stopped / "images" / "a.png").write_bytes(b"")
    (stopped / ".pspnet-preparing").write_text("camvid\n")
    assert main(["data", "prepare", "ade20k", "--root", str(stopped), "--source", str(source), "--no-progress"]) == 2
    assert "a `pspnet data prepare camvid` started there; use another --root for ade20k" in capsys.readouterr().err


def test_a_damaged_source_archive_is_to_be_fetched_again_not_deleted_and_rerun(tmp_path, capsys):
    """The user's own archive (Cityscapes has no download to fall back on): "delete it and run again" then failed
    with "holds neither …"."""
    up = tmp_path / "up"
    up.mkdir()
    (up / "ADEChallengeData2016.zip").write_bytes(b"PK\x03\x04 cut short")
    assert main(["data", "prepare", "ade20k", "--root", str(tmp_path / "ade"), "--source", str(up),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"{up / 'ADEChallengeData2016.zip'}: cannot unpack it (File is not a zip file): truncated or damaged; "
            "download it again and give that to --source") in err and "delete it" not in err


def test_voc2012_without_scipy_is_said_before_anything_is_fetched(tmp_path, monkeypatch):
    """Said after the 3.4 GB of VOC and SBD were fetched and unpacked, and naming `pip install scipy` rather than
    the extra that holds it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    monkeypatch.setattr("pspnet.data.prepare.voc2012.find_or_fetch", None)  # nothing fetched or read
    with pytest.raises(PSPNetError, match=r"^voc2012: its train_aug split reads SBD's \.mat labels, which needs "
                                          r"scipy: pip install 'pspnet\[voc\]'$"):
        prepare_dataset("voc2012", tmp_path / "voc", None, progress=False)


def test_a_source_of_relative_symlinks_is_placed_as_its_files(tmp_path, capsys):
    """A git-annex or DVC checkout holds relative symbolic links: os.link linked the links themselves, whose targets
    then pointed nowhere from the root ("image file is missing" for a source that was fine)."""
    real = make_segnet_camvid(tmp_path / "store" / "CamVid", splits=("train", "val"))
    linked = tmp_path / "checkout" / "CamVid"
    for path in sorted(real.rglob("*")):
        mirror = linked / path.relative_to(real)
        if path.is_dir():
            mirror.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".png":
            mirror.parent.mkdir(parents=True, exist_ok=True)
            mirror.symlink_to(os.path.relpath(path, mirror.parent))
        else:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, mirror)
    root = tmp_path / "deep" / "a" / "b"
    assert main(["data", "prepare", "camvid", "--root", str(root), "--source", str(linked), "--no-progress"]) == 0
    assert "prepared and checked (train 2, val 2 pairs)" in capsys.readouterr().out
    assert all(p.is_file() for p in (root / "images" / "train").iterdir())
