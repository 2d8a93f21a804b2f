"""`pspnet export --image-input`: graphs that take images as decoders give them (uint8 N×H×W×3 RGB) and normalise
them inside, for deployment code that only decodes and resizes; pspnet's own backends run them too."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import pspnet
from pspnet.cli.main import main
from pspnet.data.imageops import normalize
from pspnet.export import OnnxRuntimeModel, TorchScriptModel
from pspnet.export.graph import torchscript_quietly
from pspnet.export.metadata import IMAGE_INPUT, NORMALISED_INPUT

SIZE = (75, 101)  # its 1/8 map (10×13) is divisible by none of the bins but 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    info = pspnet.DatasetInfo("toy", ["a", "b", "c"], mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    model = pspnet.PSPNet(3, backbone="resnet18", aux=False, info=info)
    torch.nn.init.normal_(model.head.classifier.weight, std=1.0)
    root = tmp_path_factory.mktemp("image_input")
    files = {"checkpoint": pspnet.save(model, root / "tiny.safetensors"), "onnx": root / "img.onnx",
             "torchscript": root / "img.pt", "plain": root / "plain.onnx"}
    for fmt in ("onnx", "torchscript"):
        assert main(["export", str(files["checkpoint"]), "--format", fmt, "--out", str(files[fmt]),
                     "--image-input"]) == 0
    assert main(["export", str(files["checkpoint"]), "--format", "onnx", "--out", str(files["plain"])]) == 0
    return files


def images(n: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SIZE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def expected_logits(files: dict[str, Path], rgb: torch.Tensor) -> torch.Tensor:
    model = pspnet.load(files["checkpoint"])
    with torch.no_grad():
        return model(normalize(rgb.permute(0, 3, 1, 2), model.info.mean, model.info.std))


def assert_same_logits(got: torch.Tensor | np.ndarray, expected: torch.Tensor) -> None:
    got = torch.as_tensor(np.asarray(got))
    assert got.shape == expected.shape and (got - expected).abs().max().item() <= 1e-3


def test_the_graphs_take_uint8_images_and_give_the_models_logits(exported) -> None:
    rgb = images()
    expected = expected_logits(exported, rgb)
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert_same_logits(session.run(["logits"], {"input": rgb.numpy()})[0], expected)
    with torchscript_quietly(), torch.no_grad():
        assert_same_logits(torch.jit.load(str(exported["torchscript"]))(rgb), expected)


def test_pspnets_backends_give_such_graphs_their_input_as_images(exported) -> None:
    """The protocol hands every backend a normalised batch; for these graphs it goes back to uint8, exactly for
    whole-level pixels (the windows of an image the protocol did not resize)."""
    rgb = images()
    expected = expected_logits(exported, rgb)
    normalised = normalize(rgb.permute(0, 3, 1, 2), (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    assert_same_logits(OnnxRuntimeModel(exported["onnx"])(normalised), expected)
    assert_same_logits(TorchScriptModel(exported["torchscript"])(normalised), expected)


def test_an_openvino_ir_takes_images_too(exported, tmp_path) -> None:
    ov = pytest.importorskip("openvino")
    from pspnet.export.openvino import OpenVinoModel

    ir = tmp_path / "img.xml"
    assert main(["export", str(exported["checkpoint"]), "--format", "openvino", "--out", str(ir),
                 "--image-input"]) == 0
    rgb = images()
    expected = expected_logits(exported, rgb)
    # as docs/export.md says: OpenVINO's own default on a CPU with AVX-512 BF16 or AMX is bf16 (1.2e-3 off here)
    compiled = ov.Core().compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert_same_logits(compiled(rgb.numpy())[0], expected)
    normalised = normalize(rgb.permute(0, 3, 1, 2), (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    assert_same_logits(OpenVinoModel(ir)(normalised), expected)


def test_predict_writes_the_same_labels_through_either_graph(exported, tmp_path) -> None:
    for seed in (0, 1):
        Image.fromarray(images(1)[0].roll(seed * 7, dims=1).numpy()).save(tmp_path / f"{seed}.png")
    for name in ("onnx", "plain"):
        assert main(["predict", str(exported[name]), str(tmp_path / "0.png"), str(tmp_path / "1.png"), "--out",
                     str(tmp_path / name), "--outputs", "labels", "--base-size", "0", "--mode", "whole",
                     "--quiet"]) == 0
    for seed in (0, 1):
        assert (tmp_path / "onnx" / f"{seed}.png").read_bytes() == (tmp_path / "plain" / f"{seed}.png").read_bytes()


def test_the_input_kind_is_recorded_and_a_file_from_before_the_entry_reads_as_normalised(exported, tmp_path,
                                                                                         capsys) -> None:
    for name, kind in (("onnx", IMAGE_INPUT), ("torchscript", IMAGE_INPUT), ("plain", NORMALISED_INPUT)):
        assert main(["info", str(exported[name]), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["export"]["input"] == kind
    proto = onnx.load(str(exported["plain"]))
    kept = [p for p in proto.metadata_props if p.key != "input"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    assert main(["info", str(older)]) == 0
    assert f"graph input: {NORMALISED_INPUT}; outputs: logits" in capsys.readouterr().out
    x = torch.randn(1, 3, *SIZE)
    assert torch.equal(OnnxRuntimeModel(older)(x), OnnxRuntimeModel(exported["plain"])(x))


def test_a_static_size_fixes_the_image_shape(exported, tmp_path, capsys) -> None:
    out = tmp_path / "fixed.onnx"
    assert main(["export", str(exported["checkpoint"]), "--format", "onnx", "--out", str(out), "--image-input",
                 "--static-size", "65", "81"]) == 0
    assert "input uint8 1×65×81×3 RGB" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 65, 81, 3]
    x = normalize(torch.randint(0, 256, (1, 3, 65, 81), dtype=torch.uint8), (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    with torch.no_grad():
        expected = pspnet.load(exported["checkpoint"])(x)
    assert_same_logits(OnnxRuntimeModel(out)(x), expected)
    with pytest.raises(pspnet.PSPNetError, match="exported for 65×81 inputs"):
        OnnxRuntimeModel(out)(torch.zeros(1, 3, 64, 80))
