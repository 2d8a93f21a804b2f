"""`pspnet export` as a user runs it, and the exported files run by ONNX Runtime and TorchScript."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import pspnet
from pspnet import PSPNetError
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.export import OnnxRuntimeModel, TorchScriptModel, read_onnx_metadata
from pspnet.export.graph import torchscript_quietly

# Each size's 1/8 feature map (13×17, 15×20, 10×13) is not divisible by the 6-bin pooling.
SIZES = [(97, 129), (120, 160), (75, 101)]
# A side of at most the output stride: a 1-pixel feature map, where a size branch frozen in the traced graph gave
# all-NaN logits (align_corners's (in − 1) / (out − 1) at out = 1).
SMALL = [(7, 5), (8, 8), (16, 1), (1, 300)]
INFO = DatasetInfo("toy", ["sky", "road", "car", "tree", "person"], [(1, 2, 3), (4, 5, 6), (7, 8, 9), (9, 9, 9),
                                                                     (0, 0, 0)], mean=(0.4, 0.5, 0.6),
                   std=(0.2, 0.3, 0.25))


@pytest.fixture(scope="module")
def model_and_files(tmp_path_factory) -> tuple[pspnet.PSPNet, Path, Path, Path]:
    """A random resnet18 PSPNet with non-trivial BN statistics and logits of order 1, saved and exported by the CLI."""
    torch.manual_seed(0)
    model = pspnet.PSPNet(5, backbone="resnet18", aux=False, info=INFO)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.nn.init.normal_(model.head.classifier.weight, std=1.0)
    root = tmp_path_factory.mktemp("export")
    checkpoint = pspnet.save(model, root / "tiny.safetensors")
    onnx_file, ts_file = root / "tiny.onnx", root / "tiny.pt"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(onnx_file), "--argmax"]) == 0
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(ts_file)]) == 0
    return pspnet.load(checkpoint), checkpoint, onnx_file, ts_file


def assert_close_to_pytorch(logits: torch.Tensor, expected: torch.Tensor) -> None:
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max().item() <= 1e-3
    assert (logits.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.999


@pytest.mark.parametrize("size", SIZES + SMALL)
def test_onnx_runtime_matches_pytorch_at_sizes_not_divisible_by_the_bins(model_and_files, size) -> None:
    model, _, onnx_file, _ = model_and_files
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
    assert_close_to_pytorch(OnnxRuntimeModel(onnx_file)(x), expected)


@pytest.mark.parametrize("size", SIZES + SMALL)
def test_torchscript_matches_pytorch_at_sizes_not_divisible_by_the_bins(model_and_files, size) -> None:
    model, _, _, ts_file = model_and_files
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
    assert_close_to_pytorch(TorchScriptModel(ts_file)(x), expected)


def test_the_exported_graphs_convolve_the_pyramid_at_its_bins(model_and_files) -> None:
    """The four branches are not upsampled (`pspnet.model.pyramid_conv`): only the final upsampling resizes, in the
    ONNX graph and in the TorchScript one; the tests above hold their logits to the model's."""
    import onnx

    model, _, onnx_file, ts_file = model_and_files
    graph = onnx.load(str(onnx_file)).graph
    assert [n.op_type for n in graph.node].count("Resize") == 1
    # Every convolution's weight is an initializer, the head's split by the exporter (ONNX Runtime's int8 quantiser
    # quantises only those: with a Split left in the graph its int8 CamVid model ran 70 → 92 ms).
    initializers = {i.name: tuple(i.dims) for i in graph.initializer}
    weights = [initializers.get(n.input[1]) for n in graph.node if n.op_type == "Conv"]
    assert None not in weights and (512, 512, 3, 3) in weights, weights
    with torchscript_quietly():
        traced = torch.jit.load(str(ts_file))
    assert str(traced.inlined_graph).count("aten::upsample_bilinear2d") == 1
    assert not model.pyramid_at_bins  # the exporters switch it on a copy


def test_onnx_graph_has_dynamic_batch_height_and_width(model_and_files) -> None:
    _, _, onnx_file, _ = model_and_files
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input" and inp.shape[1] == 3
    assert all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))


def test_every_graph_names_its_tensors_as_the_docs_do_and_states_the_class_count(model_and_files, tmp_path,
                                                                                  capsys) -> None:
    """docs/export.md's table: `input` and `logits` (N×C×H×W, C the class count, readable from the graph), in an
    ONNX file and in an IR converted from the checkpoint (whose converter named them `x` and nothing); a
    --static-size graph's metadata and `pspnet info` give its one size (they said N×3×H×W)."""
    _, checkpoint, onnx_file, _ = model_and_files
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "logits" and session.get_outputs()[0].shape[1] == 5
    static = tmp_path / "static.onnx"
    assert main(["export", str(checkpoint), "--out", str(static), "--static-size", "60", "80"]) == 0
    assert json.loads(read_onnx_metadata(static)["input"]) == "float 1×3×60×80, (rgb / 255 - mean) / std"
    capsys.readouterr()
    assert main(["info", str(static)]) == 0
    assert "graph input: float 1×3×60×80, (rgb / 255 - mean) / std; outputs: logits" in capsys.readouterr().out
    if importlib.util.find_spec("openvino") is None:
        return
    import openvino as ov

    for extra in ([], ["--image-input"]):
        ir = tmp_path / f"m{len(extra)}.xml"
        assert main(["export", str(checkpoint), "--out", str(ir), *extra]) == 0
        graph = ov.Core().read_model(str(ir))
        assert [i.get_names() for i in graph.inputs] == [{"input"}]
        assert [o.get_names() for o in graph.outputs] == [{"logits"}]


def test_argmax_adds_a_label_output_equal_to_the_argmax_of_the_logits(model_and_files) -> None:
    _, _, onnx_file, _ = model_and_files
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "labels"]
    x = torch.randn(1, 3, 75, 101).numpy()
    logits, labels = session.run(None, {"input": x})
    assert labels.dtype == np.int64 and labels.shape == (1, 75, 101)
    assert np.array_equal(labels, logits.argmax(1))


def test_metadata_round_trips_through_both_formats(model_and_files) -> None:
    model, _, onnx_file, ts_file = model_and_files
    assert OnnxRuntimeModel(onnx_file).info == INFO
    assert TorchScriptModel(ts_file).info == INFO
    meta = read_onnx_metadata(onnx_file)
    assert meta["outputs"] == '["logits", "labels"]'
    assert pspnet.ModelConfig.from_dict(json.loads(meta["model"])) == model.config


@pytest.mark.parametrize("which", ["onnx", "torchscript"])
def test_info_reads_an_exported_file_without_running_it(model_and_files, capsys, which) -> None:
    model, _, onnx_file, ts_file = model_and_files
    path = onnx_file if which == "onnx" else ts_file
    assert main(["info", str(path), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert DatasetInfo.from_dict(meta["info"], "test") == INFO
    assert pspnet.ModelConfig.from_dict(meta["model"]) == model.config
    assert meta["export"]["outputs"] == (["logits", "labels"] if which == "onnx" else ["logits"])
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"file: {path} (") and lines[2] == "classes (toy): sky, road, car, tree, person"


def test_info_of_a_file_that_is_no_export_of_ours_is_one_line(tmp_path, capsys) -> None:
    plain = tmp_path / "plain.onnx"
    with torchscript_quietly():
        torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.randn(1, 3, 4, 4),), str(plain), dynamo=False)
    (tmp_path / "junk.xml").write_text("junk")
    for path, expected in ((plain, "no pspnet metadata"), (tmp_path / "junk.xml", "not an OpenVINO IR"),
                           (tmp_path / "missing.onnx", "no such file")):
        assert main(["info", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and expected in err, err


def test_export_prints_what_it_wrote(model_and_files, tmp_path, capsys) -> None:
    _, checkpoint, _, _ = model_and_files
    out = tmp_path / "fixed.onnx"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out), "--static-size", "65", "81",
                 "--opset", "11"]) == 0
    assert "input 1×3×65×81" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 65, 81]


def test_exporting_a_file_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path, capsys) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    assert main(["export", str(bogus), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a checkpoint" in err and str(bogus) in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("fmt", "name", "suffix"), [("onnx", "m.xml", ".onnx"), ("openvino", "m.onnx", ".xml"),
                                                   ("torchscript", "m.onnx", ".pt"),
                                                   ("torchscript", "m.txt", ".pt")])  # predict reads .txt as a list
def test_an_output_named_as_another_format_is_a_one_line_error(model_and_files, tmp_path, capsys, fmt, name,
                                                               suffix) -> None:
    """`--backend auto` picks the engine by the suffix: an ONNX file named .xml would be handed to OpenVINO."""
    _, checkpoint, _, _ = model_and_files
    assert main(["export", str(checkpoint), "--format", fmt, "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--format {fmt} writes {suffix} files" in err, err
    assert err.endswith(f"name it e.g. m{suffix}")
    assert not (tmp_path / name).exists()


def test_without_format_the_output_suffix_names_it(model_and_files, tmp_path, capsys) -> None:
    _, checkpoint, _, _ = model_and_files
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'm.onnx'}: onnx, input N×3×H×W")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.pt")]) == 0
    assert torch.jit.load(str(tmp_path / "m.pt")) is not None
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.bin")]) == 2
    assert capsys.readouterr().err.strip().endswith("--out " + str(tmp_path / "m.bin") + ": the suffix names no "
                                                    "format; name it model.onnx, model.pt or model.xml (OpenVINO), or "
                                                    "give --format onnx|torchscript|openvino")


def test_an_ir_with_argmax_is_refused_without_other_complaints(model_and_files, tmp_path, capsys) -> None:
    _, checkpoint, _, _ = model_and_files
    assert main(["export", str(checkpoint), "--format", "openvino", "--out", str(tmp_path / "m.xml"), "--argmax"]) == 2
    assert capsys.readouterr().err.strip() == ("pspnet export: error: --argmax is ONNX/TorchScript only; an OpenVINO "
                                               "IR outputs the logits")


@pytest.mark.parametrize("opset", ["9", "11", "21"])  # 11 of any size: written, then refused by both engines
def test_an_unsupported_opset_is_a_one_line_error(model_and_files, tmp_path, capsys, opset) -> None:
    _, checkpoint, _, _ = model_and_files
    assert main(["export", str(checkpoint), "--format", "onnx", "--opset", opset, "--out",
                 str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"opset {opset} " in err and "12 to 20" in err


def test_files_that_are_not_exports_are_refused_by_name(model_and_files, tmp_path) -> None:
    _, checkpoint, _, _ = model_and_files
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(PSPNetError, match="bogus.onnx"):
        OnnxRuntimeModel(bogus)
    with pytest.raises(PSPNetError, match="not a TorchScript file"):
        TorchScriptModel(checkpoint)
    plain = tmp_path / "plain.onnx"  # an ONNX graph without our metadata
    with torchscript_quietly():
        torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.randn(1, 3, 4, 4),), str(plain), input_names=["input"],
                          output_names=["logits"], dynamo=False)
    with pytest.raises(PSPNetError, match="no pspnet metadata"):
        OnnxRuntimeModel(plain)


def test_predict_with_onnxruntime_writes_the_same_pngs_as_pytorch(model_and_files, tmp_path) -> None:
    _, checkpoint, onnx_file, _ = model_and_files
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "street.png")
    protocol = ["--crop-size", "65", "--base-size", "0", "--device", "cpu", "--quiet"]  # 2×2 windows, flipped
    assert main(["predict", str(checkpoint), str(tmp_path / "street.png"), "--out", str(tmp_path / "torch"),
                 *protocol]) == 0
    assert main(["predict", "--backend", "onnxruntime", str(onnx_file), str(tmp_path / "street.png"), "--out",
                 str(tmp_path / "ort"), *protocol]) == 0
    for name in ("street.png", "color/street.png", "overlay/street.png"):
        torch_png = np.asarray(Image.open(tmp_path / "torch" / name))
        ort_png = np.asarray(Image.open(tmp_path / "ort" / name))
        assert np.mean(torch_png == ort_png) >= 0.999, name
    assert len(np.unique(np.asarray(Image.open(tmp_path / "torch" / "street.png")))) > 1


def test_the_deployment_code_in_the_docs_predicts_what_pspnet_predict_writes(model_and_files, tmp_path,
                                                                              monkeypatch, capsys) -> None:
    """docs/export.md "Deploying without pspnet": its blocks, run as written on an exported file and an image,
    give the labels of `pspnet predict --mode whole --base-size 0 --no-flip` (ONNX Runtime, then OpenVINO), for a
    photo stored sideways with an EXIF orientation too."""
    _, checkpoint, onnx_file, _ = model_and_files
    docs = (Path(__file__).parents[2] / "docs" / "export.md").read_text()
    section = docs.split("## Deploying without pspnet\n")[1].split("\n## ")[0]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(onnx_file.read_bytes())
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, turned upright by viewers (a phone photo)
    Image.fromarray(rng.integers(0, 256, (75, 101, 3), dtype=np.uint8)).save(tmp_path / "street.jpg", exif=exif)
    assert main(["predict", str(checkpoint), "street.jpg", "--out", "o", "--mode", "whole", "--base-size", "0",
                 "--no-flip", "--outputs", "labels", "--backend", "torch", "--quiet"]) == 0
    expected = np.asarray(Image.open(tmp_path / "o" / "street.png"))
    assert expected.shape == (101, 75)
    scope: dict = {}
    exec(blocks[0], scope)  # noqa: S102  (the documentation's own code)
    assert scope["labels"].shape == expected.shape and np.mean(scope["labels"] == expected) >= 0.999
    assert set(scope["names"]) <= set(INFO.classes)
    if importlib.util.find_spec("openvino") is not None:
        exec(blocks[1], scope)  # noqa: S102
        assert np.mean(scope["labels_ov"] == expected) >= 0.999


def test_an_openvino_export_never_replaces_a_bin_file_it_did_not_write(model_and_files, tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    _, checkpoint, _, _ = model_and_files
    (tmp_path / "w.bin").write_text("precious")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "w.xml")]) == 2
    assert capsys.readouterr().err == (f"pspnet export: error: --out {tmp_path / 'w.xml'}: its weights file "
                                       f"{tmp_path / 'w.bin'}: exists; pass --overwrite to replace it, or choose "
                                       "another name\n")
    assert (tmp_path / "w.bin").read_text() == "precious" and not (tmp_path / "w.xml").exists()


def test_a_torchscript_export_given_as_a_model_says_what_runs_it(model_and_files, tmp_path, capsys) -> None:
    """torch.load's warning and its advice to load with weights_only=False before; one line now."""
    _, _, _, ts_file = model_and_files
    with pytest.raises(PSPNetError, match=r"a TorchScript archive .*TorchScriptModel runs it\)$"):
        pspnet.load(ts_file)
    assert main(["predict", str(ts_file), str(ts_file), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a TorchScript archive" in err and "weights_only" not in err


def test_a_precision_onnx_runtime_does_not_run_is_refused(model_and_files, tmp_path, capsys) -> None:
    _, _, onnx_file, _ = model_and_files
    image = tmp_path / "x.png"
    Image.new("RGB", (9, 9)).save(image)
    assert main(["predict", str(onnx_file), str(image), "--out", str(tmp_path / "o"), "--backend", "onnxruntime",
                 "--precision", "bf16"]) == 2  # run in fp32 without a word before
    assert "--precision bf16: ONNX Runtime runs the graph's own types (fp32)" in capsys.readouterr().err
    assert main(["predict", str(onnx_file), str(image), "--out", str(tmp_path / "o"), "--backend", "onnxruntime",
                 "--precision", "int8"]) == 2  # named the openvino backend, which refuses an f32 graph in int8
    assert (f"int8 runs on --backend openvino from an IR that `pspnet quantize {onnx_file} --calib IMAGES --out DIR` "
            "makes") in capsys.readouterr().err


def test_ctrl_c_inside_openvinos_conversion_is_an_interruption(model_and_files, tmp_path, capsys, monkeypatch):
    ov = pytest.importorskip("openvino")
    _, checkpoint, _, _ = model_and_files

    def interrupted(*args, **kwargs):  # as OpenVINO wraps a Ctrl-C inside its conversion
        raise RuntimeError("Check 'is_conversion_successful' failed\nKeyboardInterrupt: <EMPTY MESSAGE>")

    monkeypatch.setattr(ov, "convert_model", interrupted)
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.xml")]) == 130
    assert capsys.readouterr().err.rstrip().endswith("pspnet export: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_the_parts_of_an_ir_given_alone_name_the_whole(model_and_files, tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    _, checkpoint, _, _ = model_and_files
    xml = tmp_path / "m.xml"
    assert main(["export", str(checkpoint), "--out", str(xml)]) == 0
    capsys.readouterr()
    assert main(["info", str(xml.with_suffix(".bin"))]) == 2
    assert f"{xml.with_suffix('.bin')}: the weights of the OpenVINO IR {xml}; give the .xml" in capsys.readouterr().err
    xml.with_suffix(".bin").rename(tmp_path / "elsewhere.bin")
    assert main(["info", str(xml)]) == 2  # OpenVINO's own words named no file
    assert f"{xml}: its weights file {xml.with_suffix('.bin')} is missing" in capsys.readouterr().err
