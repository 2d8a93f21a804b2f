"""The authors' Caffe models → ours, without Caffe, proven against Caffe's outputs (../shared/fixtures/caffe)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pspnet
from pspnet import PSPNetError
from pspnet.cli.main import main
from pspnet.convert.caffe import convert_caffe, read_caffemodel
from pspnet.data.imageops import normalize
from pspnet.engine.inference import InferenceSettings

CAFFE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "caffe"


@pytest.fixture(scope="module")
def caffe(tmp_path_factory) -> dict:
    """The fixture, and the seeded .caffemodel written by its own writer (187 MB, a few seconds)."""
    fx = torch.load(CAFFE / "caffe_pspnet50_ade20k.pt", weights_only=True)
    path = tmp_path_factory.mktemp("caffe") / "pspnet50_ADE20K.caffemodel"
    subprocess.run([sys.executable, str(CAFFE / "make_caffemodel.py"), str(CAFFE / "caffe_pspnet50_ade20k.pt"),
                    str(path)], check=True, capture_output=True, timeout=300)
    return {**fx, "path": path}


def rgb_input(model: pspnet.PSPNet, image: torch.Tensor) -> torch.Tensor:
    """The image as every pspnet model takes it: RGB, normalised with the checkpoint's own mean and std."""
    return normalize(image.permute(2, 0, 1)[None], model.info.mean, model.info.std)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_the_converted_model_reproduces_caffes_logits_and_class_map(caffe) -> None:
    model = convert_caffe(caffe["path"]).eval()
    c = model.config
    assert (c.backbone, c.num_classes, c.bins, c.stride_on_1x1, c.ceil_pool, c.aux) == \
        ("resnet50", 150, (6, 3, 2, 1), True, True, False)
    assert model.info.name == "ade20k" and model.info.std == (1 / 255,) * 3
    x = rgb_input(model, caffe["image_rgb"])
    captured = []  # the head's 1/8-resolution logits, taken on the way (one PSPNet-50 forward, not two)
    model.head.register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        out = model(x)
    assert relative_error(captured[0], caffe["logits_1_8"]) <= 1e-5
    assert torch.equal(out.argmax(1)[0], caffe["argmax"])
    yx = caffe["sample_yx"]
    assert relative_error(out[0, :, yx[:, 0], yx[:, 1]].T, caffe["sample_logits"]) <= 1e-5


def test_the_convert_command_writes_a_checkpoint_that_runs_at_any_size(caffe, tmp_path, capsys) -> None:
    dst = tmp_path / "pspnet50_ade20k_caffe.safetensors"
    assert main(["convert", "--from", "caffe", str(caffe["path"]), str(dst),
                 "--prototxt", str(CAFFE / "pspnet50_ADE20K_473.prototxt")]) == 0
    assert "resnet50, deep stem 64-64-128, 150 classes (ade20k), aux head absent" in capsys.readouterr().out
    assert main(["info", str(dst), "--json"]) == 0
    assert '"deploy_input": [\n   1,\n   3,\n   473,\n   473\n  ]' in capsys.readouterr().out
    model = pspnet.load(dst)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 129)).shape == (1, 150, 97, 129)  # not only the deploy size
    protocol = InferenceSettings.for_dataset(model.info.name)  # what eval/predict use without flags
    assert (protocol.base_size, protocol.crop_size) == (512, (473, 473))  # the authors' ADE20K test settings
    quick = InferenceSettings(base_size=129, mode="whole", flip=False)  # the protocol's 8 PSPNet-50 windows: 40 s
    assert pspnet.predict(model, caffe["image_rgb"].numpy(), quick).shape == (473, 473)


def test_a_file_that_is_no_caffemodel_or_no_pspnet_is_a_one_line_error(caffe, tmp_path) -> None:
    (tmp_path / "x.caffemodel").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(PSPNetError, match="x.caffemodel"):
        convert_caffe(tmp_path / "x.caffemodel")
    sys.path.insert(0, str(CAFFE))
    import caffe_pb2

    net = caffe_pb2.NetParameter()
    for name, kind in (("conv1_1_3x3_s2", "Convolution"), ("conv6", "Convolution"), ("scale_extra", "Scale")):
        layer = net.layer.add()
        layer.name, layer.type = name, kind
        blob = layer.blobs.add()
        blob.shape.dim.extend([2, 3, 1, 1])
        blob.data.extend([0.0] * 6)
    (tmp_path / "odd.caffemodel").write_bytes(net.SerializeToString())
    assert set(read_caffemodel(tmp_path / "odd.caffemodel")) == {"conv1_1_3x3_s2", "conv6", "scale_extra"}
    with pytest.raises(PSPNetError, match="0 blocks in stage 4"):
        convert_caffe(tmp_path / "odd.caffemodel")


def test_the_authors_release_by_name_reads_the_hand_downloaded_file_from_the_cache(caffe, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PSPNetError, match=r"pspnet50_ade20k: pspnet50_ADE20K.caffemodel is published on a download "
                                          r"page only \(https://drive.google.com/.*\); download it by hand"):
        pspnet.load("pspnet50_ade20k")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "pspnet50_ADE20K.caffemodel").symlink_to(caffe["path"])
    model = pspnet.load("pspnet50_ade20k")
    assert (cache / "pspnet50_ade20k.pspnet.safetensors").is_file()  # converted once
    converted = convert_caffe(caffe["path"]).state_dict()  # the model the test above checks against Caffe's logits
    assert all(torch.equal(v, converted[k]) for k, v in model.state_dict().items()) and len(converted) == len(
        model.state_dict())


def test_a_hand_placed_file_of_another_model_or_replaced_later_is_not_taken_for_the_named_one(caffe, tmp_path,
                                                                                             monkeypatch) -> None:
    """No hash checks the authors' files: the ADE20K PSPNet-50 put in place of the VOC PSPNet-101 was loaded as it
    (with the VOC provenance), and once converted, the converted copy was used whatever became of the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "pspnet101_VOC2012.caffemodel").symlink_to(caffe["path"])
    with pytest.raises(PSPNetError, match=r"pspnet101_VOC2012.caffemodel: a PSPNet of resnet50, 150 classes; "
                                          r"pspnet101_voc2012 is resnet101, 21 classes \(Pascal VOC 2012\): is this "
                                          r"the file pspnet101_VOC2012.caffemodel of https://drive"):
        pspnet.load("pspnet101_voc2012")
    assert not (cache / "pspnet101_voc2012.pspnet.safetensors").exists()
    (cache / "pspnet50_ADE20K.caffemodel").symlink_to(caffe["path"])
    pspnet.load("pspnet50_ade20k")  # converted and kept
    converted = cache / "pspnet50_ade20k.pspnet.safetensors"
    (cache / "pspnet50_ADE20K.caffemodel").unlink()
    (cache / "pspnet50_ADE20K.caffemodel").write_bytes(b"not the model")  # replaced after the conversion
    stamp = converted.stat().st_mtime + 10
    os.utime(cache / "pspnet50_ADE20K.caffemodel", (stamp, stamp))
    with pytest.raises(PSPNetError, match="pspnet50_ADE20K.caffemodel"):
        pspnet.load("pspnet50_ade20k")  # read again, not the copy of the file it replaced
