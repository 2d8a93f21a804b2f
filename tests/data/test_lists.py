"""List files with paths that hold spaces: tab-separated or quoted lines, read back as `pspnet data prepare` writes
them, and a one-line error that says how to write them."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_data import save_image, save_label

from pspnet.data.lists import (
    Pair,
    line_paths,
    pair_folders,
    read_image_list,
    read_list,
    read_list_lines,
    unpaired_labels,
    write_list,
)
from pspnet.errors import PSPNetError


@pytest.mark.parametrize("line, paths", [
    ("img/a.jpg lab/a.png", ["img/a.jpg", "lab/a.png"]),  # the official format
    ("my data/a b.jpg\tmy data/a b.png", ["my data/a b.jpg", "my data/a b.png"]),
    ('"my data/a b.jpg" "my data/a b.png"', ["my data/a b.jpg", "my data/a b.png"]),
    ('"my data/a b.jpg" lab/a.png', ["my data/a b.jpg", "lab/a.png"]),
    (r"C:\data\John's a.jpg", [r"C:\data\John's", "a.jpg"]),  # backslashes and apostrophes kept as written
    ("   ", []),
])
def test_a_line_is_split_into_its_paths(line: str, paths: list[str]) -> None:
    assert line_paths(line) == paths


def test_lists_with_spaces_round_trip_and_unquoted_ones_say_how_to_write_them(tmp_path: Path) -> None:
    pairs = []
    for name in ("plain", "with space"):
        save_image(tmp_path / "my images" / f"{name}.jpg")
        save_label(tmp_path / "my labels" / f"{name}.png", np.zeros((12, 16)))
        pairs.append(Pair(tmp_path / "my images" / f"{name}.jpg", tmp_path / "my labels" / f"{name}.png"))
    write_list(tmp_path / "train.txt", pairs, tmp_path)
    assert read_list(tmp_path / "train.txt", tmp_path) == pairs
    (tmp_path / "bad.txt").write_text("my images/plain.jpg my labels/plain.png\n")
    with pytest.raises(PSPNetError) as e:
        read_list_lines(tmp_path / "bad.txt")
    assert str(e.value) == (f"{tmp_path / 'bad.txt'}:1: expected 'IMAGE LABEL' (two paths), got 'my images/plain.jpg "
                            "my labels/plain.png'; for paths with spaces, separate the two with a tab or put each in "
                            "double quotes")
    # An image list (predict, quantize --calib): one image per line may hold spaces as it is, or be a pair list.
    (tmp_path / "images.txt").write_text("my images/with space.jpg\nmy images/plain.jpg\n")
    assert read_image_list(tmp_path / "images.txt") == [p.image for p in reversed(pairs)]
    assert read_image_list(tmp_path / "train.txt") == [p.image for p in pairs]
    (tmp_path / "missing.txt").write_text("my images/no such.jpg\n")
    with pytest.raises(PSPNetError, match=r"missing.txt:1: .*: no such image .*; for paths with spaces, separate"):
        read_image_list(tmp_path / "missing.txt")


def test_a_list_saved_by_a_windows_editor_reads_as_any_other(tmp_path: Path) -> None:
    """Notepad's UTF-8 starts the file with a byte-order mark and ends lines with CRLF: neither is part of a path."""
    plain = tmp_path / "plain.txt"
    plain.write_text("images/a.jpg labels/a.png\nimages/b.jpg labels/b.png\n")
    windows = tmp_path / "windows.txt"
    windows.write_bytes(b"\xef\xbb\xbfimages/a.jpg labels/a.png\r\nimages/b.jpg labels/b.png\r\n")
    assert read_list_lines(windows) == read_list_lines(plain) == [("images/a.jpg", "labels/a.png"),
                                                                  ("images/b.jpg", "labels/b.png")]


def test_a_list_written_with_windows_separators_says_so_where_the_files_are(tmp_path: Path) -> None:
    from pspnet.data.check import check_dataset, check_pair
    from pspnet.data.config import DataConfig

    save_image(tmp_path / "images" / "a.jpg")
    save_label(tmp_path / "labels" / "a.png", np.zeros((12, 16)))
    (tmp_path / "win.txt").write_text("images\\a.jpg labels\\a.png\n")
    pair = read_list(tmp_path / "win.txt", tmp_path)[0]
    problems = [str(p) for p in check_pair(pair, 3, 255)]
    assert problems == [f"{tmp_path}/images\\a.jpg: image file is missing (the image of labels\\a.png); "
                        f"{tmp_path}/images/a.jpg exists: the list separates folders with \\ (Windows); write / "
                        "instead",
                        f"{tmp_path}/labels\\a.png: label file is missing (the label of images\\a.jpg); "
                        f"{tmp_path}/labels/a.png exists: the list separates folders with \\ (Windows); write / "
                        "instead"]
    (tmp_path / "images.txt").write_text("images\\a.jpg\n")
    with pytest.raises(PSPNetError, match=r"images/a.jpg exists: the list separates folders with \\ \(Windows\)"):
        read_image_list(tmp_path / "images.txt")
    notes: list[str] = []  # every label missing: no note that its classes appear in no label
    cfg = DataConfig(dataset="lists", root=tmp_path, train_list="win.txt", num_classes=3, crop_size=(12, 16))
    assert len(check_dataset(cfg, ("train",), notes=notes)) == 2 and notes == []
    (tmp_path / "elsewhere.txt").write_text("images\\b.jpg labels\\b.png\n")  # no such file either way: no hint
    assert "Windows" not in str(check_pair(read_list(tmp_path / "elsewhere.txt", tmp_path)[0], 3, 255)[0])


def test_a_label_whose_suffix_is_upper_case_pairs_with_its_image(tmp_path: Path) -> None:
    """NAME.PNG (cameras and Windows tools write upper-case suffixes) is NAME's label; the name's own case counts."""
    for name in ("A.JPG", "B.jpg"):
        save_image(tmp_path / "images" / name)
    for name in ("A.PNG", "b.png"):
        save_label(tmp_path / "labels" / name, np.zeros((12, 16)))
    pairs = pair_folders(tmp_path / "images", tmp_path / "labels")
    assert [(p.image.name, p.label.name, p.label.is_file()) for p in pairs] == [("A.JPG", "A.PNG", True),
                                                                                ("B.jpg", "B.png", False)]
    assert unpaired_labels(tmp_path / "images", tmp_path / "labels") == ([tmp_path / "labels" / "b.png"], None)


def test_a_folder_tree_follows_symlinked_subfolders_once(tmp_path):
    """A sequence linked in from elsewhere (`images/train/seqA -> /store/seqA`) was left out of every folder tree
    without a word (Path.rglob does not enter symlinked folders); a link back up the tree is walked once."""
    from pspnet.data.lists import tree_files

    store = tmp_path / "store" / "seqA"
    store.mkdir(parents=True)
    (store / "1.png").write_bytes(b"")
    tree = tmp_path / "images"
    tree.mkdir()
    (tree / "local.png").write_bytes(b"")
    (tree / "seqA").symlink_to(store)
    (tree / "loop").symlink_to(tree)
    found = [p.relative_to(tree).as_posix() for p in tree_files(tree, (".png",))]
    assert found == ["local.png", "seqA/1.png"]


def test_two_images_of_one_name_beside_one_label_are_refused(tmp_path):
    """a.png and a.jpg with labels/a.png: both were paired with it, the label scored twice without a word."""
    from pspnet.data.lists import pair_folders

    for name in ("images/a.png", "images/a.jpg", "images/b.png", "labels/a.png", "labels/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(PSPNetError, match=r"a\.jpg and .*a\.png both pair with the label .*labels/a\.png; keep one"):
        pair_folders(tmp_path / "images", tmp_path / "labels")
