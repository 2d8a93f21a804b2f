"""`pspnet.load` of an exported graph: the Python API (predict, probabilities, evaluate) runs it through the same
protocol as the checkpoint it came from; the commands that need a checkpoint say so in one line."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.errors import PSPNetError

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

SETTINGS = pspnet.InferenceSettings(base_size=None, crop_size=(33, 33))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("graphs")
    torch.manual_seed(0)
    model = pspnet.PSPNet(3, backbone="resnet18", output_stride=16, info=DatasetInfo("toy", ["a", "b", "c"]))
    ckpt = pspnet.save(model, root / "m.safetensors")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    (root / "lab").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        Image.fromarray(rng.integers(0, 3, (40, 52), dtype=np.uint8)).save(root / "lab" / f"{i}.png")
    for fmt, name in (("onnx", "m.onnx"), ("openvino", "m.xml")):
        assert main(["export", str(ckpt), "--format", fmt, "--out", str(root / name)]) == 0
    return root, ckpt, root / "m.onnx", root / "m.xml"


@pytest.mark.parametrize("graph", ["onnx", "xml"])
def test_a_loaded_graph_predicts_and_scores_as_its_checkpoint(exported, graph) -> None:
    root, ckpt, onnx, xml = exported
    model = pspnet.load(onnx if graph == "onnx" else xml)
    assert type(model).__name__ == ("OnnxRuntimeModel" if graph == "onnx" else "OpenVinoModel")
    assert model.info.classes == ["a", "b", "c"]
    reference = pspnet.load(ckpt)
    images = sorted((root / "img").glob("*.png"))
    expected = pspnet.predict(reference, images, SETTINGS)
    got = pspnet.predict(model, images, SETTINGS)
    assert all(g.shape == (40, 52) and (g == e).mean() >= 0.999 for g, e in zip(got, expected, strict=True))
    probs = pspnet.probabilities(model, images[0], SETTINGS)
    assert probs.shape == (3, 40, 52) and np.allclose(probs, pspnet.probabilities(reference, images[0], SETTINGS),
                                                      atol=1e-4)
    scored = pspnet.evaluate(model, root / "img", root / "lab", SETTINGS)
    assert abs(scored.scores.miou - pspnet.evaluate(reference, root / "img", root / "lab", SETTINGS).scores.miou) < 1e-4


def test_mistakes_with_graphs_are_one_line(exported, capsys) -> None:
    root, ckpt, onnx, xml = exported
    with pytest.raises(PSPNetError, match=r"m\.xml: an OpenVINO IR runs on the CPU; got map_location=cuda"):
        pspnet.load(xml, "cuda")
    with pytest.raises(PSPNetError, match=r"^model: got int; expected a PSPNet or what pspnet.load returns$"):
        pspnet.predict(5, root / "img" / "0.png")  # type: ignore[arg-type]
    with pytest.raises(PSPNetError, match=rf"^model: got the path {xml}; expected the model itself: model = "
                                          rf"pspnet.load\('{xml}'\), then pass model$"):
        pspnet.predict(str(xml), root / "img" / "0.png")  # type: ignore[arg-type]
    with pytest.raises(PSPNetError, match=r"nope\.onnx: no such ONNX file"):
        pspnet.load(root / "nope.onnx")
    # A command that needs the network's weights (export, training's init) names what it takes.
    assert main(["export", str(onnx), "--format", "onnx", "--out", str(root / "again.onnx")]) == 2
    assert capsys.readouterr().err == (f"pspnet export: error: {onnx}: an exported graph, not a checkpoint; this takes "
                                       "the checkpoint it was exported from (or a published model's name)\n")
    from pspnet.checkpoint import load

    with pytest.raises(PSPNetError, match="an exported graph, not a checkpoint"):
        load(xml)


def test_the_folder_pspnet_quantize_writes_loads_as_its_ir(exported) -> None:
    """`pspnet.load(DIR)` of `pspnet quantize --out DIR` (model.xml beside quantization.json), as the commands take it;
    an IR alone in a folder is not guessed at."""
    root, _, _, xml = exported
    folder = root / "quantized"
    folder.mkdir()
    for suffix in (".xml", ".bin"):
        (folder / f"model{suffix}").write_bytes(xml.with_suffix(suffix).read_bytes())
    with pytest.raises(PSPNetError, match="a folder, not a checkpoint file"):
        pspnet.load(folder)
    (folder / "quantization.json").write_text("{}")
    model = pspnet.load(folder)
    assert type(model).__name__ == "OpenVinoModel" and model.info.classes == ["a", "b", "c"]
