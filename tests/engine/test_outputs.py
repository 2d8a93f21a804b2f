"""No command overwrites a file it did not create in this run (unless --overwrite), never an input, and output
paths are checked before any compute: one line naming the path, exit status 2."""

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import TINY, write_image, write_label  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = pspnet.PSPNet(3, backbone="resnet18", info=DatasetInfo("toy", ["a", "b", "c"]))
    return pspnet.save(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_predict_into_the_input_folder_refuses_and_leaves_the_inputs_untouched(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    write_image(photos / "a.png")
    write_image(photos / "b.png", seed=1)
    before = digests(photos)
    code = main(["predict", str(checkpoint), str(photos), "--out", str(photos), *TINY])
    # The folder it suggests is beside the inputs, not in them (where `eval --images` would take its outputs for
    # images); and it works.
    one_line_error(capsys, code, "--out", "holds the input", f"(e.g. {tmp_path / 'photos_pspnet'})")
    assert main(["predict", str(checkpoint), str(photos), "--out", str(tmp_path / "photos_pspnet"), *TINY]) == 0
    code = main(["predict", str(checkpoint), str(photos), "--out", str(photos), "--overwrite", *TINY])
    one_line_error(capsys, code, "holds the input")
    assert digests(photos) == before


def test_eval_saves_no_predictions_among_its_inputs_nor_two_images_predictions_in_one_file(checkpoint, tmp_path,
                                                                                            capsys):
    for suffix in (".png", ".jpg"):  # a.png and a.jpg: both would write OUT/a.png
        write_image(tmp_path / "data" / "img" / f"a{suffix}")
    write_label(tmp_path / "data" / "lab" / "a.png")
    before = digests(tmp_path / "data")
    run = ["eval", str(checkpoint), "--images", str(tmp_path / "data" / "img"), "--labels",
           str(tmp_path / "data" / "lab"), "--save-predictions", "--workers", "0", *TINY]
    # (both paired with the one label: refused as data before the outputs are looked at)
    one_line_error(capsys, main([*run, "--out", str(tmp_path / "ev")]), "a.jpg and ",
                   f"a.png both pair with the label {tmp_path / 'data' / 'lab' / 'a.png'}")
    (tmp_path / "data" / "pairs.txt").write_text("img/a.png lab/a.png\nimg/a.jpg lab/a.png\n")  # a list may
    listed = ["eval", str(checkpoint), "--list", str(tmp_path / "data" / "pairs.txt"), "--save-predictions",
              "--workers", "0", *TINY]
    one_line_error(capsys, main([*listed, "--out", str(tmp_path / "data" / "img")]), "--out", "holds the input")
    one_line_error(capsys, main([*listed, "--out", str(tmp_path / "ev")]), "--save-predictions:", "a.png and ",
                   f"a.jpg both write {tmp_path / 'ev' / 'a.png'}; rename one of them")
    (tmp_path / "data" / "pairs.txt").unlink()
    assert digests(tmp_path / "data") == before and not (tmp_path / "ev").exists()
    # The report in the same folder: its charts would replace predictions named as they are (iou.png).
    (tmp_path / "data" / "img" / "a.jpg").rename(tmp_path / "data" / "img" / "iou.jpg")
    (tmp_path / "data" / "lab" / "a.png").rename(tmp_path / "data" / "lab" / "iou.png")
    one_line_error(capsys, main([*run, "--out", str(tmp_path / "ev"), "--report", str(tmp_path / "ev")]), "--report",
                   "its iou.png would replace a file --out writes there")


def test_predict_given_one_image_twice_predicts_it_once(checkpoint, tmp_path, capsys):
    image = write_image(tmp_path / "in" / "a.png")
    code = main(["predict", str(checkpoint), str(image), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY])
    err = capsys.readouterr().err
    assert code == 0 and f"{image}: given twice; predicted once" in err and "rename" not in err
    assert (tmp_path / "out" / "a.png").is_file()


def test_predict_never_replaces_an_input_even_with_overwrite(checkpoint, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "out" / "color" / "a.png", seed=3)  # an input where an output would go
    before = digests(tmp_path / "out")
    code = main(["predict", str(checkpoint), str(tmp_path / "in"), str(tmp_path / "out" / "color" / "a.png"),
                 "--out", str(tmp_path / "out"), "--overwrite", *TINY])
    one_line_error(capsys, code, "holds the input", "color/a.png")  # an input anywhere in --out's tree
    assert digests(tmp_path / "out") == before


def test_a_second_predict_into_the_same_folder_needs_overwrite(checkpoint, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png")
    args = ["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY]
    assert main(args) == 0
    first = digests(tmp_path / "out")
    one_line_error(capsys, main(args), "exists", "--overwrite", "--skip-existing to do only the inputs whose outputs "
                   "are not all there (an interrupted run)")
    assert digests(tmp_path / "out") == first
    assert main([*args, "--overwrite"]) == 0


def test_skip_existing_finishes_an_interrupted_predict_and_leaves_what_it_wrote(checkpoint, tmp_path, capsys):
    """An interrupted run left one image done, one with its label but no overlay, one untouched: --skip-existing
    predicts the two unfinished ones (the partial one's label replaced) and leaves the finished one's files as they
    were; the outputs are what an uninterrupted run writes."""
    for i, name in enumerate("abc"):
        write_image(tmp_path / "in" / f"{name}.png", seed=i)
    args = ["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY]
    assert main(args) == 0
    whole = digests(tmp_path / "out")
    (tmp_path / "out" / "overlay" / "b.png").unlink()
    for kind in ("", "color/", "overlay/"):
        (tmp_path / "out" / f"{kind}c.png").unlink()
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("a.png")}
    capsys.readouterr()
    assert main([*args, "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert f"--skip-existing: 1 of 3 inputs have their outputs in {tmp_path / 'out'} already; predicting the other 2" \
        in err and "2 of 2 inputs written" in err
    assert digests(tmp_path / "out") == whole
    assert {p: p.stat().st_mtime_ns for p in done} == done  # not written again
    assert main([*args, "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert "3 of 3 inputs have their outputs in" in err and "already; nothing left to predict" in err
    one_line_error(capsys, main([*args, "--skip-existing", "--overwrite"]), "--skip-existing and --overwrite: choose "
                   "one")


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_predict_to_an_impossible_folder_fails_before_any_compute(checkpoint, tmp_path, capsys, make):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "f").write_text("not a folder")
    out = tmp_path / "f" if make == "file" else tmp_path / "f" / "sub"
    code = main(["predict", str(tmp_path / "missing.safetensors"), str(tmp_path / "in"), "--out", str(out), *TINY])
    one_line_error(capsys, code, str(out))  # the output is checked before the (missing) checkpoint is even read


def test_predict_output_is_what_score_reads(checkpoint, tmp_path, capsys):
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "gt" / f"s{i}.png", seed=i)
    assert main(["predict", str(checkpoint), str(tmp_path / "img"), "--out", str(tmp_path / "out"), *TINY]) == 0
    assert main(["score", "--pred", str(tmp_path / "out"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_eval_outputs_are_checked_before_it_evaluates(checkpoint, tmp_path, capsys):
    write_image(tmp_path / "img" / "s.png")
    write_label(tmp_path / "lab" / "s.png")
    (tmp_path / "e.json").write_text("{}")
    data = ["--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"), "--workers", "0", *TINY]
    one_line_error(capsys, main(["eval", str(checkpoint), *data, "--json", str(tmp_path / "e.json")]), "--json",
                   "exists")
    assert (tmp_path / "e.json").read_text() == "{}"
    assert main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev"), "--save-predictions"]) == 0
    assert {"s.png", "color/s.png", "overlay/s.png", "scores.json", "confusion.csv"} <= set(digests(tmp_path / "ev"))
    one_line_error(capsys, main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev")]), "exists")


def test_eval_saves_what_predict_writes_confidence_and_label_values_included(checkpoint, tmp_path, capsys):
    """`eval --save-predictions --outputs ... --label-values ...` writes the files `predict` writes for the same
    images with the same options, byte for byte; the options without --save-predictions are a one-line error."""
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    data = ["--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"), "--workers", "0", *TINY]
    options = ["--outputs", "labels", "confidence", "overlay", "--label-values", "0", "255", "77", "--legend",
               "--backend", "torch"]
    assert main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev"), "--save-predictions", *options]) == 0
    assert main(["predict", str(checkpoint), str(tmp_path / "img"), "--out", str(tmp_path / "pr"), *TINY,
                 *options]) == 0
    saved = {k: v for k, v in digests(tmp_path / "ev").items() if k.endswith(".png")}
    assert set(saved) == {"s0.png", "s1.png", "confidence/s0.png", "confidence/s1.png", "overlay/s0.png",
                          "overlay/s1.png"}
    assert Image.open(tmp_path / "ev" / "overlay" / "s0.png").height > 33  # the colour key under the overlay
    assert saved == digests(tmp_path / "pr")
    capsys.readouterr()
    code = main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev2"), "--outputs", "confidence"])
    one_line_error(capsys, code, "--outputs chooses what --save-predictions writes", "add --save-predictions")
    code = main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev2"), "--save-predictions", "--outputs",
                 "color", "--label-values", "0", "1", "2"])
    one_line_error(capsys, code, "--label-values 0 1 2", "--outputs color", "add labels")
    code = main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev2"), "--legend"])
    one_line_error(capsys, code, "--legend chooses what --save-predictions writes", "add --save-predictions")
    code = main(["eval", str(checkpoint), *data, "--out", str(tmp_path / "ev2"), "--save-predictions", "--outputs",
                 "labels", "--legend"])
    one_line_error(capsys, code, "--legend: it draws a colour key under the colour maps and overlays, but --outputs "
                   "labels writes neither", "add color or overlay")
    assert not (tmp_path / "ev2").exists()


def test_export_score_and_convert_do_not_replace_files(checkpoint, tmp_path, capsys):
    (tmp_path / "m.pt").write_text("keep")
    code = main(["export", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    one_line_error(capsys, code, "--out", "exists", "--overwrite")
    assert (tmp_path / "m.pt").read_text() == "keep"
    code = main(["export", str(checkpoint), "--format", "onnx", "--out", str(checkpoint), "--overwrite"])
    one_line_error(capsys, code, "is the checkpoint")
    code = main(["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--static-size", "0", "64"])
    one_line_error(capsys, code, "--static-size", "positive")
    write_label(tmp_path / "gt" / "s.png")
    (tmp_path / "s.json").write_text("keep")
    code = main(["score", "--pred", str(tmp_path / "gt"), "--gt", str(tmp_path / "gt"), "--num-classes", "3",
                 "--json", str(tmp_path / "s.json")])
    one_line_error(capsys, code, "--json", "exists")
    code = main(["convert", "--from", "semseg", str(checkpoint), str(checkpoint), "--overwrite"])
    one_line_error(capsys, code, "is SRC")


def test_a_file_where_an_output_subfolder_goes_fails_before_any_compute(checkpoint, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "color").write_text("not a folder")
    code = main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY])
    one_line_error(capsys, code, "color")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["color"]  # nothing written


def test_a_failed_write_stops_predict_in_one_line_and_leaves_no_half_file(checkpoint, tmp_path, capsys, monkeypatch):
    from PIL import Image

    for i in range(4):
        write_image(tmp_path / "in" / f"s{i}.png", seed=i)
    save = Image.Image.save

    def disk_full_at_s2_overlay(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202
        if "s2.png." in str(fp) and "overlay" in str(fp):
            Path(fp).write_bytes(b"\x89PNG half")  # what a full disk leaves behind
            raise OSError(28, "No space left on device")
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_at_s2_overlay)
    code = main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"), *TINY,
                 "--batch-size", "1"])  # one image per group: the writes of several groups are in flight
    one_line_error(capsys, code, str(tmp_path / "out" / "overlay" / "s2.png"), "No space left on device")
    written = digests(tmp_path / "out")
    assert "overlay/s2.png" not in written and not any(name.endswith(".tmp") for name in written), written
    assert {"s0.png", "color/s0.png", "overlay/s0.png", "s1.png"} <= set(written)


def test_a_failed_write_stops_eval_save_predictions_in_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    from PIL import Image

    for i in range(3):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    save = Image.Image.save

    def disk_full_at_s1_colour(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202
        if "s1.png." in str(fp) and "color" in str(fp):
            raise OSError(28, "No space left on device")
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_at_s1_colour)
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", *TINY, "--out", str(tmp_path / "ev"), "--save-predictions"])
    one_line_error(capsys, code, str(tmp_path / "ev" / "color" / "s1.png"), "No space left on device")
    assert not (tmp_path / "ev" / "color" / "s1.png").exists()
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "ev").rglob("*"))


def test_a_full_disk_while_the_report_is_drawn_is_one_line_and_leaves_no_picture_cut_short(
        checkpoint, tmp_path, capsys, monkeypatch):
    """`eval --report`: the disk full while the confusion matrix is saved (part of the PNG written): one line naming
    confusion.png; the picture drawn before it is whole, none is cut short, no index.html points at a missing one."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    savefig = Figure.savefig

    def disk_full(self, fname, *args, **kwargs):  # noqa: ANN001, ANN202
        if "confusion.png" in str(fname):
            Path(fname).write_bytes(b"\x89PNG\r\n")  # part of it reached the disk
            raise OSError(28, "No space left on device")
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", disk_full)
    report = tmp_path / "rep"
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", *TINY, "--report", str(report)])
    one_line_error(capsys, code, str(report / "confusion.png"), "No space left on device")
    assert sorted(p.name for p in report.iterdir()) == ["iou.png"]
    assert (report / "iou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("failing", ["scores.json", "per_image.csv"])
def test_eval_writes_its_scores_whole_or_says_which_file_it_could_not(checkpoint, tmp_path, capsys, monkeypatch,
                                                                      failing):
    """A full disk as eval writes its scores (`--out`, `--json`): one line naming the file; none of them cut short
    (an earlier run's scores.json stays as it was)."""
    for i in range(2):
        write_image(tmp_path / "img" / f"s{i}.png", seed=i)
        write_label(tmp_path / "lab" / f"s{i}.png", seed=i)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "scores.json").write_text("{}")  # an earlier run's
    write_text = Path.write_text

    def disk_full(self, data, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.name.startswith(f".{failing}."):  # the temporary file beside it
            self.write_bytes(data.encode()[:10])  # part of it reached the disk
            raise OSError(28, "No space left on device")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    code = main(["eval", str(checkpoint), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", *TINY, "--out", str(out), "--overwrite"])
    one_line_error(capsys, code, str(out / failing), "No space left on device")
    assert (out / "scores.json").read_text() == "{}"
    assert (out / "per_image.csv").exists() == (failing == "scores.json")  # written before scores.json
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
