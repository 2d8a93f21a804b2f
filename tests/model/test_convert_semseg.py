import re

import pytest
import torch

import pspnet
from pspnet import PSPNet, PSPNetError
from pspnet.cli.main import main
from pspnet.convert.semseg import STEM, convert_semseg_state


def official_layout(model: PSPNet) -> dict[str, torch.Tensor]:
    """Our state dict under the official hszhao/semseg key names, as saved from DDP (`module.` prefix)."""
    stem = {v: k for k, v in STEM.items()}
    head = {"conv": "0", "norm": "1", "classifier": "4"}
    out = {}
    for k, v in model.state_dict().items():
        if m := re.fullmatch(r"backbone\.stem\.(\w+)\.(.+)", k):
            k = f"layer0.{stem[m[1]]}.{m[2]}"
        elif k.startswith("backbone."):
            k = k.removeprefix("backbone.")
        elif m := re.fullmatch(r"ppm\.branches\.(\d)\.(conv|norm)\.(.+)", k):
            k = f"ppm.features.{m[1]}.{'1' if m[2] == 'conv' else '2'}.{m[3]}"
        elif m := re.fullmatch(r"(head|aux_head)\.(\w+)\.(.+)", k):
            k = f"{'cls' if m[1] == 'head' else 'aux'}.{head[m[2]]}.{m[3]}"
        out["module." + k] = v.clone()
    return out


def test_converted_official_weights_reproduce_the_official_logits(official_fixture):
    state = {"module." + k: v for k, v in official_fixture["state"].items()}
    model = convert_semseg_state({"epoch": 100, "state_dict": state, "optimizer": {}}, "fixture").eval()
    assert model.config.backbone == "resnet50" and model.config.num_classes == 19 and model.config.aux
    assert model.info.name == "cityscapes"
    with torch.no_grad():
        for x, expected in zip(official_fixture["inputs"], official_fixture["outputs"], strict=True):
            out = model(x)
            assert out.shape == expected.shape
            assert ((out - expected).norm() / expected.norm()).item() < 1e-5


def test_convert_command_writes_a_checkpoint_that_reproduces_the_official_logits(official_fixture, tmp_path, capsys):
    src = tmp_path / "train_epoch_200.pth"
    torch.save({"epoch": 200, "state_dict": {"module." + k: v for k, v in official_fixture["state"].items()}}, src)
    dst = tmp_path / "pspnet50_cityscapes.safetensors"
    assert main(["convert", "--from", "semseg", str(src), str(dst)]) == 0
    assert "resnet50, deep stem 64-64-128, 19 classes (cityscapes)" in capsys.readouterr().out
    model = pspnet.load(dst)
    x, expected = official_fixture["inputs"][1], official_fixture["outputs"][1]
    with torch.no_grad():
        assert ((model(x) - expected).norm() / expected.norm()).item() < 1e-5


def test_depth_classes_and_aux_head_are_inferred_from_the_state_dict():
    source = PSPNet(21, backbone="resnet101", aux=False)
    model = convert_semseg_state({"state_dict": official_layout(source)}, "r101.pth")
    assert model.config.backbone == "resnet101" and model.config.num_classes == 21 and not model.config.aux
    assert model.info.name == "voc2012"
    ours, theirs = model.state_dict(), source.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_pspnet_load_accepts_an_official_checkpoint_file(tmp_path):
    source = PSPNet(150, backbone="resnet50")
    path = tmp_path / "train_epoch_100.pth"
    torch.save({"epoch": 100, "state_dict": official_layout(source)}, path)
    model = pspnet.load(path)
    assert model.info.name == "ade20k" and model.info.classes[0] == "wall"


def test_a_missing_official_key_is_an_error_that_names_it():
    state = official_layout(PSPNet(19, backbone="resnet50"))
    del state["module.layer2.1.bn2.running_var"]
    with pytest.raises(PSPNetError, match=r"1 missing: backbone\.layer2\.1\.bn2\.running_var"):
        convert_semseg_state({"state_dict": state}, "x.pth")


def test_keys_foreign_to_the_official_model_are_an_error():
    state = official_layout(PSPNet(19, backbone="resnet50"))
    state["module.fc.weight"] = torch.zeros(1000, 2048)
    with pytest.raises(PSPNetError, match="not part of the official PSPNet: fc.weight"):
        convert_semseg_state({"state_dict": state}, "x.pth")


def test_convert_command_reports_a_foreign_file_in_one_line(tmp_path, capsys):
    src = tmp_path / "x.pth"
    src.write_bytes(b"\x00garbage")
    assert main(["convert", "--from", "semseg", str(src), str(tmp_path / "y.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a checkpoint" in err and "Traceback" not in err


def test_a_cut_short_file_or_the_wrong_from_says_so_and_names_the_right_one(tmp_path, capsys):
    """A truncated .pth was "not a checkpoint"; --from caffe on a .pth was "not a readable .caffemodel (wire type
    3)", --from semseg on a .caffemodel "not a checkpoint", --from mmseg on the authors' .pth named no --from."""
    state = official_layout(PSPNet(3, backbone="resnet18", aux=False))
    src = tmp_path / "train_epoch_100.pth"
    torch.save({"epoch": 100, "state_dict": state}, src)
    data = src.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    caffemodel = tmp_path / "m.caffemodel"
    caffemodel.write_bytes(b"\x0a\x05hello")
    for from_, given, expected in [
        ("semseg", cut, f"{cut}: a zip archive cut short or damaged (a PyTorch .pth file is one); download or copy "
                        "it again"),
        ("caffe", src, f"{src}: a PyTorch or safetensors checkpoint, not a .caffemodel; convert it with --from semseg "
                       "(the authors' PyTorch code) or --from mmseg"),
        ("semseg", caffemodel, f"{caffemodel}: a Caffe model; convert it with --from caffe"),
        ("mmseg", src, f"{src}: a checkpoint of the authors' hszhao/semseg code; convert it with --from semseg"),
    ]:
        assert main(["convert", "--from", from_, str(given), str(tmp_path / "out.safetensors")]) == 2
        assert capsys.readouterr().err == f"pspnet convert: error: {expected}\n"
    assert not (tmp_path / "out.safetensors").exists()
