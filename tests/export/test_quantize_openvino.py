"""`pspnet quantize`: NNCF int8 on the protocol's inputs, an IR that carries its record, and plain errors.

The quantize command runs in a subprocess here: NNCF installs PyTorch function hooks (`nncf.torch.function_hook`)
when it quantises, and a later PyTorch test in the same process crashed (a segfault in a PSPNet-50 forward, seen
with nncf 3.4). The command is a process of its own for users too.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.download import file_digest
from pspnet.engine.openvino_int8 import F32_OPS
from pspnet.train.loss import segmentation_loss

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

TINY = ["--crop-size", "33", "--base-size", "0"]


def quantize(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pspnet.cli.main", "quantize", *args], capture_output=True,
                          text=True, timeout=300)


def scene(rng: np.random.Generator, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of three classes (the argmax of a smooth random field), each painted its own colour, plus noise."""
    coarse = torch.from_numpy(rng.random((1, 3, 2, 2), dtype=np.float32))  # blobs larger than 1/16 cells
    label = torch.nn.functional.interpolate(coarse, (size, size), mode="bilinear", align_corners=False)[0].argmax(0)
    colours = np.array([[200, 60, 50], [60, 180, 70], [50, 70, 200]], dtype=np.float32)
    image = colours[label.numpy()] + rng.normal(0, 20, (size, size, 3))
    return image.clip(0, 255).round().astype(np.uint8), label.numpy().astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny PSPNet trained to segment the coloured blobs (its pixel accuracy checked), and 10 images."""
    root = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    info = DatasetInfo("toy", ["red", "green", "blue"])
    model = pspnet.PSPNet(3, backbone="resnet18", output_stride=16, info=info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    mean, std = torch.tensor(info.mean)[:, None, None], torch.tensor(info.std)[:, None, None]

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [scene(rng, 33) for _ in range(n)]
        x = torch.stack([(torch.from_numpy(i).permute(2, 0, 1) / 255 - mean) / std for i, _ in pairs])
        return x.float(), torch.stack([torch.from_numpy(lab).long() for _, lab in pairs])

    model.train()
    for _ in range(60):
        x, y = batch(8)
        logits, aux = model(x)
        loss = segmentation_loss(logits, aux, y, 255, 0.4)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = batch(8)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8, f"the tiny model did not learn the task (pixel accuracy {accuracy:.2f})"
    ckpt = pspnet.save(model, root / "m.safetensors")
    (root / "img").mkdir()
    for i in range(10):
        Image.fromarray(scene(rng)[0]).save(root / "img" / f"{i}.png")
    return root, ckpt


def test_quantize_writes_an_int8_ir_that_agrees_with_f32(trained, tmp_path, capsys) -> None:
    """Calibrated on the images a list file names (a dataset's list: image and label paths relative to it); the
    graphs' test below calibrates on a folder. One quantisation each: every one is a process importing NNCF."""
    root, ckpt = trained
    out = tmp_path / "int8"
    listing = tmp_path / "calib.txt"
    listing.write_text("".join(f"img/{i}.png labels/{i}.png\n" for i in range(10)))
    (tmp_path / "img").symlink_to(root / "img")
    run = quantize(str(ckpt), "--calib", str(listing), "--images", "10", "--held-back", "3", "--out", str(out),
                   *TINY)
    assert run.returncode == 0, run.stderr
    assert "held-back images" in run.stderr and (out / "model.xml").is_file() and (out / "model.bin").is_file()
    record = json.loads((out / "quantization.json").read_text())
    assert record["calibration_images"] == 7 and record["held_back_images"] == 3
    assert len(record["checkpoint_sha256"]) == 64 and record["calibration_inputs"] == 7 * 2 * 4  # windows × flip
    # int8 moves only pixels whose f32 margin is within the quantisation error: on smooth three-colour scenes those
    # lie on the class boundaries, about a tenth of a 40×40 image's pixels. 95% leaves room for them all to flip.
    assert record["agreement"]["same"] >= 0.95, record["agreement"]
    # The resizing and the pyramid's pooling stay f32: no 8-bit range on their inputs (the logits' among them).
    ops = ov.Core().read_model(str(out / "model.xml")).get_ordered_ops()
    quantised = {op.get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"}
    assert quantised and not [op.get_friendly_name() for op in ops if op.get_type_name() in F32_OPS
                              and {v.get_node().get_friendly_name() for v in op.input_values()} & quantised]
    # The IR runs through the same protocol, says it is int8 and knows its classes.
    assert main(["predict", str(out / "model.xml"), "--backend", "openvino", str(root / "img"), "--out",
                 str(tmp_path / "pred"), "--quiet", *TINY]) == 0
    assert "OpenVINO int8" in capsys.readouterr().err
    assert len(list((tmp_path / "pred").glob("*.png"))) == 10
    # eval's result file records the int8 engine, not the PyTorch recipe's fp32 it did not use.
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(10):
        Image.new("L", Image.open(root / "img" / f"{i}.png").size).save(labels / f"{i}.png")
    capsys.readouterr()
    assert main(["eval", str(out), "--images", str(root / "img"), "--labels", str(labels), "--quiet",  # the folder
                 "--workers", "0", "--json", str(tmp_path / "e.json"), *TINY]) == 0
    assert f"{out}: the int8 model of `pspnet quantize`; using {out / 'model.xml'}" in capsys.readouterr().err
    scored = json.loads((tmp_path / "e.json").read_text())
    assert scored["checkpoint"] == str(out / "model.xml") and scored["recipe"] == {
        "backend": "openvino", "description": "OpenVINO int8 (f32 elsewhere)", "precision": "int8"}
    # `pspnet info` reads the record back from the IR alone.
    assert main(["info", str(out)]) == 0  # the folder stands for its IR
    printed = capsys.readouterr().out
    assert f"file: {out / 'model.xml'} (OpenVINO IR (pspnet quantize, int8))" in printed
    assert f"int8: calibrated on 7 images (56 network inputs) from {listing}; against f32 on 3" in printed


@pytest.mark.parametrize("case", ["missing", "empty", "one image", "bad line", "too few", "out among them"])
def test_bad_calibration_sets_are_one_line_errors(trained, tmp_path, capsys, case) -> None:
    root, ckpt = trained
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.txt").write_text("img/0.png\nimg/nope.png\n")
    calib, expected, extra = {
        "missing": (tmp_path / "nope", "no such folder or list file", []),
        "empty": (tmp_path / "empty", "holds no images", []),
        "one image": (root / "img" / "0.png", "one image", []),
        "bad line": (tmp_path / "bad.txt", "bad.txt:2", []),
        "too few": (root / "img", "--images 1", ["--images", "1"]),
        "out among them": (tmp_path / "o", "--out", []),  # the model was written into the image folder
    }[case]
    if case == "out among them":
        shutil.copytree(root / "img", tmp_path / "o")
        expected = f"--out {tmp_path / 'o'}: holds the input {tmp_path / 'o' / '0.png'}; choose another folder"
    if case == "bad line":
        (tmp_path / "img").symlink_to(root / "img")
    # In this process: these stop before NNCF quantises anything (importing it installs no hooks).
    assert main(["quantize", str(ckpt), "--calib", str(calib), "--out", str(tmp_path / "o"), *extra, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "model.xml").exists()


@pytest.mark.parametrize("export", [["--format", "onnx", "--image-input"], ["--format", "openvino"]],
                         ids=["onnx-image-input", "ir"])
def test_an_exported_f32_graph_is_quantized_as_its_checkpoint_is(trained, tmp_path, capsys, export) -> None:
    root, ckpt = trained
    graph = tmp_path / ("m.onnx" if "onnx" in export else "m.xml")
    assert main(["export", str(ckpt), "--out", str(graph), *export]) == 0
    out = tmp_path / "int8"
    run = quantize(str(graph), "--calib", str(root / "img"), "--held-back", "3", "--out", str(out), *TINY)
    assert run.returncode == 0, run.stderr
    record = json.loads((out / "quantization.json").read_text())
    assert record["graph"] == str(graph) and record["graph_sha256"] == file_digest(graph)
    assert "checkpoint" not in record and record["calibration_inputs"] == 7 * 2 * 4
    assert record["agreement"]["same"] >= 0.95, record["agreement"]  # as from the checkpoint (above)
    capsys.readouterr()
    assert main(["info", str(out / "model.xml")]) == 0
    printed = capsys.readouterr().out
    assert f"from {graph} (sha256 {file_digest(graph)[:12]}…)" in printed
    # The graph's input is kept: images in for an --image-input export. The int8 IR's labels on the held-back
    # images are those quantize measured, and predict reads it as any int8 IR.
    assert ("uint8 N×H×W×3" in printed) == ("--image-input" in export), printed
    assert main(["predict", str(out / "model.xml"), str(root / "img" / "0.png"), "--out", str(tmp_path / "p"),
                 "--quiet", *TINY]) == 0
    assert "OpenVINO int8" in capsys.readouterr().err and (tmp_path / "p" / "0.png").is_file()


def test_graphs_that_cannot_be_quantized_are_one_line_errors(trained, tmp_path, capsys) -> None:
    root, ckpt = trained
    static = tmp_path / "static.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--static-size", "40", "40", "--out", str(static)]) == 0
    (tmp_path / "junk.onnx").write_text("not a graph")
    f32, int8 = tmp_path / "f32.xml", tmp_path / "int8.xml"
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(f32)]) == 0
    from pspnet.export.openvino import require_openvino

    ov = require_openvino()
    ir = ov.Core().read_model(str(f32))
    ir.set_rt_info(json.dumps({"checkpoint": "m.safetensors"}), ["pspnet", "quantization"])  # as quantize marks it
    ov.save_model(ir, str(int8), compress_to_fp16=False)
    capsys.readouterr()
    for model, expected in [
        (static, "exported for 40×40 inputs (--static-size), but the test protocol gives it 33×33"),
        (tmp_path / "junk.onnx", "OpenVINO cannot read it"),
        (tmp_path / "nope.onnx", "no such ONNX file"),
        (int8, "already int8 (`pspnet quantize` of m.safetensors); quantize the f32 graph"),
    ]:
        # In this process: each stops before NNCF quantises anything.
        assert main(["quantize", str(model), "--calib", str(root / "img"), "--out", str(tmp_path / "o"), *TINY]) == 2
        err = capsys.readouterr().err.splitlines()[-1]  # after "calibrating on …" where the windows are made
        assert err.startswith(f"pspnet quantize: error: {model}: ") and expected in err, err
        assert not (tmp_path / "o" / "model.xml").exists()
    # The output never replaces the graph it reads.
    assert main(["quantize", str(tmp_path / "model.xml"), "--calib", str(root / "img"), "--out", str(tmp_path),
                 *TINY]) == 2
    assert "would replace an input" in capsys.readouterr().err


def test_without_nncf_the_error_says_what_to_install(trained, tmp_path, capsys, monkeypatch) -> None:
    root, ckpt = trained
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    assert main(["quantize", str(ckpt), "--calib", str(root / "img"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'pspnet[openvino]'" in err and len(err.splitlines()) == 1


def test_an_ir_of_another_file_is_a_one_line_error(tmp_path, capsys) -> None:
    bogus = tmp_path / "m.xml"
    bogus.write_text("<net/>")
    assert main(["predict", str(bogus), "--backend", "openvino", str(tmp_path), "--out", str(tmp_path / "p")]) != 0
    err = capsys.readouterr().err
    assert "m.xml" in err and "Traceback" not in err
