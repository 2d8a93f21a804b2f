"""`pspnet predict`, `eval` and `score` as a user runs them, on a tiny model and tiny images."""

import csv
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import videos  # tests/, on the path by conftest.py
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.engine import predict as engine_predict
from pspnet.engine.inference import InferenceSettings, segment_and_confidence
from pspnet.engine.metrics import scores_from_matrix
from pspnet.errors import PSPNetError

TINY = ["--crop-size", "33", "--base-size", "0", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = pspnet.PSPNet(3, backbone="resnet18", info=DatasetInfo("toy", ["a", "b", "c"]))
    return pspnet.save(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def write_image(path: Path, h: int = 33, w: int = 45, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_label(path: Path, h: int = 33, w: int = 45, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 3, (h, w), dtype=np.uint8)
    lab[0] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lab, mode="L").save(path)
    return path


def test_predict_writes_labels_colours_and_overlays_at_input_size(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "in" / "one.png")
    write_image(tmp_path / "in" / "two.jpg", 20, 31)
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]  # what it did and how fast, as the user waited
    assert re.match(r"2 of 2 inputs written to .* in \d+\.\d s, \d+\.\d\d images/s \(", last), last
    label = Image.open(tmp_path / "out" / "two.png")
    assert label.mode == "L" and label.size == (31, 20)
    assert np.asarray(label).max() < 3
    assert Image.open(tmp_path / "out" / "color" / "one.png").mode == "RGB"
    assert (tmp_path / "out" / "overlay" / "one.png").is_file()
    # The API draws a label map as the command does: colours, and the overlay on the image read the same way.
    model, labels = pspnet.load(checkpoint), np.array(label)
    assert (pspnet.colorize(labels, model) == np.asarray(Image.open(tmp_path / "out" / "color" / "two.png"))).all()
    drawn = pspnet.colorize(torch.from_numpy(labels), model, tmp_path / "in" / "two.jpg")
    assert (drawn == np.asarray(Image.open(tmp_path / "out" / "overlay" / "two.png"))).all()
    for bad, words in (((labels[None], model), "labels of shape (1, 20, 31) and type uint8; expected an H×W map"),
                       ((labels, torch.nn.Conv2d(3, 3, 1)), "a Conv2d without its classes and normalisation"),
                       ((labels, model, tmp_path / "in" / "one.png"), "image of 45×33 for labels of 31×20; expected")):
        with pytest.raises(PSPNetError, match=re.escape(words)):
            pspnet.colorize(*bad)


def test_predict_legend_names_the_classes_under_each_colour_map_overlay_and_video(checkpoint, tmp_path, capsys):
    """--legend: the colour map and overlay as without it, with the key of the classes the image shows under them
    (as `pspnet.colorize(..., legend=True)` draws); a video's frames all carry the key of every class; the label
    PNGs are untouched. Asked for without a colour output: a one-line error."""
    from pspnet.engine.legend import draw_key, key_entries, video_key

    write_image(tmp_path / "in" / "a.png")
    write_video(tmp_path / "in" / "clip.mp4", 2)
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "plain"), *TINY]) == 0
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "key"), "--legend",
                 "--outputs", "labels", "color", "overlay", *TINY]) == 0
    model = pspnet.load(checkpoint)
    labels = np.asarray(Image.open(tmp_path / "key" / "a.png"))
    assert (labels == np.asarray(Image.open(tmp_path / "plain" / "a.png"))).all() and labels.shape == (33, 45)
    key = draw_key(key_entries([labels], model.info.classes, model.info.palette), 45)
    for kind in ("color", "overlay"):
        keyed, plain = (np.asarray(Image.open(tmp_path / run / kind / "a.png")) for run in ("key", "plain"))
        assert (keyed[:33] == plain).all() and (keyed[33:] == key).all(), kind
    assert (pspnet.colorize(labels, model, legend=True) == np.asarray(
        Image.open(tmp_path / "key" / "color" / "a.png"))).all()
    key = video_key(np.zeros((1, 1), np.uint8), model.info.classes, model.info.palette, 48)  # one height for all
    frames = video_frames(tmp_path / "key" / "color" / "clip.mp4")
    assert len(frames) == 2 and {(f.height, f.width) for f in frames} == {(32 + key.shape[0], 48)}
    capsys.readouterr()
    assert main(["predict", str(checkpoint), str(tmp_path / "in" / "a.png"), "--out", str(tmp_path / "o"),
                 "--outputs", "labels", "--legend", *TINY]) == 2
    err = capsys.readouterr().err
    assert "error: --legend: it draws a colour key under the colour maps and overlays, but --outputs labels writes " \
        "neither; add color or overlay to --outputs" in err and "Traceback" not in err


def test_a_window_size_for_the_whole_image_protocol_is_said_to_change_nothing(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "a.png")
    out = [str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--quiet", "--outputs", "labels"]
    assert main(["predict", str(checkpoint), *out, "--mode", "whole", "--crop-size", "33"]) == 0
    assert ("note: --crop-size 33 is unused: the protocol runs the whole image; --mode slide runs it in 33×33 "
            "windows") in capsys.readouterr().err
    assert main(["predict", str(checkpoint), *out, "--overwrite", "--crop-size", "33"]) == 0
    assert "unused" not in capsys.readouterr().err  # windows of 33×33: used


def test_predict_says_its_protocol_for_a_model_that_records_none(checkpoint, tmp_path, capsys) -> None:
    """A model saved without a validated protocol (made in Python, converted): predict said nothing of the windows
    and flip it ran, which a deployer reproducing its answer has to know."""
    write_image(tmp_path / "a.png")
    out = [str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--quiet", "--outputs", "labels"]
    assert main(["predict", str(checkpoint), *out]) == 0
    expected = InferenceSettings.for_dataset("toy").describe()
    assert (f"protocol: the default ({checkpoint} records none; --base-size, --crop-size, --mode, --scales and "
            f"--flip change it): {expected}") in capsys.readouterr().err
    assert main(["predict", str(checkpoint), *out, "--overwrite", "--preset", "ms", "--base-size", "40"]) == 0
    expected = InferenceSettings.for_dataset("toy", "ms", base_size=40).describe()
    assert f"protocol: --preset ms: {expected}" in capsys.readouterr().err


def test_commands_run_with_stderr_closed_and_an_ascii_stdout(checkpoint, tmp_path) -> None:
    """`2>&-` (some daemons and cron jobs): predict crashed on its progress bar before writing anything, silently;
    PYTHONIOENCODING=ascii: `pspnet models` ended in a UnicodeEncodeError (the × of "7×7 stem")."""
    import os
    import subprocess
    import sys

    write_image(tmp_path / "a.png")
    done = subprocess.run([sys.executable, "-m", "pspnet", "predict", str(checkpoint), str(tmp_path / "a.png"),
                           "--out", str(tmp_path / "o"), "--outputs", "labels", *TINY],
                          preexec_fn=lambda: os.close(2), capture_output=False, timeout=300)  # noqa: PLW1509
    assert done.returncode == 0 and (tmp_path / "o" / "a.png").is_file()
    listed = subprocess.run([sys.executable, "-m", "pspnet", "models", "r18"], capture_output=True, timeout=300,
                            env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert listed.returncode == 0 and b"7\\xd77 stem" in listed.stdout, listed.stderr[-500:]


def test_predict_writes_outputs_of_the_longest_names_a_file_may_have(checkpoint, tmp_path) -> None:
    """81 CJK characters (247 bytes) make a valid name; its temporary twin, 14 bytes longer, did not, and the whole
    run stopped there ("File name too long")."""
    name = "写" * 81
    write_image(tmp_path / "in" / f"{name}.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "o"), *TINY]) == 0
    assert (tmp_path / "o" / f"{name}.png").is_file() and (tmp_path / "o" / "color" / f"{name}.png").is_file()


def test_predict_accepts_globs(checkpoint, tmp_path) -> None:
    write_image(tmp_path / "a1.png")
    write_image(tmp_path / "a2.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "a*.png"), "--out", str(tmp_path / "o"), *TINY]) == 0
    assert (tmp_path / "o" / "a2.png").is_file()


@pytest.mark.parametrize("name, content, reason", [
    ("corrupt.png", b"\x89PNG\r\n\x1a\nnot really", "cannot read it as an image"),
    ("empty.jpg", b"", "cannot read it as an image (an empty file (0 bytes): a copy or download that did not "
                       "finish?)"),  # said no more than PIL's "cannot identify image file"
    ("notes.md", b"hello", "cannot read it as an image"),
    ("notes.txt", b"hello", "notes.txt:1: "),  # a list file whose first line names no image
    ("binary.lst", b"\xff\xfe\x00", "not a text list file"),
])
def test_predict_reports_a_bad_file_in_one_line_and_processes_the_rest(checkpoint, tmp_path, capsys, name,
                                                                         content, reason) -> None:
    good = write_image(tmp_path / "good.png")
    bad = tmp_path / name
    bad.write_bytes(content)
    code = main(["predict", str(checkpoint), str(bad), str(good), "--out", str(tmp_path / "out"), *TINY])
    err = capsys.readouterr().err
    assert code != 0
    assert (tmp_path / "out" / "good.png").is_file()
    lines = [line for line in err.splitlines() if str(bad) in line]
    assert len(lines) == 1 and reason in lines[0]
    assert "Traceback" not in err


def test_predict_takes_a_list_file_such_as_a_datasets_val_txt(checkpoint, tmp_path, capsys) -> None:
    """`IMAGE LABEL` lines (the official lists, `pspnet data prepare`'s) or one image per line, relative to the list's
    folder; comments and blank lines skipped; the images of the list in its order."""
    write_image(tmp_path / "images" / "b.png")
    write_image(tmp_path / "images" / "a.jpg", 20, 31)
    (tmp_path / "val.txt").write_text("# two of them\nimages/b.png labels/b.png\n\n" f"{tmp_path / 'images/a.jpg'}\n")
    assert main(["predict", str(checkpoint), str(tmp_path / "val.txt"), "--out", str(tmp_path / "o"), *TINY]) == 0
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["a.png", "b.png"]
    assert "2 of 2 inputs written" in capsys.readouterr().err
    # Each line naming no file is said, and the others are predicted (the whole list was dropped); exit status 1.
    (tmp_path / "val.txt").write_text("images/c.png\r\nimages/b.png\r\nimages/d.png\r\n")
    assert main(["predict", str(checkpoint), str(tmp_path / "val.txt"), "--out", str(tmp_path / "o2"), *TINY]) == 1
    err = capsys.readouterr().err
    for number, name in ((1, "c"), (3, "d")):
        assert (f"{tmp_path / 'val.txt'}:{number}: {tmp_path / 'images' / name}.png: no such image (a relative path "
                f"is read from the list's folder, {tmp_path})") in err
    assert [p.name for p in (tmp_path / "o2").glob("*.png")] == ["b.png"] and "1 of 3 inputs written" in err
    # A list none of whose lines names a file (read from the wrong folder): one line.
    (tmp_path / "val.txt").write_text("images/c.png\nimages/d.png\n")
    assert main(["predict", str(checkpoint), str(tmp_path / "val.txt"), "--out", str(tmp_path / "o3"), *TINY]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'val.txt'}:1: " in err and "(and 1 more line(s) naming no file)" in err and ":2:" not in err


def test_predict_reports_a_missing_input(checkpoint, tmp_path, capsys) -> None:
    good = write_image(tmp_path / "good.png")
    code = main(["predict", str(checkpoint), str(tmp_path / "nope.png"), str(good), "--out", str(tmp_path / "o"),
                 *TINY])
    assert code != 0 and "nope.png: no such file or folder" in capsys.readouterr().err
    assert (tmp_path / "o" / "good.png").is_file()


def write_video(path: Path, frames: int) -> Path:
    """`frames` grey 48×32 frames, each lighter than the one before."""
    return videos.write_video(path, (np.full((32, 48, 3), 40 * i % 256, dtype=np.uint8) for i in range(frames)))


def video_frames(path: Path) -> list:
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


@pytest.mark.parametrize("kinds", [["labels"], ["overlay", "color"]])
def test_predict_writes_only_the_outputs_asked_for(checkpoint, tmp_path, kinds) -> None:
    write_image(tmp_path / "a.png")
    out = tmp_path / "o"
    assert main(["predict", str(checkpoint), str(tmp_path / "a.png"), "--out", str(out), "--outputs", *kinds,
                 *TINY]) == 0
    where = {"labels": "a.png", "color": "color/a.png", "overlay": "overlay/a.png"}
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(where[k] for k in kinds)


def test_predict_takes_a_glob_that_reaches_into_subfolders(checkpoint, tmp_path) -> None:
    for city in ("aachen", "bonn"):
        write_image(tmp_path / "val" / city / f"{city}_0_leftImg8bit.png")
    pattern = str(tmp_path / "val" / "**" / "*_leftImg8bit.png")
    assert main(["predict", str(checkpoint), pattern, "--out", str(tmp_path / "o"), "--outputs", "labels", *TINY]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["aachen_0_leftImg8bit.png", "bonn_0_leftImg8bit.png"]


def test_predict_names_the_files_of_a_folder_it_leaves_out(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "IMG_0001.HEIC").write_bytes(b"a phone photo pspnet does not decode")
    (tmp_path / "in" / ".DS_Store").write_bytes(b"")
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "o"), *TINY]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in'}: left out 2 file(s) without an image or video suffix (IMG_0001.HEIC, notes.txt;" in err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["a.png"]


def test_predict_video_writes_an_annotated_video(checkpoint, tmp_path, capsys) -> None:
    src = write_video(tmp_path / "clip.mp4", 3)
    write_image(tmp_path / "a.png")
    capsys.readouterr()
    assert main(["predict", str(checkpoint), str(src), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 *TINY]) == 0
    frames = video_frames(tmp_path / "o" / "overlay" / "clip.mp4")
    assert len(frames) == 3 and (frames[0].height, frames[0].width) == (32, 48)
    # The run's rate counts the frames: images segmented too.
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"2 of 2 inputs written to .* in \d+\.\d s, \d+\.\d\d images/s \(3 of them video frames\) \(",
                    last), last


def test_a_video_without_pyav_is_said_before_the_images_run(checkpoint, tmp_path, capsys, monkeypatch) -> None:
    """A core install: every image was predicted first, then "video needs PyAV" naming no video, exit 1."""
    import importlib.util

    from pspnet.cli import predict as predict_cli

    write_image(tmp_path / "a.png")
    clip = write_video(tmp_path / "clip.mp4", 4)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    monkeypatch.setattr(predict_cli, "backend_forward", None)  # the network is never loaded
    assert main(["predict", str(checkpoint), str(tmp_path / "a.png"), str(clip), "--out", str(tmp_path / "o"),
                 *TINY]) == 2
    assert capsys.readouterr().err.endswith(f"pspnet predict: error: {clip}: a video, which needs PyAV: pip install "
                                            "'pspnet[video]'\n")


def test_a_phones_3gp_video_in_a_folder_is_predicted_as_a_video(checkpoint, tmp_path, capsys) -> None:
    """.3gp, .ts, .wmv, ... are what FFmpeg reads; they were left out of folders, and named alone read as images."""
    (tmp_path / "in").mkdir()
    shutil.copy(write_video(tmp_path / "clip.mp4", 2), tmp_path / "in" / "phone.3gp")  # an MP4 inside, as phones do
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "o"), *TINY]) == 0
    assert len(video_frames(tmp_path / "o" / "overlay" / "phone.mp4")) == 2
    assert f"{tmp_path / 'in' / 'phone.3gp'}: 2 frames → " in capsys.readouterr().err


def test_a_video_cut_short_is_said_and_fails_the_run(checkpoint, tmp_path, capsys) -> None:
    """A truncated AVI whose header declares 6 frames decoded 2, and the run said '2 frames' and exited 0."""
    rng = np.random.default_rng(0)
    whole = videos.write_video(tmp_path / "six.avi", [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
                                                       for _ in range(6)], container="avi")
    cut = tmp_path / "in" / "cut.avi"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) * 6 // 10])
    assert main(["predict", str(checkpoint), str(cut), "--out", str(tmp_path / "o"), *TINY]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(cut))}: decoded [1-5] of the 6 frames its container declares \(a truncated or "
                     r"damaged file\?\); its outputs hold those", err), err
    assert main(["predict", str(checkpoint), str(whole), "--out", str(tmp_path / "o2"), *TINY]) == 0


def test_a_videos_frame_folder_meets_no_other_inputs_file_and_skip_existing_counts_its_frames(checkpoint, tmp_path,
                                                                                                capsys) -> None:
    """tree/a.mp4 writes its label frames to OUT/a/000000.png, where the image tree/a/000000.png's label map went:
    one replaced the other without a word. And --skip-existing took any OUT/a/ folder for a finished video."""
    write_image(tmp_path / "tree" / "a" / "000000.png")
    write_video(tmp_path / "tree" / "a.mp4", 2)
    out = tmp_path / "o"
    run = ["predict", str(checkpoint), str(tmp_path / "tree"), "--recursive", "--out", str(out), "--outputs",
           "labels", *TINY]
    assert main(run) == 1
    assert (f"{tmp_path / 'tree' / 'a' / '000000.png'}: {tmp_path / 'tree' / 'a.mp4'} already writes {out / 'a'}; "
            "rename one of them") in capsys.readouterr().err
    assert sorted(p.name for p in (out / "a").iterdir()) == ["000000.png", "000001.png"]  # the video's two frames
    (out / "a" / "000001.png").unlink()  # a frame lost: the video is not finished
    (tmp_path / "tree" / "a" / "000000.png").unlink()
    (tmp_path / "tree" / "a").rmdir()
    assert main([*run, "--skip-existing"]) == 0
    assert "nothing left to predict" not in capsys.readouterr().err
    assert sorted(p.name for p in (out / "a").iterdir()) == ["000000.png", "000001.png"]


def test_predict_video_writes_its_colour_video_and_label_and_confidence_frames_when_asked(checkpoint, tmp_path):
    """Each frame's label PNG is the prediction of that frame as an image; an --overwrite run of a shorter video
    leaves none of the earlier run's frames; without --overwrite the frame folder is refused."""
    src = write_video(tmp_path / "clip.mp4", 5)
    out = tmp_path / "o"
    kinds = ["labels", "color", "overlay", "confidence"]
    assert main(["predict", str(checkpoint), str(src), "--out", str(out), "--outputs", *kinds, "--backend", "torch",
                 *TINY]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        *(f"clip/{i:06d}.png" for i in range(5)), "color/clip.mp4", *(f"confidence/clip/{i:06d}.png" for i in range(5)),
        "overlay/clip.mp4"]
    assert len(video_frames(out / "color" / "clip.mp4")) == len(video_frames(out / "overlay" / "clip.mp4")) == 5
    model = pspnet.load(checkpoint)
    settings = engine_predict.InferenceSettings(base_size=None, crop_size=(33, 33))
    for i, frame in enumerate(engine_predict.read_video_frames(src)):
        assert np.array_equal(np.asarray(Image.open(out / "clip" / f"{i:06d}.png")),
                              pspnet.predict(model, frame, settings))
    assert Image.open(out / "confidence" / "clip" / "000000.png").mode == "L"

    write_video(src, 3)
    again = ["predict", str(checkpoint), str(src), "--out", str(out), "--outputs", "labels", *TINY]
    assert main(again) == 2  # the folder of the earlier run's frames
    assert main([*again, "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"{i:06d}.png" for i in range(3)]


def test_a_portrait_phone_video_is_segmented_and_written_upright(checkpoint, tmp_path) -> None:
    """A phone stores a portrait video sideways with a display matrix saying "turn it a quarter clockwise"; the
    network must see it upright (as a viewer shows it, like an EXIF-rotated photo), and so must the output."""
    av = pytest.importorskip("av")
    sideways = tmp_path / "stored.mp4"
    with av.open(str(sideways), "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        frame = np.zeros((32, 48, 3), dtype=np.uint8)
        frame[:16, :16] = 255  # a white block at the stored top-left: the upright top-right
        for p in [*s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")), *s.encode()]:
            c.mux(p)
    data = bytearray(sideways.read_bytes())
    matrix = data.index(b"tkhd") + 44  # tkhd version 0: the 3×3 matrix after 40 bytes of fields (ISO/IEC 14496-12)
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 32 << 16, 0, 1 << 30)
    portrait = tmp_path / "portrait.mp4"
    portrait.write_bytes(bytes(data))
    upright = engine_predict.read_video_frames(portrait)
    first = next(upright)
    assert first.shape == (48, 32, 3) and first[:16, 16:].min() > 200 and first[:16, :16].max() < 50

    assert main(["predict", str(checkpoint), str(portrait), "--out", str(tmp_path / "o"), *TINY]) == 0
    written = video_frames(tmp_path / "o" / "overlay" / "portrait.mp4")[0]
    assert (written.height, written.width, written.rotation) == (48, 32, 0)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_video_that_stops_half_way_leaves_no_partial_file_and_keeps_the_earlier_one(checkpoint, tmp_path, capsys,
                                                                                      monkeypatch, failure) -> None:
    # 16 steps of 4 frames, the 15th fails: the encoder (its look-ahead is about 40 frames) has written by then
    src = write_video(tmp_path / "clip.mp4", 64)
    out = tmp_path / "o" / "overlay"
    assert main(["predict", str(checkpoint), str(src), "--out", str(tmp_path / "o"), "--no-flip", *TINY]) == 0
    before = (out / "clip.mp4").read_bytes()
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 15:
            raise failure
        return segment_and_confidence(*args, **kwargs)

    monkeypatch.setattr(engine_predict, "segment_and_confidence", failing)
    command = ["predict", str(checkpoint), str(src), "--out", str(tmp_path / "o"), "--overwrite", "--no-flip", *TINY]
    code = main(command)
    err = capsys.readouterr().err
    if isinstance(failure, KeyboardInterrupt):
        assert code == 130 and err.rstrip().endswith("pspnet predict: interrupted")
    else:
        assert code == 1 and f"{out / 'clip.mp4'}: cannot write the video ([Errno 28] No space left on device)" in err
    assert (out / "clip.mp4").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["clip.mp4"]


def test_sigterm_to_the_process_group_stops_eval_and_its_loader_workers_in_one_line(checkpoint, tmp_path) -> None:
    """As `timeout` and Slurm stop a job: SIGTERM to the whole process group, the data loader's workers too. They
    died of it, and torch's loader said so after the command's own "interrupted": 100 lines of traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    for i in range(1000):
        write_image(tmp_path / "img" / f"{i}.png", 24, 24, seed=i)
        write_label(tmp_path / "lab" / f"{i}.png", 24, 24, seed=i)
    proc = subprocess.Popen([sys.executable, "-m", "pspnet", "eval", str(checkpoint), "--images", str(tmp_path / "img"),
                             "--labels", str(tmp_path / "lab"), "--workers", "2", "--quiet", "--crop-size", "24",
                             "--base-size", "0", "--device", "cpu", "--backend", "torch"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        said = []
        for line in proc.stderr:  # the line before the evaluation starts
            said.append(line)
            if "images; protocol:" in line:
                break
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGTERM)
        err = "".join(said) + proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "pspnet eval: interrupted (SIGTERM)", err


def test_sigterm_stops_predict_as_ctrl_c_does_leaving_no_temporary_file(checkpoint, tmp_path, capsys,
                                                                          monkeypatch) -> None:
    """A scheduler's stop (or torchrun stopping its workers) killed the process on the spot, leaving the video's
    temporary files and staged frame folders in --out for good; it is now an interruption: cleaned up, exit 143."""
    import os
    import signal

    src = write_video(tmp_path / "clip.mp4", 16)
    calls = []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return segment_and_confidence(*args, **kwargs)

    monkeypatch.setattr(engine_predict, "segment_and_confidence", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["predict", str(checkpoint), str(src), "--out", str(tmp_path / "o"), "--outputs", "labels", "color",
                 "overlay", "confidence", "--no-flip", *TINY])
    assert code == 143 and capsys.readouterr().err.rstrip().endswith("pspnet predict: interrupted (SIGTERM)")
    assert [p for p in (tmp_path / "o").rglob("*") if p.is_file() or p.name.startswith(".")] == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_video_that_stops_half_way_keeps_the_earlier_runs_frames_as_they_were(checkpoint, tmp_path, capsys,
                                                                                 monkeypatch) -> None:
    """The label and confidence frames go to a temporary folder moved into place at the end: a run that fails at its
    3rd of 4 steps leaves the earlier run's frames (written with other label values) byte for byte, and no
    temporary folder."""
    src = write_video(tmp_path / "clip.mp4", 16)
    out = tmp_path / "o"
    outputs = ["--outputs", "labels", "confidence", "--backend", "torch", "--no-flip", *TINY]
    assert main(["predict", str(checkpoint), str(src), "--out", str(out), *outputs, "--label-values", "7", "8",
                 "9"]) == 0
    files = lambda: {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))  # noqa: E731
                     if p.is_file()}
    before = files()
    assert len(before) == 32
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return segment_and_confidence(*args, **kwargs)

    monkeypatch.setattr(engine_predict, "segment_and_confidence", failing)
    capsys.readouterr()
    assert main(["predict", str(checkpoint), str(src), "--out", str(out), *outputs, "--overwrite"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert files() == before
    assert sorted(p.name for p in out.rglob(".*")) == []  # no temporary folder left


def test_eval_then_score_give_the_same_numbers(checkpoint, tmp_path) -> None:
    for i in range(3):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--out", str(tmp_path / "ev"), "--save-predictions", "--workers", "0", *TINY])
    assert code == 0
    ev = json.loads((tmp_path / "ev" / "scores.json").read_text())
    assert ev["images"] == 3 and ev["classes"] == ["a", "b", "c"] and len(ev["confusion_matrix"]) == 3
    assert main(["score", "--pred", str(tmp_path / "ev"), "--gt", str(tmp_path / "lab"),
                 "--num-classes", "3", "--json", str(tmp_path / "score.json")]) == 0
    sc = json.loads((tmp_path / "score.json").read_text())
    assert sc["mIoU"] == pytest.approx(ev["mIoU"]) and sc["IoU"] == pytest.approx(ev["IoU"])
    assert set(sc) >= {"mIoU", "mAcc", "allAcc", "IoU", "Acc"}
    # Each image's own scores: the same from both (score names the classes class_0.. without a --config), one row
    # per image, the worst first, each row that image's.
    assert main(["score", "--pred", str(tmp_path / "ev"), "--gt", str(tmp_path / "lab"), "--num-classes", "3",
                 "--per-image", str(tmp_path / "per_image.csv")]) == 0
    table = (tmp_path / "ev" / "per_image.csv").read_text()
    named = table
    for i, name in enumerate("abc"):
        named = re.sub(rf"\b{name} ->", f"class_{i} ->", re.sub(rf"-> {name},", f"-> class_{i},", named))
    assert named == (tmp_path / "per_image.csv").read_text()
    rows = list(csv.DictReader(table.splitlines()))
    assert sorted(r["name"] for r in rows) == ["s0", "s1", "s2"]
    assert [float(r["mIoU"]) for r in rows] == sorted(float(r["mIoU"]) for r in rows)
    for row in rows:
        pred = np.asarray(Image.open(tmp_path / "ev" / f"{row['name']}.png")).astype(np.int64)
        gt = np.asarray(Image.open(tmp_path / "lab" / f"{row['name']}.png")).astype(np.int64)
        keep = gt != 255
        matrix = np.bincount(gt[keep] * 3 + pred[keep], minlength=9).reshape(3, 3)
        own = scores_from_matrix(torch.from_numpy(matrix))
        assert float(row["mIoU"]) == pytest.approx(own.miou, abs=1e-4)
        assert float(row["allAcc"]) == pytest.approx(own.allacc, abs=1e-4) and int(row["labelled_pixels"]) == keep.sum()


def test_eval_report_without_matplotlib_is_said_before_the_network_runs(checkpoint, tmp_path, capsys,
                                                                         monkeypatch) -> None:
    """A core install: the evaluation ran to its end (the JSON written), then exit 2 for want of matplotlib."""
    import importlib.util

    from pspnet.cli import eval as eval_cli

    write_image(tmp_path / "img" / "a.png")
    write_label(tmp_path / "lab" / "a.png")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(eval_cli, "backend_forward", None)  # the network is never loaded
    assert main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--report", str(tmp_path / "rep"), "--json", str(tmp_path / "e.json"), *TINY]) == 2
    assert capsys.readouterr().err.endswith("pspnet eval: error: --report needs matplotlib: pip install "
                                            "'pspnet[report]'\n")
    assert not (tmp_path / "e.json").exists()


def test_a_file_name_that_is_no_utf8_is_written_back_as_its_bytes(checkpoint, tmp_path) -> None:
    """Latin-1 names (an old archive, a Samba share) reach Python as surrogates: eval --out stopped with a
    UnicodeEncodeError before scores.json, score --per-image too, the report's chart refused the title."""
    import os

    name = os.fsdecode(b"caf\xe9")
    write_image(tmp_path / "img" / f"{name}.png")
    write_label(tmp_path / "lab" / f"{name}.png")
    assert main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--out", str(tmp_path / "o"), "--save-predictions", "--report", str(tmp_path / "rep"), *TINY]) == 0
    assert (tmp_path / "o" / "scores.json").is_file() and (tmp_path / "rep" / "index.html").is_file()
    assert b"caf\xe9," in (tmp_path / "o" / "per_image.csv").read_bytes()
    assert main(["score", "--pred", str(tmp_path / "o"), "--gt", str(tmp_path / "lab"), "--num-classes", "3",
                 "--per-image", str(tmp_path / "pi.csv")]) == 0
    assert b"caf\xe9," in (tmp_path / "pi.csv").read_bytes()


def test_eval_pairs_images_with_labels_named_by_a_suffix(checkpoint, tmp_path, capsys) -> None:
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.jpg", seed=i)
        write_label(tmp_path / "lab" / f"s{i}_mask.png", seed=i)
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--label-suffix", "_mask.png", "--workers", "0", *TINY])
    assert code == 0 and "2 of 2 images scored" in capsys.readouterr().out


def test_eval_report_writes_charts_and_index(checkpoint, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    write_image(tmp_path / "img" / "s.png")
    write_label(tmp_path / "lab" / "s.png")
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"")
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--report", str(tmp_path / "rep"), "--workers", "0", *TINY])
    assert code == 1  # the broken image is reported, the other one scored
    for name in ("iou.png", "confusion.png", "samples.png", "worst.png", "index.html"):
        assert (tmp_path / "rep" / name).is_file()


def city_tree(root: Path) -> list[str]:
    """Cityscapes' layout: a folder per city, plus an image at the top and a hidden folder; returns the names."""
    names = ["aachen/a_0", "aachen/a_1", "bonn/b_0", "top"]
    for i, name in enumerate(names):
        write_image(root / f"{name}.png", seed=i)
    write_image(root / ".cache" / "thumb.png")
    return names


def test_predict_recursive_mirrors_a_folders_tree_and_leaves_out_its_own_outputs(checkpoint, tmp_path, capsys):
    """`--recursive` takes the subfolders' images and writes each one's outputs at its path in the tree; an --out
    inside the tree is left out, so running it again predicts the same images, not the last run's outputs."""
    names = city_tree(tmp_path / "val")
    out = tmp_path / "val" / "pred"
    args = ["predict", str(checkpoint), str(tmp_path / "val"), "--recursive", "--out", str(out), *TINY]
    assert main(args) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(
        f"{kind}{name}.png" for name in names for kind in ("", "color/", "overlay/"))
    first = {p: p.read_bytes() for p in out.rglob("*.png")}
    assert main([*args, "--overwrite"]) == 0
    assert "4 of 4 inputs written" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == first
    single = tmp_path / "single"  # the same image alone gives the same labels
    assert main(["predict", str(checkpoint), str(tmp_path / "val" / "bonn" / "b_0.png"), "--out", str(single),
                 *TINY]) == 0
    assert (single / "b_0.png").read_bytes() == (out / "bonn" / "b_0.png").read_bytes()


def test_predict_without_recursive_says_which_subfolders_it_left_out(checkpoint, tmp_path, capsys):
    city_tree(tmp_path / "val")
    assert main(["predict", str(checkpoint), str(tmp_path / "val"), "--out", str(tmp_path / "o"), *TINY]) == 0
    assert (f"{tmp_path / 'val'}: left out 2 subfolder(s) holding images or videos (aachen, bonn; --recursive takes "
            "a folder's whole tree)") in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["top.png"]
    (tmp_path / "val" / "top.png").unlink()
    code = main(["predict", str(checkpoint), str(tmp_path / "val"), "--out", str(tmp_path / "o2"), *TINY])
    err = capsys.readouterr().err
    assert code == 1 and (f"{tmp_path / 'val'}: folder holds no image or video files (its subfolders aachen, bonn "
                          "do: --recursive takes a folder's whole tree)") in err
    assert "no input to predict (1 problem(s) above)" in err and not (tmp_path / "o2").exists()


def test_predict_recursive_refuses_an_input_whose_outputs_another_writes(checkpoint, tmp_path, capsys):
    """A subfolder named color/ holds an image whose label map would be the colour map of the image at the top."""
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "color" / "a.png", seed=1)
    code = main(["predict", str(checkpoint), str(tmp_path / "in"), "--recursive", "--out", str(tmp_path / "o"),
                 *TINY])
    err = capsys.readouterr().err
    assert code == 1 and (f"{tmp_path / 'in' / 'color' / 'a.png'}: {tmp_path / 'in' / 'a.png'} already writes "
                          f"{tmp_path / 'o' / 'color' / 'a.png'}; rename one of them") in err
    assert (tmp_path / "o" / "a.png").is_file() and not (tmp_path / "o" / "color" / "color").exists()
    assert "1 of 2 inputs written to" in err and "1 input(s) failed" in err  # the refused input counted in both


def test_score_recursive_pairs_the_trees_that_predict_recursive_writes(checkpoint, tmp_path, capsys):
    names = city_tree(tmp_path / "val")
    for i, name in enumerate(names):
        write_label(tmp_path / "gt" / f"{name}.png", seed=i)
    out = tmp_path / "pred"
    assert main(["predict", str(checkpoint), str(tmp_path / "val"), "--recursive", "--out", str(out), *TINY]) == 0
    gt = tmp_path / "gt"
    assert main(["score", "--pred", str(out), "--gt", str(gt), "--num-classes", "3"]) == 0  # top.png alone
    assert (f"{gt}: left out 2 subfolder(s) holding labels (aachen, bonn; --recursive pairs the folders' trees)"
            in capsys.readouterr().err)
    code = main(["score", "--pred", str(out), "--gt", str(gt), "--num-classes", "3", "--recursive",
                 "--json", str(tmp_path / "s.json")])
    assert code == 0 and "4 of 4 ground-truth files scored" in capsys.readouterr().out  # color/, overlay/ left out
    flat = tmp_path / "flat"  # the same pairs, flat, score the same
    for name in names:
        for side, folder in (("pred", out), ("gt", gt)):
            (flat / side).mkdir(parents=True, exist_ok=True)
            (flat / side / f"{name.replace('/', '_')}.png").write_bytes((folder / f"{name}.png").read_bytes())
    assert main(["score", "--pred", str(flat / "pred"), "--gt", str(flat / "gt"), "--num-classes", "3",
                 "--json", str(tmp_path / "f.json")]) == 0
    nested, plain = (json.loads((tmp_path / f).read_text()) for f in ("s.json", "f.json"))
    assert nested["mIoU"] == plain["mIoU"] and nested["confusion_matrix"] == plain["confusion_matrix"]
    for name in ("top", "aachen/a_0", "aachen/a_1"):  # bonn/b_0 alone is left
        (gt / f"{name}.png").unlink()
    code = main(["score", "--pred", str(out), "--gt", str(gt), "--num-classes", "3"])
    assert code == 2 and (f"{gt}: holds no label PNGs (its subfolders bonn do: --recursive pairs the folders' trees)"
                          in capsys.readouterr().err)


def test_score_names_a_file_whose_size_differs(tmp_path, capsys) -> None:
    write_label(tmp_path / "gt" / "x.png")
    write_label(tmp_path / "gt" / "y.png")
    write_label(tmp_path / "pred" / "x.png", 10, 10)
    write_label(tmp_path / "pred" / "y.png")
    code = main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"])
    err = capsys.readouterr().err
    assert code != 0 and f"{tmp_path / 'pred' / 'x.png'}: prediction is 10×10" in err


@pytest.mark.parametrize("option", ["--json", "--per-image"])
@pytest.mark.parametrize("victim", ["gt", "pred"])
def test_score_never_writes_its_report_over_an_input_even_with_overwrite(tmp_path, capsys, option, victim) -> None:
    write_label(tmp_path / "gt" / "x.png")
    write_label(tmp_path / "pred" / "x.png", seed=1)
    target = tmp_path / victim / "x.png"
    before = target.read_bytes()
    code = main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3",
                 option, str(target), "--overwrite"])
    assert code == 2 and target.read_bytes() == before
    assert f"{option}: the output {target} would replace an input of this run; choose another file" in (
        capsys.readouterr().err)


def test_eval_never_writes_its_json_over_an_input_even_with_overwrite(checkpoint, tmp_path, capsys) -> None:
    image = write_image(tmp_path / "img" / "s0.png")
    label = write_label(tmp_path / "lab" / "s0.png")
    for target in (image, label):
        before = target.read_bytes()
        code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                     "--json", str(target), "--overwrite", "--workers", "0", *TINY])
        assert code == 2 and target.read_bytes() == before
        assert f"--json: the output {target} would replace an input of this run" in capsys.readouterr().err


def test_score_names_a_missing_counterpart(tmp_path, capsys) -> None:
    write_label(tmp_path / "gt" / "x.png")
    write_label(tmp_path / "gt" / "y.png")
    write_label(tmp_path / "pred" / "x.png")
    code = main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"])
    err = capsys.readouterr().err
    assert code != 0 and f"{tmp_path / 'gt' / 'y.png'}: no prediction" in err


def test_score_of_a_few_predictions_names_five_missing_ones_and_json_lists_them_all(tmp_path, capsys) -> None:
    """A prediction folder of a few images scored against a whole split: five missing files named, the count of the
    rest, every one of them in --json's failures; the same for predictions without ground truth."""
    for i in range(9):
        write_label(tmp_path / "gt" / f"{i}.png", seed=i)
    write_label(tmp_path / "pred" / "0.png", seed=0)
    command = ["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]
    assert main(command) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[2] for line in err[:5]] == ["no prediction " + str(tmp_path / "pred" / f"{i}.png")
                                                         for i in range(1, 6)]
    assert err[5] == (f"pspnet score: ... and 3 more ground-truth files without a prediction in {tmp_path / 'pred'} "
                      "(8 in all; --json FILE lists them)")
    assert main([*command, "--json", str(tmp_path / "s.json")]) == 1
    assert "--json FILE lists them" not in capsys.readouterr().err
    assert len(json.loads((tmp_path / "s.json").read_text())["failures"]) == 8
    # the other way round: predictions of a whole split scored against the ground truth of a few images
    assert main(["score", "--pred", str(tmp_path / "gt"), "--gt", str(tmp_path / "pred"), "--num-classes", "3"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7 and err[0].endswith(f"no ground truth 1.png in {tmp_path / 'pred'}")
    assert err[5] == (f"pspnet score: ... and 3 more predictions without a ground truth in {tmp_path / 'pred'} (8 in "
                      "all; --json FILE lists them)")


def test_colour_coded_ground_truth_is_summarised_then_read_through_label_colors_given_on_the_command_line(
        checkpoint, tmp_path, capsys, monkeypatch) -> None:
    """Ground truth saved in colours (what a colour map looks like) fails file by file: five named, the count of the
    rest, and no table of n/a when nothing was scored, in score and in eval; `data.label_colors=[[...], ...]` on the
    command line, without a config, reads it."""
    palette = [list(c) for c in pspnet.load(checkpoint).info.palette]  # drawn in the model's own class colours
    for i in range(7):
        labels = np.random.default_rng(i).integers(0, 3, (33, 45), dtype=np.uint8)
        Image.fromarray(labels).save(write_label(tmp_path / "pred" / f"{i}.png"))
        Image.fromarray(np.array(palette, np.uint8)[labels]).save(write_label(tmp_path / "gt" / f"{i}.png"))
        write_image(tmp_path / "img" / f"{i}.png", seed=i)
    command = ["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]
    assert main(command) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert all("a colour-coded label" in line for line in lines[:5])
    assert lines[5] == "pspnet score: ... and 2 more pairs not scored (7 in all; --json FILE lists them)"
    assert out == "0 of 7 ground-truth files scored\n"  # no table of n/a
    colors = "data.label_colors=" + str(palette).replace(" ", "")
    assert main([*command, colors, "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["mIoU"] == 1.0
    # eval reads the first labels before it evaluates: all of them in colours, it stops at once, naming the
    # model's own colours where they are those.
    evaluate = ["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "gt"),
                "--workers", "0", "--backend", "torch", *TINY]
    capsys.readouterr()

    def no_evaluation(*args, **kwargs):
        raise AssertionError("the network ran on labels that cannot be scored")

    monkeypatch.setattr("pspnet.cli.eval.evaluate", no_evaluation)
    assert main(evaluate) == 2
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert err.endswith(f"(the next 2 labels too); its colours are the model's class colours: {colors} reads them; "
                        "nothing was evaluated\n"), err
    assert f"error: {tmp_path / 'gt' / '0.png'}: a colour-coded label" in err and "mIoU" not in out
    assert main([*evaluate, colors]) == 0
    assert "7 of 7 images scored" in capsys.readouterr().out
    # One label that reads among them: the evaluation runs, and skips the others, five named, then a count.
    Image.open(tmp_path / "pred" / "0.png").save(tmp_path / "gt" / "0.png")
    assert main(evaluate) == 1
    out, err = capsys.readouterr()
    assert err.count("pspnet eval: skipped ") == 5 and "pspnet eval: ... and 1 more images skipped (6 in all" in err
    assert "1 of 7 images scored" in out and "mIoU" in out


def test_ground_truth_with_a_void_value_of_its_own_gets_a_note_naming_the_setting_that_ignores_it(tmp_path,
                                                                                                 capsys) -> None:
    """SegNet's CamVid marks unlabelled pixels 11: score names the value once and how to ignore it, --ignore-index
    where no pixel is 255, else data.ignore_values (which keeps 255 ignored too), on the command line or in a data
    config."""
    rng = np.random.default_rng(0)
    for i in range(2):
        values = rng.integers(0, 3, (6, 8), dtype=np.uint8)
        Image.fromarray(values).save(write_label(tmp_path / "pred" / f"{i}.png"))
        values[1, :4] = 11
        Image.fromarray(values).save(write_label(tmp_path / "gt" / f"{i}.png"))
    command = ["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.count("pspnet score: note: ground-truth value 11 is no class (0..2) and not the ignore index 255: if it "
                     "marks unlabelled pixels, --ignore-index 11; if it is a class, raise --num-classes\n") == 1
    assert main([*command, "--ignore-index", "11"]) == 0
    assert "2 of 2 ground-truth files scored" in capsys.readouterr().out
    gt = np.array(Image.open(tmp_path / "gt" / "1.png"))
    gt[0, 0] = 255  # unlabelled pixels of both kinds: --ignore-index cannot name both
    Image.fromarray(gt).save(tmp_path / "gt" / "1.png")
    assert main(command) == 1
    assert ("if it marks unlabelled pixels, data.ignore_values=[11]; if it is a class, raise --num-classes\n"
            ) in capsys.readouterr().err
    assert main([*command, "data.ignore_values=[11]", "--json", str(tmp_path / "s.json")]) == 0  # 11 and 255 ignored
    assert np.sum(json.loads((tmp_path / "s.json").read_text())["confusion_matrix"]) == 2 * (6 * 8 - 4) - 1
    config = tmp_path / "data.yaml"
    config.write_text(f"dataset: folders\nroot: {tmp_path}\nnum_classes: 3\n")
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--config", str(config)]) == 1
    assert (f"if it marks unlabelled pixels, data.ignore_values: [11] in {config}; if it is a class, raise "
            "data.num_classes\n") in capsys.readouterr().err
    config.write_text(config.read_text() + "ignore_values: [11]\n")
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--config", str(config)]) == 0


def test_score_pairs_cityscapes_names_by_their_suffixes_and_says_so_when_nothing_pairs(tmp_path, capsys) -> None:
    """Cityscapes' layout: predictions NAME_leftImg8bit.png (as `predict --recursive` names them from the images),
    ground truth NAME_gtFine_labelTrainIds.png beside NAME_gtFine_color.png and others, one folder per city."""
    for i, name in enumerate(["aachen_000000_000019", "aachen_000001_000019"]):
        write_label(tmp_path / "pred" / "aachen" / f"{name}_leftImg8bit.png", seed=i)
        write_label(tmp_path / "gt" / "aachen" / f"{name}_gtFine_labelTrainIds.png", seed=i)
        write_label(tmp_path / "gt" / "aachen" / f"{name}_gtFine_labelIds.png", seed=i + 5)  # other values
        write_label(tmp_path / "gt" / "aachen" / f"{name}_gtFine_color.png", seed=i + 7)
    command = ["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3",
               "--recursive", "--json", str(tmp_path / "s.json")]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "share no file names (2 prediction(s), e.g. aachen/aachen_000000_000019_" \
        "leftImg8bit.png; 6 ground-truth file(s)" in err, err
    assert err.endswith("--pred-suffix _leftImg8bit.png with --gt-suffix _gtFine_labelTrainIds.png pairs them"), err
    assert main([*command, "--pred-suffix", "_leftImg8bit.png", "--gt-suffix", "_gtFine_labelTrainIds.png"]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["images"] == 2 and scores["mIoU"] == 1.0 and not scores["failures"]  # each with its own copy
    for i in range(2):  # two codings of the ground truth, neither Cityscapes' train ids: both named
        for kind in ("a", "b"):
            write_label(tmp_path / "gt2" / f"s{i}_{kind}.png", seed=i)
        write_label(tmp_path / "pred2" / f"s{i}_pred.png", seed=i)
    assert main(["score", "--pred", str(tmp_path / "pred2"), "--gt", str(tmp_path / "gt2"), "--num-classes", "3"]) == 2
    assert capsys.readouterr().err.strip().endswith("--pred-suffix _pred.png with --gt-suffix one of _a.png, _b.png "
                                                    "pairs them")
    for extra, expected in ((["--gt-suffix", "_gtFine_x.png"], "holds no label PNGs named *_gtFine_x.png"),
                            (["--pred-suffix", "_x.png"], "holds no label files named *_x.png")):
        assert main([*command, *extra, "--overwrite"]) == 2
        assert expected in capsys.readouterr().err


def test_score_given_jpeg_labels_says_why_they_cannot_be_scored(tmp_path, capsys) -> None:
    write_label(tmp_path / "png" / "x.png")
    (tmp_path / "jpg").mkdir()
    Image.open(tmp_path / "png" / "x.png").save(tmp_path / "jpg" / "x.jpg")
    for pred, gt, side in (("jpg", "png", "--pred " + str(tmp_path / "jpg") + ": holds no label files"),
                           ("png", "jpg", str(tmp_path / "jpg") + ": holds no label PNGs")):
        assert main(["score", "--pred", str(tmp_path / pred), "--gt", str(tmp_path / gt), "--num-classes", "3"]) == 2
        err = capsys.readouterr().err.strip()
        assert side in err and err.endswith("; it holds 1 lossy file(s) (x.jpg, …): lossy compression changes class "
                                            "values (and colours) along every boundary, so labels must be lossless: "
                                            "save them as PNG from the program that drew them (converting the file "
                                            "keeps the damage)"), err


def test_score_without_a_shared_name_is_one_line_without_a_false_hint(tmp_path, capsys) -> None:
    """Names of one sequence share a prefix (CamVid's 0016E5_07959 and 0016E5_07961): no suffix pairs them."""
    write_label(tmp_path / "pred" / "0016E5_07959.png")
    for frame in ("07961", "07963"):
        write_label(tmp_path / "gt" / f"0016E5_{frame}.png")
    assert main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("share no file names (1 prediction(s), e.g. 0016E5_07959.png;"
                                                       " 2 ground-truth file(s), e.g. 0016E5_07961.png); a prediction "
                                                       "pairs with the ground-truth file of its name"), err
    (tmp_path / "empty").mkdir()
    assert main(["score", "--pred", str(tmp_path / "empty"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]) == 2
    assert "--pred " + str(tmp_path / "empty") + ": holds no label files (`pspnet predict --out" in \
        capsys.readouterr().err


def test_eval_with_a_label_folder_of_none_of_the_images_says_so_before_evaluating(checkpoint, tmp_path,
                                                                                  capsys) -> None:
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}_mask.png", seed=i)
        write_label(tmp_path / "other" / f"t{i}.png", seed=i)
    base = ["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--workers", "0", *TINY]
    for labels, expected in (("other", "an image NAME.* is paired with the label NAME.png at the same path"),
                             ("lab", "its labels are named NAME_mask.png: --label-suffix _mask.png")):
        assert main([*base, "--labels", str(tmp_path / labels)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"pspnet eval: error: --labels {tmp_path / labels}: holds the label of none of the "
                                  f"2 images of --images {tmp_path / 'img'} (the first, s0.png, would be "
                                  f"{tmp_path / labels / 's0.png'})") and err[-1].endswith(expected), err
        assert not any("skipped" in line or line.startswith("network:") for line in err)  # said before loading
    assert main([*base, "--labels", str(tmp_path / "lab"), "--label-suffix", "_mask.png"]) == 0


def test_eval_whose_first_images_are_unreadable_scores_the_rest(checkpoint, tmp_path, capsys) -> None:
    """The early check that none of the first labels reads (labels in colours: nothing would score) reads labels
    alone: three unreadable images first in the folder skip those three, named, and the rest is scored."""
    for i in range(3):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / f"a{i}.jpg").write_bytes(b"not a jpeg")
        write_label(tmp_path / "lab" / f"a{i}.png", seed=i)
    write_image(tmp_path / "img" / "b.png")
    write_label(tmp_path / "lab" / "b.png")
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", "--backend", "torch", *TINY])
    captured = capsys.readouterr()
    assert code == 1 and "nothing was evaluated" not in captured.err and "1 of 4 images scored" in captured.out
    for i in range(3):
        assert f"{tmp_path / 'img' / f'a{i}.jpg'}: cannot read it as an image" in captured.err


def test_eval_names_the_labels_it_leaves_out_for_want_of_their_image(checkpoint, tmp_path, capsys) -> None:
    """A copy of the images that stopped short, or files written into the label folder: the labels without an image
    are named in a note before the model loads (never skipped silently), with --images/--labels as with a config."""
    for i in range(5):
        if i < 2:
            write_image(tmp_path / "data" / "images" / "val" / f"s{i}.png", seed=i)
        write_label(tmp_path / "data" / "labels" / "val" / f"s{i}.png", seed=i)
    (tmp_path / "data" / "labels" / "val" / "notes.txt").write_text("not a label")
    labels = tmp_path / "data" / "labels" / "val"
    note = (f"pspnet eval: note: {labels}: 3 label(s) without an image of the same name, left out (s2.png, s3.png, "
            "s4.png); an image NAME.* is paired with the label NAME.png")
    base = ["eval", str(checkpoint), "--workers", "0", "--backend", "torch", *TINY]
    assert main([*base, "--images", str(tmp_path / "data" / "images" / "val"), "--labels", str(labels)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err.count(note) == 1 and err.index(note) < min(i for i, line in enumerate(err) if "network" in line)
    (tmp_path / "c.yaml").write_text(f"data: {{dataset: folders, root: {tmp_path / 'data'}, num_classes: 3}}\n")
    assert main([*base, "--config", str(tmp_path / "c.yaml")]) == 0
    assert capsys.readouterr().err.splitlines().count(note) == 1
    for i in range(2, 5):
        write_image(tmp_path / "data" / "images" / "val" / f"s{i}.png", seed=i)
    assert main([*base, "--images", str(tmp_path / "data" / "images" / "val"), "--labels", str(labels)]) == 0
    assert "note" not in capsys.readouterr().err


def test_eval_list_paths_are_relative_to_the_lists_folder_and_a_wrong_root_is_said_at_once(checkpoint, tmp_path,
                                                                                             capsys) -> None:
    """As `predict` reads lists and as `data prepare` writes them (data/camvid/val.txt: images/val/NAME.png)."""
    for i in range(2):
        write_image(tmp_path / "d" / "images" / f"s{i}.png", seed=i)
        write_label(tmp_path / "d" / "labels" / f"s{i}.png", seed=i)
    (tmp_path / "d" / "val.txt").write_text("".join(f"images/s{i}.png labels/s{i}.png\n" for i in range(2)))
    base = ["eval", str(checkpoint), "--workers", "0", "--backend", "torch", *TINY]
    assert main([*base, "--list", str(tmp_path / "d" / "val.txt"), "--json", str(tmp_path / "a.json")]) == 0
    assert main([*base, "--images", str(tmp_path / "d" / "images"), "--labels", str(tmp_path / "d" / "labels"),
                 "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["images"] == 2 and a["confusion_matrix"] == b["confusion_matrix"]
    capsys.readouterr()
    assert main([*base, "--list", str(tmp_path / "d" / "val.txt"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pspnet eval: error: {tmp_path / 'd' / 'val.txt'}: none of its 2 images is there (the first would "
                   f"be {tmp_path / 'images' / 's0.png'}); its paths are taken relative to --root {tmp_path}: --root "
                   "DIR names another"], err  # before the network loads: no other line


def test_eval_config_data_mistakes_are_said_before_the_network_loads(checkpoint, tmp_path, capsys) -> None:
    config = tmp_path / "data.yaml"
    config.write_text(f"data: {{dataset: lists, root: {tmp_path}, num_classes: 3, val_list: val.txt}}\n")
    assert main(["eval", str(checkpoint), "--config", str(config), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pspnet eval: error: {tmp_path / 'val.txt'}: no such list file"), err


def test_eval_without_data_names_the_config_of_the_run_that_trained_the_model(checkpoint, tmp_path, capsys) -> None:
    run = tmp_path / "runs" / "mine"
    (run / "checkpoints").mkdir(parents=True)
    for path in (run / "best.safetensors", run / "checkpoints" / "iter_0000004.pt"):
        shutil.copy(checkpoint, path)
    expected = ("name the data with exactly one of --config, --images/--labels, --list (got none)")
    assert main(["eval", str(checkpoint)]) == 2  # no run around it: no hint
    assert capsys.readouterr().err.strip() == f"pspnet eval: error: {expected}"
    (run / "config.yaml").write_text("data: {dataset: folders, root: d, num_classes: 3}\n")
    for path in (run / "best.safetensors", run / "checkpoints" / "iter_0000004.pt"):
        assert main(["eval", str(path)]) == 2
        assert capsys.readouterr().err.strip() == (f"pspnet eval: error: {expected}; --config {run / 'config.yaml'} "
                                                   "scores the validation split of the run that trained it")
    # The config given where the model goes: the command that was meant.
    assert main(["eval", str(run / "config.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pspnet eval: error: {run / 'config.yaml'}: a config file where the model goes; `pspnet eval {run}` "
        "evaluates the run's best model on this config's validation split")
    other, listing = tmp_path / "camvid.yml", tmp_path / "val.txt"
    other.write_text("data: {dataset: folders, root: d, num_classes: 3}\n")
    listing.write_text("a.png a_label.png\n")
    for data, what, option in ((other, "a config file", "--config"), (listing, "a list file", "--list")):
        assert main(["eval", str(data), str(checkpoint)]) == 2
        assert capsys.readouterr().err.strip() == (
            f"pspnet eval: error: {data}: {what} where the model goes; the model comes first: pspnet eval "
            f"{checkpoint} {option} {data}")
    write_image(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"pspnet predict: error: {tmp_path / 'a.png'}: an image, not a checkpoint; the model is named first, then the "
        "images")
    assert main(["export", str(other), "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pspnet export: error: {other}: a config file, not a checkpoint (a .safetensors or .pth model, or a "
        "published model's name)")


def test_unknown_crop_size_form_is_a_one_line_error(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "a.png")
    code = main(["predict", str(checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--crop-size", "1", "2", "3"])
    assert code == 2 and "expected N or H W" in capsys.readouterr().err


def test_eval_reads_the_data_settings_of_a_config_file(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "d" / "images" / "val" / "s.png")
    write_label(tmp_path / "d" / "labels" / "val" / "s.png")
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path / 'd'}\n  num_classes: 3\n")
    assert main(["eval", str(checkpoint), "--config", str(config), "--workers", "0", *TINY]) == 0
    assert "1 of 1 images scored" in capsys.readouterr().out


def test_eval_with_a_config_uses_its_val_protocol_and_command_line_options_win(checkpoint, tmp_path) -> None:
    write_image(tmp_path / "d" / "images" / "val" / "s.png")
    write_label(tmp_path / "d" / "labels" / "val" / "s.png")
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  dataset: folders\n  root: {tmp_path / 'd'}\n  num_classes: 3\n"
                      "val:\n  base_size: 40\n  crop_size: [24, 24]\n  mode: whole\n  flip: false\n")
    out = tmp_path / "e.json"
    assert main(["eval", str(checkpoint), "--config", str(config), "--workers", "0", "--json", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert (settings["base_size"], settings["mode"], settings["flip"]) == (40, "whole", False)
    assert main(["eval", str(checkpoint), "--config", str(config), "--workers", "0", "--json", str(out),
                 "--flip", "--base-size", "30", "--overwrite"]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert (settings["base_size"], settings["mode"], settings["flip"]) == (30, "whole", True)


def test_eval_score_and_data_check_take_key_value_overrides_of_their_config(checkpoint, tmp_path, capsys) -> None:
    """`data.root=...` (on either side of the options) and `val.*` as `pspnet train` takes them; the settings alone
    at a file's top level are its data section; other sections, or overrides without --config, are one line."""
    write_image(tmp_path / "d" / "images" / "val" / "s.png")
    write_label(tmp_path / "d" / "labels" / "val" / "s.png")
    nested, flat = tmp_path / "run.yaml", tmp_path / "data.yaml"
    nested.write_text("data:\n  dataset: folders\n  root: /nowhere\n  num_classes: 3\nval:\n  mode: slide\n")
    flat.write_text("dataset: folders\nroot: /nowhere\nnum_classes: 3\n")
    out = tmp_path / "e.json"
    assert main(["eval", str(checkpoint), "--config", str(nested), f"data.root={tmp_path / 'd'}", "--workers", "0",
                 "--json", str(out), "val.mode=whole", *TINY]) == 0
    assert json.loads(out.read_text())["settings"]["mode"] == "whole"
    assert main(["eval", str(checkpoint), "--config", str(flat), f"data.root={tmp_path / 'd'}", "--workers", "0",
                 *TINY]) == 0
    assert main(["data", "check", "--config", str(flat), f"data.root={tmp_path / 'd'}", "--splits", "val",
                 "--no-progress"]) == 0
    predicted = tmp_path / "pred"
    assert main(["predict", str(checkpoint), str(tmp_path / "d" / "images" / "val"), "--out", str(predicted),
                 "--outputs", "labels", *TINY]) == 0
    capsys.readouterr()
    assert main(["score", "--pred", str(predicted), "--gt", str(tmp_path / "d" / "labels" / "val"), "--config",
                 str(flat), "data.class_names=[sky, road, car]"]) == 0
    assert "road" in capsys.readouterr().out
    for argv, words in (
        (["eval", str(checkpoint), "--config", str(nested), "train.lr=1"], ["train.lr=1", "data: or val:"]),
        (["eval", str(checkpoint), "--config", str(nested), "data.rot=1"], ["command line data.rot=1",
                                                                            "unknown key data.rot"]),
        (["eval", str(checkpoint), "--images", "x", "--labels", "y", "data.root=z"], ["give --config"]),
        (["data", "check", "--config", str(flat), "val.flip=false"], ["val.flip=false", "under data:"]),
        # the override's own words, not the file's (its val: line was blamed)
        (["eval", str(checkpoint), "--config", str(nested), "val.flip=maybe"], ["command line val.flip=maybe: "]),
        (["eval", str(checkpoint), "--config", str(nested), "val.imagez=3"], ["command line val.imagez=3: "]),
    ):
        code = main(argv)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(errors) == 1 and "Traceback" not in err and all(w in errors[0] for w in words), err


def test_predict_writes_the_confidence_of_each_pixel_as_the_python_api_computes_it(checkpoint, tmp_path) -> None:
    write_image(tmp_path / "in" / "a.png", h=30, w=41)
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--outputs",
                 "labels", "confidence", "--backend", "torch", *TINY]) == 0
    written = sorted(str(p.relative_to(tmp_path / "o")) for p in (tmp_path / "o").rglob("*.png"))
    assert written == ["a.png", "confidence/a.png"]
    grey = Image.open(tmp_path / "o" / "confidence" / "a.png")
    assert grey.mode == "L" and grey.size == (41, 30)
    probs = pspnet.probabilities(pspnet.load(checkpoint), tmp_path / "in" / "a.png",
                                 InferenceSettings(base_size=None, crop_size=(33, 33)))
    expected = np.round(probs.max(axis=0) * 255)
    assert np.abs(np.asarray(grey).astype(float) - expected).max() <= 1  # rounding at a .5 may differ
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "a.png")), probs.argmax(axis=0))


def test_eval_notes_a_class_no_ground_truth_holds_and_the_setting_for_0_255_masks(checkpoint, tmp_path, capsys):
    """Masks saved 0/255 read as class indices: the object is the ignore index, so the score counts the background
    alone; the note says so and names the setting."""
    write_image(tmp_path / "img" / "a.png")
    mask = np.zeros((33, 45), dtype=np.uint8)
    mask[5:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "lab.png")
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab.png").rename(tmp_path / "lab" / "a.png")
    assert main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", "--json", str(tmp_path / "e.json"), *TINY]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "classes 1 (b), 2 (c) appear in no ground-truth label" in err
    assert "data.label_values=[0,255]" in err  # as eval --images --labels takes it (below)
    assert json.loads((tmp_path / "e.json").read_text())["ignored_pixels"] == 15 * 25
    assert main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", "--json", str(tmp_path / "e2.json"), "--overwrite", *TINY,
                 "data.label_values=[0,255,128]"]) == 0
    assert json.loads((tmp_path / "e2.json").read_text())["ignored_pixels"] == 0  # 255 is class 1 now


@pytest.mark.parametrize(("option", "make", "expected"), [
    ("--json", "folder", "--json {p}: is a folder; expected a file name"),
    ("--json", "file", "--json {p}: exists; pass --overwrite to replace it"),
    ("--out", "file", "--out {p}: exists and is not a folder"),
    ("--report", "file", "--report {p}: exists and is not a folder"),
])
def test_eval_says_an_output_it_cannot_write_before_the_network_loads(checkpoint, tmp_path, capsys, monkeypatch,
                                                                       option, make, expected) -> None:
    import pspnet.cli.eval as eval_cli

    monkeypatch.setattr(eval_cli, "backend_forward", lambda *a, **k: pytest.fail("the network was loaded"))
    write_image(tmp_path / "img" / "a.png")
    write_label(tmp_path / "lab" / "a.png")
    target = tmp_path / "target"
    target.mkdir() if make == "folder" else target.write_text("{}")
    assert main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 option, str(target), *TINY]) == 2
    assert expected.format(p=target) in capsys.readouterr().err


def test_score_given_predicts_colour_maps_names_the_label_maps_beside_them(checkpoint, tmp_path, capsys) -> None:
    write_image(tmp_path / "img" / "s0.png")
    write_label(tmp_path / "lab" / "s0.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "img"), "--out", str(tmp_path / "o"), *TINY]) == 0
    capsys.readouterr()
    # Said at once: a colour map of grey colours (black: class 0 here) was scored as labels, without a word.
    code = main(["score", "--pred", str(tmp_path / "o" / "color"), "--gt", str(tmp_path / "lab"), "--num-classes",
                 "3"])
    assert code == 2 and capsys.readouterr().err == (
        f"pspnet score: error: --pred {tmp_path / 'o' / 'color'}: `pspnet predict`'s color images, not label maps; "
        f"score the label maps beside them: --pred {tmp_path / 'o'}\n")
    assert main(["score", "--pred", str(tmp_path / "o"), "--gt", str(tmp_path / "lab"), "--num-classes", "3"]) == 0
    # Colour images anywhere else: each named with what --pred takes (not data.label_colors, which reads ground truth).
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.array([[[255, 0, 0]] * 45] * 33, dtype=np.uint8)).save(rgb / "s0.png")
    assert main(["score", "--pred", str(rgb), "--gt", str(tmp_path / "lab"), "--num-classes", "3"]) == 1
    assert (f"{rgb / 's0.png'}: a colour image, not a map of class indices: --pred takes label PNGs of class indices, "
            "as `pspnet predict` writes them (OUT/NAME.png)") in capsys.readouterr().err


def test_eval_names_the_label_file_whose_value_is_no_class(checkpoint, tmp_path, capsys) -> None:
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    bad = tmp_path / "lab" / "s1.png"
    values = np.asarray(Image.open(bad)).copy()
    values[5, 5] = 9
    Image.fromarray(values).save(bad)
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", "--backend", "torch", *TINY])
    assert code == 1 and f"skipped {bad}: ground-truth value 9 is not a class index" in capsys.readouterr().err


def test_score_given_files_instead_of_folders_says_so(tmp_path, capsys) -> None:
    pred, gt = write_label(tmp_path / "pred" / "x.png"), write_label(tmp_path / "gt" / "x.png")
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3"]) == 2
    assert capsys.readouterr().err == (f"pspnet score: error: {gt}: a file; expected the folder of the ground-truth "
                                       "label PNGs (score pairs files by name)\n")  # 'no such folder' before
