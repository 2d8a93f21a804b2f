"""`pspnet predict --label-values`: label PNGs written with each class's value (a mask's 0/255, 16-bit values, the
Cityscapes and ADE20K benchmark servers' formats) instead of the class indices; bad values are one-line errors."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.data.labels import ade20k_to_train_ids, cityscapes_to_train_ids
from pspnet.errors import PSPNetError
from pspnet.train.config import load_train_config
from pspnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import TINY, write_image  # noqa: E402
from test_outputs import one_line_error  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from synthetic import config_dict, make_folders_dataset  # noqa: E402

ARGS = [*TINY, "--backend", "torch", "--outputs", "labels"]


def tiny_model(tmp_path: Path, classes: int, name: str = "toy") -> Path:
    torch.manual_seed(0)
    model = pspnet.PSPNet(classes, backbone="resnet18", info=DatasetInfo(name, [f"c{i}" for i in range(classes)]))
    with torch.no_grad():  # logits far apart: several classes in every prediction, so several values written
        model.head.classifier.weight.mul_(100)
    return pspnet.save(model, tmp_path / f"{classes}.safetensors")


def predict_both(tmp_path: Path, model: Path, *values: str) -> tuple[np.ndarray, np.ndarray]:
    """The class indices (default) and the values written with `--label-values values`, for two images."""
    for seed in (0, 1):
        write_image(tmp_path / "in" / f"{seed}.png", h=40, w=52, seed=seed)
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "idx"), *ARGS]) == 0
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "val"), *ARGS,
                 "--label-values", *values]) == 0
    read = lambda folder: np.stack([np.asarray(Image.open(folder / f"{s}.png")) for s in (0, 1)])  # noqa: E731
    return read(tmp_path / "idx"), read(tmp_path / "val")


def test_a_mask_model_writes_its_own_values(tmp_path) -> None:
    indices, written = predict_both(tmp_path, tiny_model(tmp_path, 3), "0,255", "77")  # commas, as other options
    assert len(np.unique(indices)) >= 2
    assert written.dtype == np.uint8
    assert np.array_equal(written, np.array([0, 255, 77], dtype=np.uint8)[indices])


def test_values_above_255_are_written_as_16_bit_pngs(tmp_path) -> None:
    indices, written = predict_both(tmp_path, tiny_model(tmp_path, 3), "0", "1000", "65535")
    assert Image.open(tmp_path / "val" / "0.png").mode.startswith("I")
    assert np.array_equal(written.astype(np.int64), np.array([0, 1000, 65535])[indices])


@pytest.mark.parametrize(("fmt", "classes", "read_back"), [("cityscapes", 19, cityscapes_to_train_ids),
                                                         ("ade20k", 150, ade20k_to_train_ids)])
def test_benchmark_formats_read_back_as_the_class_indices(tmp_path, fmt, classes, read_back) -> None:
    """What the benchmark's own labels become when read (its label ids → train ids) gives back the indices."""
    indices, written = predict_both(tmp_path, tiny_model(tmp_path, classes, fmt), fmt)
    assert len(np.unique(indices)) >= 2
    assert not np.array_equal(written, indices)
    assert np.array_equal(read_back(written), indices)


@pytest.mark.parametrize(("values", "words"), [
    (["cityscapes"], ["cityscapes", "3 classes", "for its 19"]),
    (["0", "255"], ["2 value(s)", "3 classes"]),
    (["0", "x", "255"], ["0 x 255", "integers"]),
    (["0", "70000", "1"], ["70000", "16-bit"]),
    (["0", "255", "0"], ["0 is given to two classes"]),
])
def test_bad_label_values_are_one_line_errors(tmp_path, capsys, values, words) -> None:
    write_image(tmp_path / "in" / "a.png")
    code = main(["predict", str(tiny_model(tmp_path, 3)), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 *ARGS, "--label-values", *values])
    one_line_error(capsys, code, "--label-values", *words)
    assert not (tmp_path / "out" / "a.png").exists()


def test_label_values_without_label_outputs_is_an_error(tmp_path, capsys) -> None:
    write_image(tmp_path / "in" / "a.png")
    code = main(["predict", str(tiny_model(tmp_path, 3)), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 *TINY, "--outputs", "color", "--label-values", "0", "255", "1"])
    one_line_error(capsys, code, "--label-values 0 255 1", "--outputs color", "add labels")


def test_a_model_trained_on_coded_labels_writes_those_values_with_data_and_says_so_without(tmp_path, capsys) -> None:
    """Labels drawn 0/100/200 (data.label_values): the saved model records the values; predict notes them and
    `--label-values data` writes them; a model trained on indices has none to give."""
    root = make_folders_dataset(tmp_path / "data", n_train=2, n_val=1)
    for label in (root / "labels").rglob("*.png"):
        Image.fromarray(np.asarray(Image.open(label)) * 100).save(label)
    cfg = config_dict(root, tmp_path / "run", iterations=1)
    cfg["data"]["label_values"] = [0, 100, 200]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    train(load_train_config(tmp_path / "cfg.yaml"), progress=False)
    model = tmp_path / "run" / "final.safetensors"
    images = root / "images" / "val"
    args = [*TINY, "--backend", "torch", "--outputs", "labels"]
    capsys.readouterr()
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "idx"), *args]) == 0
    assert "values 0 100 200; the label PNGs hold the class indices" in capsys.readouterr().err
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "val"), *args,
                 "--label-values", "data"]) == 0
    indices = np.asarray(Image.open(tmp_path / "idx" / "0.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "val" / "0.png")), np.array([0, 100, 200])[indices])
    code = main(["predict", str(tiny_model(tmp_path, 3)), str(images), "--out", str(tmp_path / "x"), *args,
                 "--label-values", "data"])
    one_line_error(capsys, code, "--label-values data", "records no label values")
    # eval reads ground truth drawn that way as the training did, whichever way the data is named; a model saved
    # before the whole coding was recorded (each class's first value only) reads it the same.
    labels = root / "labels" / "val"
    eval_args = ["--quiet", "--workers", "0", "--backend", "torch"]
    assert main(["eval", str(model), "--config", str(tmp_path / "cfg.yaml"), "--json", str(tmp_path / "c.json"),
                 *eval_args]) == 0
    expected = json.loads((tmp_path / "c.json").read_text())["confusion_matrix"]
    assert sum(map(sum, expected)) > 0
    loaded = pspnet.load(model)
    assert loaded.info.label_coding == {"label_values": [0, 100, 200], "ignore_values": []}
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert ("labels: drawn with the values [0, 100, 200], one per class (data.label_values of its training; eval "
            "reads ground truth so)") in capsys.readouterr().out
    loaded.info = dataclasses.replace(loaded.info, label_coding=None)  # as saved before the info held it
    older = pspnet.save(loaded, tmp_path / "older.safetensors", {"label_values": [0, 100, 200]})
    onnx = tmp_path / "m.onnx"  # an exported graph carries it in its metadata
    assert main(["export", str(model), "--format", "onnx", "--out", str(onnx)]) == 0
    for checkpoint in (model, older, onnx):
        capsys.readouterr()
        backend = eval_args if checkpoint != onnx else eval_args[:-2]  # the .onnx on ONNX Runtime
        assert main(["eval", str(checkpoint), "--images", str(images), "--labels", str(labels), "--json",
                     str(tmp_path / "i.json"), "--overwrite", *backend]) == 0
        assert ("ground truth: read with the label values 0 100 200 the model was trained with (data.label_values)"
                in capsys.readouterr().err)
        matrix = np.array(json.loads((tmp_path / "i.json").read_text())["confusion_matrix"])
        assert np.abs(matrix - np.array(expected)).sum() <= 2e-3 * matrix.sum()  # ONNX Runtime: to float rounding
    # pspnet.evaluate reads them the same way.
    api = pspnet.evaluate(pspnet.load(model), images, labels)
    assert np.array_equal(api.matrix, np.array(expected))
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(labels / "0.png")  # a value of no class
    assert main(["eval", str(model), "--images", str(images), "--labels", str(labels), *eval_args]) == 2
    err = capsys.readouterr().err  # the only label: said before the evaluation
    assert "0.png: value 7 (64 pixels) is in neither the label values 0 100 200 the model was trained with" in err
    assert err.endswith("; nothing was evaluated\n")


def test_a_model_trained_with_a_void_value_ignored_writes_indices_and_reads_ground_truth_as_trained(tmp_path,
                                                                                                   capsys) -> None:
    """Index labels with a void value of their own (data.ignore_values: [11] alone): the model records the class
    indices with 11 and 255 ignored; predict writes indices with no note about values, info and eval say how ground
    truth is read, and a value that is neither is named."""
    root = make_folders_dataset(tmp_path / "data", n_train=2, n_val=1)
    for label in (root / "labels").rglob("*.png"):
        values = np.asarray(Image.open(label)).copy()
        values[:2] = 11
        Image.fromarray(values).save(label)
    cfg = config_dict(root, tmp_path / "run", iterations=1)
    cfg["data"]["ignore_values"] = [11]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    train(load_train_config(tmp_path / "cfg.yaml"), progress=False)
    model = tmp_path / "run" / "final.safetensors"
    assert pspnet.load(model).info.label_coding == {"label_values": [0, 1, 2], "ignore_values": [11, 255]}
    images, labels = root / "images" / "val", root / "labels" / "val"
    capsys.readouterr()
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "idx"), *ARGS]) == 0
    assert "was trained on labels holding the values" not in capsys.readouterr().err  # no --label-values data note
    assert main(["info", str(model)]) == 0
    assert ("labels: drawn with the class indices, ignored [11, 255] (data.ignore_values of its training; eval reads "
            "ground truth so)") in capsys.readouterr().out
    eval_args = ["--images", str(images), "--labels", str(labels), "--quiet", "--workers", "0", "--backend", "torch"]
    assert main(["eval", str(model), *eval_args]) == 0
    assert ("ground truth: read with the class indices, the values 11 255 ignored as in the model's training "
            "(data.ignore_values)") in capsys.readouterr().err
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(labels / "0.png")  # a value of no class
    assert main(["eval", str(model), *eval_args]) == 2  # the only label: said before the evaluation
    assert ("0.png: value 7 (64 pixels) is in neither the class indices 0..2 nor the values 11 255 the model was "
            "trained to ignore (data.ignore_values)") in capsys.readouterr().err


def test_the_api_names_a_void_value_and_ignore_values_ignores_it(tmp_path, capsys, monkeypatch) -> None:
    """pspnet.evaluate on ground truth with a value of its own for unlabelled pixels (11): the error says how to
    ignore it; ignore_values=[11] does, beside the class indices or with label_values; `pspnet eval --images
    --labels` likewise with data.ignore_values=[11]."""
    model = pspnet.load(tiny_model(tmp_path, 3))
    small = pspnet.InferenceSettings(base_size=None, crop_size=(33, 33), flip=False)  # TINY's protocol, no flip
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / "images" / f"{i}.png", seed=i)
        values = rng.integers(0, 3, (33, 45), dtype=np.uint8)
        values[:3] = 11
        values[3] = 255
        (tmp_path / "labels").mkdir(exist_ok=True)
        Image.fromarray(values).save(tmp_path / "labels" / f"{i}.png")
    with monkeypatch.context() as patched, pytest.raises(pspnet.PSPNetError) as e:
        patched.setattr("pspnet.engine.evaluate.evaluate", None)  # said from the first labels: the network never runs
        pspnet.evaluate(model, tmp_path / "images", tmp_path / "labels", small)
    assert str(e.value) == (f"{tmp_path / 'labels' / '0.png'} (and 1 more): ground-truth value 11 is no class (0..2) "
                            "and not the ignore index 255: if it marks unlabelled pixels, ignore_values=[11]")  # once
    result = pspnet.evaluate(model, tmp_path / "images", tmp_path / "labels", small, ignore_values=[11])
    assert result.images == 2 and result.ignored == 2 * 4 * 45
    both = pspnet.evaluate(model, tmp_path / "images", tmp_path / "labels", small, label_values=[0, 1, 2],
                           ignore_values=[11, 255])
    assert torch.equal(both.matrix, result.matrix)
    # The command: the note names the override that --images/--labels take, which reads them so.
    command = ["eval", str(tmp_path / "3.safetensors"), "--images", str(tmp_path / "images"), "--labels",
               str(tmp_path / "labels"), *TINY, "--no-flip", "--workers", "0", "--backend", "torch"]
    assert main(command) == 2  # found in the first labels, before the evaluation
    assert capsys.readouterr().err.endswith(
        f"pspnet eval: error: {tmp_path / 'labels' / '0.png'} (the next label too): ground-truth value 11 is no class "
        "(0..2) and not the ignore index 255: if it marks unlabelled pixels, data.ignore_values=[11]; nothing was "
        "evaluated\n")
    assert main([*command, "data.ignore_values=[11]", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["confusion_matrix"] == result.matrix.tolist()
    assert main([*command, "data.root=/x"]) == 2
    assert capsys.readouterr().err.endswith("data.root=/x: without --config, the overrides taken are "
                                            "data.label_values, data.ignore_values, data.label_colors, "
                                            "data.ignore_colors (how the labels are read); "
                                            "the others change a --config's settings: give --config F\n")


def score(tmp_path: Path, pred: Path, gt: Path, *extra: str) -> int:
    return main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", *extra,
                 "--json", str(tmp_path / "s.json"), "--overwrite"])


def test_score_reads_predictions_written_with_label_values_back_as_the_classes(tmp_path, capsys) -> None:
    """The PNGs `--label-values` wrote (8- and 16-bit) score as the class indices do, with --pred-values; read as
    indices they are a one-line error naming --pred-values."""
    model = tiny_model(tmp_path, 3)
    indices, _ = predict_both(tmp_path, model, "0", "1000", "65535")
    gt = tmp_path / "gt"
    gt.mkdir()
    rng = np.random.default_rng(0)
    for s, idx in zip((0, 1), indices, strict=True):  # a ground truth agreeing on about two thirds of the pixels
        Image.fromarray(np.where(rng.random(idx.shape) < 0.67, idx, (idx + 1) % 3).astype(np.uint8)).save(
            gt / f"{s}.png")
    assert score(tmp_path, tmp_path / "idx", gt) == 0
    expected = yaml.safe_load((tmp_path / "s.json").read_text())
    assert 0.3 < expected["mIoU"] < 0.9
    for values in (["0", "1000", "65535"], ["0,1000,65535"]):
        assert score(tmp_path, tmp_path / "val", gt, "--pred-values", *values) == 0
        assert yaml.safe_load((tmp_path / "s.json").read_text())["mIoU"] == expected["mIoU"]
    capsys.readouterr()
    assert score(tmp_path, tmp_path / "val", gt) == 1  # 16-bit values read as indices
    err = capsys.readouterr().err
    assert "does not fit 0..255" in err and "--pred-values" in err
    assert score(tmp_path, tmp_path / "val", gt, "--pred-values", "0", "1000", "7") == 1  # another coding
    err = capsys.readouterr().err
    assert "value 65535" in err and "neither --pred-values nor a class index" in err
    masks = tmp_path / "masks"  # 8-bit values read as indices: the predicted value and the option named
    masks.mkdir()
    for s, idx in zip((0, 1), indices, strict=True):
        Image.fromarray(np.array([0, 255, 77], dtype=np.uint8)[idx]).save(masks / f"{s}.png")
    assert score(tmp_path, masks, gt) == 1
    err = capsys.readouterr().err
    assert "predicted value 255 is not a class index 0..2" in err and "--pred-values" in err
    assert score(tmp_path, masks, gt, "--pred-values", "0", "255", "77") == 0
    assert yaml.safe_load((tmp_path / "s.json").read_text())["mIoU"] == expected["mIoU"]


def test_score_pred_values_data_takes_the_configs_label_values(tmp_path, capsys) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    label = np.array([[0, 100], [200, 200]], dtype=np.uint8)
    Image.fromarray(label).save(gt / "a.png")
    Image.fromarray(label).save(pred / "a.png")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": "folders", "root": str(tmp_path), "num_classes": 3,
                                   "label_values": [0, 100, 200]}))
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--config", str(cfg), "--pred-values", "data"]) == 0
    assert "mIoU" in capsys.readouterr().out
    code = main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--pred-values", "data"])
    one_line_error(capsys, code, "--pred-values data", "neither --config nor an override gives them")
    # The ground truth's values given on the command line, without a config: the same scores.
    assert main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "data.label_values=[0,100,200]",
                 "--pred-values", "data", "--json", str(tmp_path / "o.json")]) == 0
    assert yaml.safe_load((tmp_path / "o.json").read_text())["mIoU"] == 1.0
    code = main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "data.root=x"])
    one_line_error(capsys, code, "data.root=x: without --config, the overrides taken are data.label_values, "
                   "data.ignore_values, data.label_colors, data.ignore_colors")
    code = main(["score", "--pred", str(pred), "--gt", str(gt), "--num-classes", "3", "--pred-values", "0", "1"])
    one_line_error(capsys, code, "--pred-values", "2 value(s) for 3 classes")


def test_a_model_of_more_than_256_classes_predicts_colours_and_writes_its_indices(tmp_path, capsys) -> None:
    """Class 280 came back as 24 (uint8) from the API, the colour maps raised a traceback and the label PNGs failed
    after the network ran; now int32 maps, every class its colour, 16-bit label PNGs (said), scored back."""
    path = tiny_model(tmp_path, 300)
    model = pspnet.load(path)
    with torch.no_grad():
        model.head.classifier.bias[280] = 1e4  # every pixel class 280
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    labels = pspnet.predict(model, image)
    assert labels.dtype == np.int32 and np.unique(labels).tolist() == [280]
    assert (pspnet.colorize(labels, model) == model.info.palette[280]).all()
    pspnet.save(model, tmp_path / "300b.safetensors")
    write_image(tmp_path / "in" / "x.png", h=24, w=32)
    assert main(["predict", str(tmp_path / "300b.safetensors"), str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                 *TINY, "--backend", "torch"]) == 0
    assert "has 300 classes: the label PNGs are 16-bit, holding the class indices" in capsys.readouterr().err
    written = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    assert written.dtype == np.uint16 and np.unique(written).tolist() == [280]
    assert (np.asarray(Image.open(tmp_path / "o" / "color" / "x.png")) == model.info.palette[280]).all()
    gt = tmp_path / "gt"
    gt.mkdir()
    Image.fromarray(np.full((24, 32), 7, np.uint8)).save(gt / "x.png")
    every = ",".join(map(str, range(300)))
    assert main(["score", "--pred", str(tmp_path / "o"), "--gt", str(gt), "--num-classes", "300",
                 "--pred-values", every]) == 0  # an IndexError for any count above 256
    assert "1 of 1 ground-truth files scored" in capsys.readouterr().out


def test_colorize_paints_indices_outside_the_palette_black() -> None:
    model = pspnet.PSPNet(3, backbone="resnet18")
    rgb = pspnet.colorize(np.array([[1, 257, -1, 255]]), model)  # 257 was painted as class 1 (uint8 wrap)
    assert rgb[0, 0].tolist() == list(model.info.palette[1]) and not rgb[0, 1:].any()
    with pytest.raises(PSPNetError, match=r"^a Conv2d without its classes and normalisation \(.info\); expected"):
        pspnet.predict(torch.nn.Conv2d(3, 3, 1), np.zeros((8, 8, 3), np.uint8))  # an AttributeError from the API
