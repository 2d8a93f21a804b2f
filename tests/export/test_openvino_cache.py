"""The OpenVINO conversion cache: a model converted once is read back the next time, with the same outputs; any
change to what the graph depends on converts afresh; a damaged entry or an unwritable folder never fails a run."""

from pathlib import Path

import pytest
import torch

import pspnet
from pspnet.classes import DatasetInfo

pytest.importorskip("openvino")

from pspnet.export import openvino as ov_export  # noqa: E402
from pspnet.export.openvino import OpenVinoModel  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "openvino"


@pytest.fixture
def conversions(monkeypatch) -> list[int]:
    """Counts the real conversions."""
    calls: list[int] = []
    convert = ov_export.convert

    def counted(model):  # noqa: ANN001, ANN202
        calls.append(1)
        return convert(model)

    monkeypatch.setattr(ov_export, "convert", counted)
    return calls


@pytest.fixture
def quick_conversions(monkeypatch) -> list[int]:
    """Counts conversions that stand in for the real one (5 s each on a slow CPU) where the cache's bookkeeping is
    what is tested: a 1×1 convolution to the model's classes, its bias the model's classifier's, with the model's
    metadata, so that a graph read back can be compared with a fresh one."""
    import openvino

    calls: list[int] = []

    def stand_in(model):  # noqa: ANN001, ANN202
        calls.append(1)
        conv = torch.nn.Conv2d(3, model.config.num_classes, 1)
        with torch.no_grad():
            conv.weight.fill_(0.25)
            conv.bias.copy_(model.head.classifier.bias)
        graph = openvino.convert_model(conv, example_input=torch.zeros(1, 3, 8, 8), input=[(-1, 3, -1, -1)])
        ov_export.attach_metadata(graph, ov_export.model_metadata(model, ["logits"]))
        return graph

    monkeypatch.setattr(ov_export, "convert", stand_in)
    return calls


def tiny(seed: int = 0, classes: int = 3) -> pspnet.PSPNet:
    torch.manual_seed(seed)
    names = [chr(ord("a") + i) for i in range(classes)]
    return pspnet.PSPNet(classes, backbone="resnet18", output_stride=16, info=DatasetInfo("toy", names)).eval()


def test_a_model_is_converted_once_and_read_back_with_the_same_outputs(cache, conversions) -> None:
    x = torch.randn(2, 3, 41, 57)
    first = OpenVinoModel(tiny())
    again = OpenVinoModel(tiny())  # another process would load the same checkpoint: equal weights, new objects
    assert len(conversions) == 1 and "converted earlier" in again.source, again.source
    assert len(list(cache.glob("*.xml"))) == 1 and len(list(cache.glob("*.bin"))) == 1
    torch.testing.assert_close(again(x), first(x), rtol=0, atol=0)
    assert again.info.classes == ["a", "b", "c"]


def test_other_weights_or_classes_are_converted_afresh(cache, quick_conversions) -> None:
    OpenVinoModel(tiny())  # the stand-in graph carries the classifier's bias: another bias, other outputs
    changed = tiny()
    with torch.no_grad():
        changed.head.classifier.bias[0] += 1.0
    x = torch.randn(1, 3, 33, 33)
    assert not torch.equal(OpenVinoModel(changed)(x), OpenVinoModel(tiny())(x))
    OpenVinoModel(tiny(classes=4))
    assert len(quick_conversions) == 3 and len(list(cache.glob("*.xml"))) == 3


def test_the_cache_keeps_the_graphs_used_last(cache, quick_conversions) -> None:
    for seed in range(6):
        OpenVinoModel(tiny(seed))
    assert len(list(cache.glob("*.xml"))) == 4 and len(list(cache.glob("*.bin"))) == 4
    OpenVinoModel(tiny(5))  # the last one is still there
    OpenVinoModel(tiny(2))  # and the fourth from last
    assert len(quick_conversions) == 6
    OpenVinoModel(tiny(0))  # the first one is not
    assert len(quick_conversions) == 7


def test_a_damaged_entry_is_converted_again(cache, quick_conversions) -> None:
    x = torch.randn(1, 3, 33, 33)
    expected = OpenVinoModel(tiny())(x)
    (xml,) = cache.glob("*.xml")
    xml.write_text("<net>cut off")
    assert torch.equal(OpenVinoModel(tiny())(x), expected)
    assert len(quick_conversions) == 2
    xml.with_suffix(".bin").write_bytes(b"")  # an empty weight file
    assert torch.equal(OpenVinoModel(tiny())(x), expected)


def test_a_read_only_cache_is_read(cache, quick_conversions, monkeypatch, capsys) -> None:
    """A cache filled beforehand (a container image, another user's): marking the entry as used failed, and the entry
    was taken for a damaged one, converted again on every run with a warning that it cannot be kept."""
    import errno
    import os

    OpenVinoModel(tiny())

    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    capsys.readouterr()
    again = OpenVinoModel(tiny())
    assert "converted earlier" in again.source and len(quick_conversions) == 1
    assert "warning" not in capsys.readouterr().err


def test_an_unwritable_cache_warns_once_and_runs(tmp_path, monkeypatch, capsys, quick_conversions) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("PSPNET_CACHE", str(tmp_path / "file"))
    model = OpenVinoModel(tiny())
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "PSPNET_CACHE" in warnings[0], warnings


def test_an_entry_that_cannot_be_read_back_warns_and_runs_the_graph_in_memory(cache, monkeypatch, capsys,
                                                                              quick_conversions) -> None:
    """The run goes on with the graph it converted when the entry it wrote does not read back (a full disk that
    truncated it, another process replacing it)."""
    def truncated(graph, path):  # noqa: ANN001, ANN202
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("<net>cut off")
        path.with_suffix(".bin").write_bytes(b"")
        return path

    monkeypatch.setattr(ov_export, "save_ir", truncated)
    model = OpenVinoModel(tiny())
    assert model.source == "the model, converted in memory"
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot keep the converted model" in warnings[0], warnings


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch, quick_conversions) -> None:
    monkeypatch.setenv("PSPNET_CACHE", "none")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    OpenVinoModel(tiny())
    OpenVinoModel(tiny())
    assert len(quick_conversions) == 2 and not any(tmp_path.rglob("*.xml"))


def test_predict_says_where_the_graph_came_from(cache, tmp_path, capsys) -> None:
    from PIL import Image

    from pspnet.cli.main import main

    ckpt = pspnet.save(tiny(), tmp_path / "m.safetensors")
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    args = ["predict", str(ckpt), str(tmp_path / "a.png"), "--backend", "openvino", "--quiet", "--device", "cpu",
            "--crop-size", "33", "--base-size", "0"]  # the image at its own size: the message is what counts
    assert main([*args, "--out", str(tmp_path / "o1")]) == 0
    assert "OpenVINO graph: the model, converted (kept in" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "o2")]) == 0
    assert "OpenVINO graph: the model, converted earlier" in capsys.readouterr().err
