"""mmsegmentation's PSPNet checkpoints → ours, proven against mmseg's own outputs (the shared fixture)."""

import re
import sys
from pathlib import Path

import pytest
import torch

import pspnet
from pspnet import PSPNet, PSPNetError
from pspnet.checkpoint import read_metadata
from pspnet.cli.main import main
from pspnet.convert.mmseg import DEEP_STEM, convert_mmseg_state

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"


@pytest.fixture(scope="module")
def mmseg_fixture() -> dict:
    sys.path.insert(0, str(FIXTURES))
    from official_weights import fill

    fx = torch.load(FIXTURES / "mmseg_pspnet_r50_c19.pt", weights_only=True)
    return {**fx, "state": fill(fx["shapes"], fx["seed"])}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_a_zoo_checkpoint_reproduces_mmsegs_logits(mmseg_fixture) -> None:
    model = convert_mmseg_state({"meta": {}, "state_dict": mmseg_fixture["state"]}, "fixture").eval()
    c = model.config
    assert (c.backbone, c.stem_channels, c.dilation, c.align_corners, c.num_classes) == \
        ("resnet50", (32, 32, 64), "contracted", False, 19)
    with torch.no_grad():
        for x, expected, aux in zip(mmseg_fixture["inputs"], mmseg_fixture["outputs"],
                                    mmseg_fixture["aux_outputs_1_8"], strict=True):
            out = model(x)
            assert out.shape == expected.shape and relative_error(out, expected) <= 1e-5
            assert torch.equal(out.argmax(1), expected.argmax(1))
            assert relative_error(model.aux_head(model.backbone(x)[0]), aux) <= 1e-5


def test_the_convert_command_and_pspnet_load_take_a_zoo_file(mmseg_fixture, tmp_path, capsys) -> None:
    src = tmp_path / "pspnet_r50-d8_512x1024_40k_cityscapes.pth"
    torch.save({"meta": {"dataset_meta": {"classes": [f"c{i}" for i in range(19)]}},
                "state_dict": mmseg_fixture["state"]}, src)
    dst = tmp_path / "converted.safetensors"
    assert main(["convert", "--from", "mmseg", str(src), str(dst)]) == 0
    assert "deep stem 32-32-64, 19 classes" in capsys.readouterr().out
    meta = read_metadata(dst)
    assert meta["provenance"]["source"] == "mmsegmentation" and meta["info"]["classes"][3] == "c3"
    x, expected = mmseg_fixture["inputs"][0], mmseg_fixture["outputs"][0]
    with torch.no_grad():
        for model in (pspnet.load(dst), pspnet.load(src)):
            assert relative_error(model(x), expected) <= 1e-5


def mmseg_layout(model: PSPNet) -> dict[str, torch.Tensor]:
    """Our state dict under mmseg's key names (the inverse of the converter's renaming)."""
    stem = {v: k for k, v in DEEP_STEM.items()}
    out = {}
    for k, v in model.state_dict().items():
        if m := re.fullmatch(r"backbone\.stem\.(\w+)\.(.+)", k):
            k = f"backbone.stem.{stem[m[1]]}.{m[2]}" if model.config.deep_stem else f"backbone.{m[1]}.{m[2]}"
        elif m := re.fullmatch(r"ppm\.branches\.(\d)\.(conv|norm)\.(.+)", k):
            k = f"decode_head.psp_modules.{m[1]}.1.{'conv' if m[2] == 'conv' else 'bn'}.{m[3]}"
        elif m := re.fullmatch(r"(head|aux_head)\.(conv|norm|classifier)\.(.+)", k):
            head = "decode_head" if m[1] == "head" else "auxiliary_head"
            part = {"conv": "bottleneck.conv" if m[1] == "head" else "convs.0.conv",
                    "norm": "bottleneck.bn" if m[1] == "head" else "convs.0.bn", "classifier": "conv_seg"}[m[2]]
            k = f"{head}.{part}.{m[3]}"
        out[k] = v.clone()
    return out


@pytest.mark.parametrize("aux", [True, False])
def test_an_r18b_file_with_the_7x7_stem_and_narrow_heads_is_read_off_its_tensors(aux) -> None:
    torch.manual_seed(0)
    settings = dict(backbone="resnet18", deep_stem=False, dilation="contracted", align_corners=False, aux=aux,
                    head_channels=128, ppm_channels=128, **({"aux_channels": 64} if aux else {}))
    original = PSPNet(7, **settings).eval()
    model = convert_mmseg_state({"state_dict": mmseg_layout(original)}, "r18b").eval()
    assert model.config == original.config
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_a_key_that_is_not_part_of_an_mmseg_pspnet_is_named(mmseg_fixture) -> None:
    state = {**mmseg_fixture["state"], "neck.extra.weight": torch.zeros(1)}
    with pytest.raises(PSPNetError, match="neck.extra.weight"):
        convert_mmseg_state({"state_dict": state}, "f.pth")
    without_head = {k: v for k, v in mmseg_fixture["state"].items() if not k.startswith("decode_head.conv_seg")}
    with pytest.raises(PSPNetError, match="not an mmsegmentation PSPNet checkpoint"):
        convert_mmseg_state({"state_dict": without_head}, "f.pth")


def test_align_corners_comes_from_the_stored_config_or_the_caller() -> None:
    """mmseg's 769×769 Cityscapes models resize with align_corners=True, which their weights do not show: read it
    from the file's `meta.config` (mmseg 0.x stores it), or take it from the caller (the catalogue, --align-corners)."""
    torch.manual_seed(0)
    settings = dict(backbone="resnet18", deep_stem=False, dilation="contracted", aux=False, head_channels=32,
                    ppm_channels=16)
    original = PSPNet(5, align_corners=True, **settings).eval()
    state = mmseg_layout(original)
    config = "model = dict(decode_head=dict(align_corners=True), auxiliary_head=dict(align_corners=True))"
    stored = convert_mmseg_state({"meta": {"config": config}, "state_dict": state}, "769").eval()
    assert stored.config.align_corners
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        assert torch.equal(stored(x), original(x))
    assert not convert_mmseg_state({"state_dict": state}, "plain").config.align_corners
    assert convert_mmseg_state({"state_dict": state}, "told", align_corners=True).config.align_corners


def test_align_corners_is_an_mmseg_option_of_convert(tmp_path, capsys) -> None:
    src = tmp_path / "x.pth"
    torch.save({"state_dict": {}}, src)
    assert main(["convert", "--from", "semseg", str(src), str(tmp_path / "y.safetensors"), "--align-corners"]) == 2
    assert "--align-corners is for --from mmseg" in capsys.readouterr().err


def test_convert_mistakes_with_a_zoo_file_are_one_line_each(mmseg_fixture, tmp_path, capsys) -> None:
    src = tmp_path / "zoo.pth"
    torch.save({"meta": {}, "state_dict": mmseg_fixture["state"]}, src)
    binary = tmp_path / "deploy.prototxt"
    binary.write_bytes(bytes(range(128, 256)))
    for argv, expected in (
            (["--from", "semseg", str(src), str(tmp_path / "a.safetensors")],
             f"{src}: an mmsegmentation checkpoint; convert it with --from mmseg"),  # was a pspnet state_dict
            (["--from", "mmseg", str(src), str(tmp_path / "a.onnx")],  # weights in an .onnx: a bad graph later
             f"DST {tmp_path / 'a.onnx'}: convert writes a pspnet .safetensors file; name it e.g. a.safetensors"),
            (["--from", "mmseg", str(src), str(tmp_path / "a.safetensors"), "--prototxt", str(binary)],
             "--prototxt is for --from caffe; mmseg files need none"),  # ignored before
            (["--from", "caffe", str(src), str(tmp_path / "a.safetensors"), "--prototxt", str(binary)],
             "not a"),  # the .pth as a .caffemodel, or the binary prototxt: one line either way
            (["--from", "mmseg", str(src), str(tmp_path / "a.safetensors"), "--dataset", "voc2012"],
             f"--dataset voc2012 has 21 classes; {src} has 19")):  # "PSPNet: 21 class names given for 19 classes"
        assert main(["convert", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("pspnet convert: error: ") and expected in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("a.*"))
    from pspnet.cli.convert import deploy_input

    with pytest.raises(PSPNetError, match="deploy.prototxt: not a text file; expected the deploy .prototxt"):
        deploy_input(binary)  # a UnicodeDecodeError's traceback before
