"""The OpenVINO backend: the same protocol code, the same answer in f32, from a checkpoint or an exported IR."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.engine.inference import InferenceSettings, infer_probabilities
from pspnet.export.openvino import OpenVinoModel, convert

pytest.importorskip("openvino")

TINY = ["--crop-size", "33", "--base-size", "0", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ov")
    torch.manual_seed(0)
    model = pspnet.PSPNet(3, backbone="resnet18", output_stride=16, info=DatasetInfo("toy", ["a", "b", "c"]))
    ckpt = pspnet.save(model, root / "m.safetensors")
    rng = np.random.default_rng(0)
    for i in range(3):
        (root / "img").mkdir(exist_ok=True)
        (root / "lab").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        Image.fromarray(rng.integers(0, 3, (40, 52), dtype=np.uint8)).save(root / "lab" / f"{i}.png")
    return root, ckpt


def scores(data, tmp_path, *extra: str) -> dict:
    root, ckpt = data
    out = tmp_path / f"e{len(list(tmp_path.iterdir()))}.json"
    assert main(["eval", str(ckpt), "--images", str(root / "img"), "--labels", str(root / "lab"), "--workers", "0",
                 "--json", str(out), *TINY, *extra]) == 0
    return json.loads(out.read_text())


def test_eval_through_openvino_f32_gives_the_pytorch_scores(data, tmp_path) -> None:
    torch_scores = scores(data, tmp_path)
    ov_scores = scores(data, tmp_path, "--backend", "openvino")
    assert ov_scores["recipe"]["description"] == "OpenVINO f32"
    assert abs(ov_scores["mIoU"] - torch_scores["mIoU"]) <= 1e-4
    a, b = np.array(ov_scores["confusion_matrix"]), np.array(torch_scores["confusion_matrix"])
    assert np.abs(a - b).sum() / 2 <= 1e-3 * a.sum()  # at most 0.1% of the pixels change class


@pytest.mark.parametrize("align_corners", [True, False])  # the authors' models, mmsegmentation's
def test_the_final_upsampling_is_converted_as_matrix_products_with_the_same_logits(align_corners) -> None:
    """OpenVINO's Interpolate writes channels-last and needs a reorder to the NCHW output; the two matrix products
    write NCHW (`for_openvino`). Same logits at odd sizes and batches; the caller's model is left as it was."""
    torch.manual_seed(0)
    model = pspnet.PSPNet(3, backbone="resnet18", output_stride=16, align_corners=align_corners).eval()
    graph = convert(model)
    assert graph.get_results()[0].input_value(0).get_node().get_type_name() == "MatMul"
    # The pyramid's branches are not upsampled either: the head's convolution takes them at their bins.
    assert not [op for op in graph.get_ordered_ops() if op.get_type_name() == "Interpolate"]
    assert not model.upsample_by_matmul and not model.pyramid_at_bins
    engine = OpenVinoModel(graph)
    for size in ((37, 45), (200, 13)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(engine(x), expected, atol=2e-5, rtol=1e-5)


def test_the_protocol_takes_the_logits_from_the_engines_buffer_and_a_call_hands_out_its_own(data) -> None:
    """`lend` saves the copy of the logits into fresh memory; the protocol, which adds each batch into its sums at
    once, takes them so and gets the answer of copies, bit for bit. A plain call's logits stay the caller's."""
    root, ckpt = data
    model = OpenVinoModel(pspnet.load(ckpt), cache=False)
    x1, x2 = torch.randn(2, 3, 33, 41), torch.randn(2, 3, 33, 41)
    first = model(x1)
    kept = first.clone()
    model(x2)
    assert torch.equal(first, kept)
    assert torch.equal(model.lend(x1), kept)

    lent: list[int] = []
    lend = model.lend
    model.lend = lambda x: lent.append(len(x)) or lend(x)  # type: ignore[method-assign]
    images = [torch.from_numpy(np.array(Image.open(root / "img" / f"{i}.png"))).permute(2, 0, 1) for i in range(3)]
    settings = InferenceSettings(base_size=None, crop_size=(33, 33), batch_size=4)
    by_lending = infer_probabilities(model, images, settings, model.info.mean, model.info.std)
    assert sum(lent) == 3 * 4 * 2  # every window (2×2 over each 40×52 image) and its mirror
    by_copies = infer_probabilities(lambda x: model(x), images, settings, model.info.mean, model.info.std)
    for a, b in zip(by_lending, by_copies, strict=True):
        assert torch.equal(a, b)


def test_an_exported_ir_predicts_what_pytorch_predicts(data, tmp_path) -> None:
    root, ckpt = data
    xml = tmp_path / "m.xml"
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(xml)]) == 0
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert main(["predict", str(ckpt), str(root / "img"), "--out", str(tmp_path / "torch"), *TINY]) == 0
    assert main(["predict", "--backend", "openvino", str(xml), str(root / "img"), "--out", str(tmp_path / "ov"),
                 *TINY]) == 0
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "torch" / f"{i}.png"))
        b = np.asarray(Image.open(tmp_path / "ov" / f"{i}.png"))
        assert np.mean(a == b) >= 0.999


def test_an_exported_onnx_file_runs_on_openvino_with_the_scores_of_onnx_runtime(data, tmp_path, capsys) -> None:
    """Read by OpenVINO's ONNX frontend, metadata and all: no checkpoint needed. A graph exported for one size and
    batch 1 (--static-size) is given the protocol's batches image by image, and other sizes are refused in one line."""
    pytest.importorskip("onnxruntime")
    root, ckpt = data
    dynamic, static = tmp_path / "m.onnx", tmp_path / "fixed.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(dynamic)]) == 0
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(static), "--static-size", "33", "33"]) == 0
    capsys.readouterr()
    reference = scores((root, dynamic), tmp_path, "--backend", "onnxruntime")
    for onnx in (dynamic, static):
        ov = scores((root, onnx), tmp_path, "--backend", "openvino")
        assert "network: OpenVINO f32 (--backend openvino" in capsys.readouterr().err
        assert ov["recipe"]["backend"] == "openvino" and abs(ov["mIoU"] - reference["mIoU"]) <= 1e-4
        a, b = np.array(ov["confusion_matrix"]), np.array(reference["confusion_matrix"])
        assert np.abs(a - b).sum() / 2 <= 1e-3 * a.sum()
    for extra, expected in ((["--crop-size", "31"], "exported for 33×33 inputs (--static-size)"),
                            # the advice works whatever the protocol (--crop-size alone does nothing in whole mode)
                            (["--mode", "whole"], "gives it 40×52; run it in windows of that size (--mode slide "
                                                  "--crop-size 33 33; in Python settings={'mode': 'slide', "
                                                  "'crop_size': (33, 33)}), or export without --static-size"),
                            (["--precision", "int8"], "is an f32 ONNX graph; make an int8 IR with `pspnet quantize")):
        assert main(["eval", str(static), "--images", str(root / "img"), "--labels", str(root / "lab"),
                     "--backend", "openvino", *TINY, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1] and str(static) in err[-1] and "Traceback" not in "".join(err), err


def test_openvino_mistakes_are_one_line(data, tmp_path, capsys) -> None:
    _, ckpt = data
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "--format openvino writes .xml files" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(tmp_path / "m.xml"), "--static-size", "33",
                 "33"]) == 2
    assert "--static-size applies to ONNX only; an OpenVINO IR takes any" in capsys.readouterr().err
    (tmp_path / "bad.xml").write_text("<net/>")
    root, _ = data
    assert main(["predict", "--backend", "openvino", str(tmp_path / "bad.xml"), str(root / "img"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.xml" in err and "Traceback" not in err
    truncated = tmp_path / "cut.onnx"  # the reason, not where OpenVINO raised it ("Exception from src/…")
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(truncated)]) == 0
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    assert main(["predict", "--backend", "openvino", str(truncated), str(root / "img"), "--out",
                 str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{truncated}: OpenVINO cannot read it (Model can't be parsed)")


def test_bench_times_openvino_against_the_eager_reference(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--backend", "openvino", "--workloads", "infer1", "eval", "--json", str(out)]) == 0
    assert not (tmp_path / "cache").exists()  # its random models stay out of the user's conversion cache
    rows = json.loads(out.read_text())["rows"]
    assert {r["workload"].split(" (")[0] for r in rows} >= {"inference, batch 1", "eval protocol"}
    assert all(r["agreement"]["argmax"] >= 0.995 and r["agreement"]["relative_error"] < 1e-4 for r in rows)
