"""Named published weights: a well-formed catalogue, and download → hash check → conversion → cache, offline after
the first time, against a server on 127.0.0.1."""

import dataclasses
import hashlib
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import pspnet
import pspnet.weights as weights_module
from pspnet import PSPNet, PSPNetError
from pspnet.cli.main import main
from pspnet.model.resnet import DEPTHS
from pspnet.weights import HOST, Weights, list_models

sys.path.insert(0, str(Path(__file__).parent / "model"))
from test_convert_mmseg import mmseg_layout  # noqa: E402


def test_the_catalogue_is_well_formed() -> None:
    models = list_models()
    assert len(models) >= 40
    assert len({w.name for w in models}) == len(models), "names are unique"
    for w in models:
        if w.download == "page":  # the authors' Caffe releases: a download page, read by convert --from caffe
            assert w.url.startswith("https://drive.google.com/") and w.filename.endswith(".caffemodel"), w.name
            assert w.stem == "deep 64-64-128" and not w.sha256_prefix, w.name
        else:
            assert w.url.startswith(HOST + "mmsegmentation/") and w.url.endswith(".pth"), w.name
            assert re.fullmatch(r"[0-9a-f]{8,64}", w.sha256_prefix) and f"-{w.sha256_prefix}.pth" in w.url, w.name
            assert w.stem in ("deep 32-32-64", "7×7"), w.name  # what convert --from mmseg reads
        assert w.backbone in DEPTHS and w.license and w.dataset, w.name
        scores = [v for v in (w.mIoU, w.mIoU_ms_flip) if v is not None]
        assert scores and all(10 < v < 100 for v in scores), w.name
    authors = {w.name: w for w in models if w.download == "page"}
    assert set(authors) == {"pspnet50_ade20k", "pspnet101_voc2012", "pspnet101_cityscapes"}
    assert (authors["pspnet50_ade20k"].mIoU, authors["pspnet101_cityscapes"].mIoU_ms_flip) == (41.68, 80.91)
    assert any(w.dataset == "ADE20K" for w in models) and any(w.dataset == "Cityscapes" for w in models)


@pytest.fixture()
def published(tmp_path, monkeypatch, serve):
    """A small mmseg-layout checkpoint served at an OpenMMLab-like path, and a catalogue holding only it."""
    torch.manual_seed(0)
    model = PSPNet(19, backbone="resnet18", deep_stem=False, dilation="contracted", align_corners=False,
                   head_channels=32, ppm_channels=16, aux_channels=16).eval()
    site = tmp_path / "site" / "mmsegmentation" / "v0.5" / "pspnet"
    site.mkdir(parents=True)
    raw = site / "tiny.pth"
    torch.save({"meta": {}, "state_dict": mmseg_layout(model)}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    named = site / f"tiny_20201226-{digest[:8]}.pth"
    raw.rename(named)
    entry = Weights(name="pspnet_tiny_cityscapes", source="test", url=HOST + f"mmsegmentation/v0.5/pspnet/{named.name}",
                    sha256_prefix=digest[:8], dataset="Cityscapes", architecture="R-18b-D8", backbone="resnet18",
                    stem="7×7", train={}, mIoU=50.0, mIoU_ms_flip=None, config="-", license="Apache License 2.0")
    monkeypatch.setattr(weights_module, "list_models", lambda: (entry,))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights_module.URL_ENV, serve(tmp_path / "site"))
    return entry, model, tmp_path / "torch_home" / "hub" / "checkpoints"


def test_a_name_downloads_once_converts_and_then_works_offline(published, monkeypatch, capsys) -> None:
    entry, original, cache = published
    x = torch.randn(1, 3, 65, 81)
    loaded = pspnet.load(entry.name)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    assert (cache / entry.filename).is_file() and (cache / f"{entry.name}.pspnet.safetensors").is_file()
    monkeypatch.setenv(weights_module.URL_ENV, "http://127.0.0.1:9/")  # nothing listens there: offline
    assert main(["info", entry.name]) == 0
    out = capsys.readouterr().out
    assert "catalogue_name pspnet_tiny_cityscapes" in out and "published_mIoU 50.0" in out


def test_a_hash_mismatch_deletes_the_file_and_says_so(published, monkeypatch) -> None:
    entry, _, cache = published
    wrong = dataclasses.replace(entry, sha256_prefix="00000000")
    monkeypatch.setattr(weights_module, "list_models", lambda: (wrong,))
    with pytest.raises(PSPNetError, match=r"pspnet_tiny_cityscapes: .*expected 00000000…; deleted it"):
        pspnet.load(entry.name)
    assert not (cache / entry.filename).exists()


def test_offline_without_a_cached_file_is_one_line_naming_the_url(published, monkeypatch, capsys, tmp_path) -> None:
    entry, _, _ = published
    monkeypatch.setenv(weights_module.URL_ENV, "http://127.0.0.1:9/")
    assert main(["eval", entry.name, "--images", str(tmp_path / "x"), "--labels", str(tmp_path / "y")]) == 2
    assert capsys.readouterr().err == f"pspnet eval: error: {tmp_path / 'x'}: no such image folder\n"  # said first
    for folder in ("x", "y"):  # data that pairs
        (tmp_path / folder).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / folder / "a.png")
    code = main(["eval", entry.name, "--images", str(tmp_path / "x"), "--labels", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "http://127.0.0.1:9/mmsegmentation/v0.5/pspnet/" in err
    assert "cannot download" in err
    path = weights_module.cache_dir() / entry.filename  # where to bring the file by hand on a machine offline
    assert err.endswith(f"; without internet here, download it elsewhere and copy it to {path}, or set "
                        f"{weights_module.URL_ENV} to a mirror\n")


def test_a_mistyped_model_name_suggests_the_published_ones(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["info", "pspnet50_ade20"])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "pspnet info: error: pspnet50_ade20: no such checkpoint file or published model; did you mean "
        "pspnet50_ade20k, pspnet101_voc2012?")
    with pytest.raises(PSPNetError, match=r"did you mean pspnet_r101-d8_.*\(\d+ names contain it: `pspnet models "
                                          r"pspnet_r101`\)$"):
        pspnet.load("pspnet_r101")
    with pytest.raises(PSPNetError, match=r"^missing/best.safetensors: no such checkpoint file$"):
        pspnet.load("missing/best.safetensors")  # a path, not a name: no suggestions
    with pytest.raises(PSPNetError, match=r"^my_camvid_model: no such checkpoint file, nor a published model's name "
                                          r"\(`pspnet models` lists them\)$"):
        pspnet.load("my_camvid_model")  # a bare name like no published one


def test_pspnet_models_lists_the_names(capsys) -> None:
    assert main(["models", "ade20k"]) == 0
    out = capsys.readouterr().out
    assert "pspnet_r50-d8_4xb4-80k_ade20k-512x512" in out and "ADE20K" in out
    assert main(["models", "pspnet50_ade"]) == 0 and "pspnet50_ade20k" in capsys.readouterr().out
    assert main(["models", "pspnet101_voc2012"]) == 0 and "(scores on the test set)" in capsys.readouterr().out


def test_pspnet_models_says_when_no_name_matches(capsys) -> None:
    """Like grep: exit 1, and what was meant where a name is close; --json stays machine-readable (exit 1 too)."""
    assert main(["models", "pspnet_r50_ade20k"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(
        "pspnet models: no published model's name contains 'pspnet_r50_ade20k' (`pspnet models` lists all ")
    assert "; did you mean pspnet50_ade20k, pspnet_r50-d8_4xb4-80k_ade20k-512x512, " in captured.err
    assert main(["models", "--json", "nothing-like-it"]) == 1 and capsys.readouterr().out.strip() == "[]"
    assert main(["models", "--json", "ade20k"]) == 0 and "pspnet50_ade20k" in capsys.readouterr().out


def test_torch_hub_loads_from_a_clone(tmp_path) -> None:
    root = Path(__file__).resolve().parents[1]
    model = torch.hub.load(str(root), "pspnet50", source="local", num_classes=3)
    assert isinstance(model, PSPNet) and model.config.backbone == "resnet50" and model.config.num_classes == 3
    saved = pspnet.save(PSPNet(4, backbone="resnet18"), tmp_path / "m.safetensors")
    loaded = torch.hub.load(str(root), "pspnet", source="local", weights=str(saved))
    assert loaded.config.num_classes == 4 and not loaded.training
    # Settings the weights contradict are an error, not dropped without a word (a resnet18 of 4 classes came back).
    for entry, settings, words in (("pspnet101", {"num_classes": 19}, "backbone 'resnet18', num_classes 4; the "
                                    "settings ask for backbone='resnet101', num_classes=19"),
                                   ("pspnet", {"num_classes": 19},
                                    "num_classes 4; the settings ask for num_classes=19")):
        with pytest.raises(pspnet.PSPNetError, match=re.escape(f"weights {saved}: {words}")):
            torch.hub.load(str(root), entry, source="local", weights=str(saved), **settings)
    with pytest.raises(pspnet.PSPNetError, match="backbone='resnet18': this entry point is PSPNet with resnet50"):
        torch.hub.load(str(root), "pspnet50", source="local", num_classes=19, backbone="resnet18")  # a TypeError


def test_train_imagenet_takes_a_backbone_name_and_the_stem_follows_the_weights(tmp_path, monkeypatch, serve) -> None:
    """mmseg's ResNetV1c ImageNet layout (`stem.0/1/3/4/6/7`, `layerN`, `fc`), served as OpenMMLab serves it."""
    import yaml

    from pspnet.checkpoint import model_weights
    from pspnet.distributed import single_process
    from pspnet.model.resnet import DilatedResNet
    from pspnet.train.config import load_train_config
    from pspnet.train.trainer import Trainer
    from pspnet.weights import Backbone

    sys.path.insert(0, str(Path(__file__).parent / "train"))
    from synthetic import config_dict, make_folders_dataset

    torch.manual_seed(1)
    net = DilatedResNet("resnet18", stem_channels=(32, 32, 64))
    names = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4", "conv3": "6", "bn3": "7"}
    state = {(f"stem.{names[k.split('.')[1]]}.{k.split('.', 2)[2]}" if k.startswith("stem.") else k): v
             for k, v in net.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    site = tmp_path / "site" / "pretrain" / "third_party"
    site.mkdir(parents=True)
    torch.save({"state_dict": state}, site / "r18.pth")
    digest = hashlib.sha256((site / "r18.pth").read_bytes()).hexdigest()[:8]
    (site / "r18.pth").rename(site / f"resnet18_v1c-{digest}.pth")
    entry = Backbone("resnet18_v1c", "test", HOST + f"pretrain/third_party/resnet18_v1c-{digest}.pth", digest,
                     "resnet18", "deep 32-32-64", "Apache License 2.0")
    monkeypatch.setattr(weights_module, "list_backbones", lambda: (entry,))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights_module.URL_ENV, serve(tmp_path / "site"))
    root = make_folders_dataset(tmp_path / "data")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config_dict(root, tmp_path / "run", imagenet="resnet18_v1c")))
    cfg = load_train_config(tmp_path / "cfg.yaml")
    assert cfg.model.stem_channels == (64, 64, 128)  # the paper's, until the weights say otherwise
    trainer = Trainer(cfg, single_process(torch.device("cpu")), progress=False)
    assert trainer.cfg.model.stem_channels == (32, 32, 64)
    ours = model_weights(trainer.model)
    assert all(torch.equal(ours[f"backbone.{k}"], v) for k, v in net.state_dict().items())
    (tmp_path / "cfg50.yaml").write_text(yaml.safe_dump(config_dict(root, tmp_path / "r50", imagenet="resnet18_v1c")
                                                         | {"model": {"backbone": "resnet50"}}))
    with pytest.raises(PSPNetError, match="weights of a resnet18; the model is a resnet50"):
        Trainer(load_train_config(tmp_path / "cfg50.yaml"), single_process(torch.device("cpu")), progress=False)


def test_eval_of_a_published_name_uses_the_test_of_its_published_score_unless_told_otherwise(tmp_path) -> None:
    import argparse
    from pathlib import Path

    from pspnet.cli.eval import published_preset

    def args(checkpoint: str, **given) -> argparse.Namespace:
        base = dict(preset=None, base_size=None, crop_size=None, scales=None, flip=None, mode=None)
        return argparse.Namespace(checkpoint=Path(checkpoint), **(base | given))

    zoo = "pspnet_r50-d8_4xb4-80k_ade20k-512x512"
    assert weights_module.find(zoo) is not None
    assert published_preset(args(zoo), "ade20k") == "mmseg"
    assert published_preset(args(zoo, preset="ss"), "ade20k") is None  # the user's choice wins
    assert published_preset(args(zoo, crop_size=[473]), "ade20k") is None
    assert published_preset(args("pspnet50_ade20k"), "ade20k") is None  # the authors' own: the paper's protocol
    # ... multi-scale where they published only that (`pspnet models` shows ms; eval ran single scale)
    assert published_preset(args("pspnet101_voc2012"), "voc2012") == "ms"
    from pspnet.cli.eval import published_preset_note

    assert published_preset_note(args("pspnet101_voc2012"), "ms") == (
        "protocol: --preset ms, the test of pspnet101_voc2012's published mIoU (--preset ss for single scale); its "
        "published 85.41 is on the test set, scored by the benchmark's server, not on the labels given here")
    local = tmp_path / zoo
    local.write_bytes(b"")
    assert published_preset(args(str(local)), "ade20k") is None  # a file of that name is not the catalogue entry


def test_each_entry_names_the_test_behind_its_published_score() -> None:
    by_name = {w.name: w for w in weights_module.list_models()}
    assert by_name["pspnet_r50-d8_4xb4-80k_ade20k-512x512"].test_preset == "mmseg"
    assert by_name["pspnet_r50-d8_4xb4-20k_voc12aug-512x512"].test_preset == "mmseg"
    assert by_name["pspnet50_ade20k"].test_preset == "ss" and by_name["pspnet101_voc2012"].test_preset == "ms"
    assert by_name["pspnet_r18-d8_4xb4-80k_loveda-512x512"].test_preset is None  # settings not held here
    for w in by_name.values():
        if w.dataset == "Cityscapes" and w.source.startswith("mmsegmentation"):
            assert w.test_preset == ("mmseg-769" if "769x769" in w.name else "mmseg"), w.name


def test_the_769_cityscapes_entries_convert_with_align_corners_and_test_by_sliding_windows(published, monkeypatch
                                                                                           ) -> None:
    from dataclasses import replace

    from pspnet.engine.inference import InferenceSettings, window_positions

    entry, _, _ = published
    named = replace(entry, name="pspnet_tiny_cityscapes-769x769", source="mmsegmentation 1.2.2")
    assert named.align_corners and named.test_preset == "mmseg-769"
    monkeypatch.setattr(weights_module, "list_models", lambda: (named,))
    assert pspnet.load(named.name).config.align_corners
    s = InferenceSettings.for_dataset("cityscapes", "mmseg-769")
    assert (s.mode, s.crop_size, s.flip, s.average) == ("slide", (769, 769), False, "logits")
    # mmseg's slide_inference grid over a 1024×2048 image, crop 769, stride 513: rows 0, 255; columns 0 … 1279
    positions = window_positions(1024, 2048, s.crop_size, s.stride_rate)
    assert positions == [(t, left) for t in (0, 255) for left in (0, 513, 1026, 1279)]


def test_train_init_takes_a_published_name_and_fine_tunes_it_on_other_classes(published, tmp_path, capsys) -> None:
    """The zoo's 7×7-stem ResNet-18 with 19 classes, by name, on 3-class data with no model settings."""
    import yaml

    from pspnet.checkpoint import read_metadata

    sys.path.insert(0, str(Path(__file__).parent / "train"))
    from synthetic import config_dict, make_folders_dataset

    entry, original, _ = published
    d = config_dict(make_folders_dataset(tmp_path / "data"), tmp_path / "run", init=entry.name, iterations=1)
    d["model"] = {}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--no-progress"]) == 0
    assert f"weights initialised from {entry.name}; its 19 classes" in capsys.readouterr().out
    model = read_metadata(tmp_path / "run" / "final.safetensors")["model"]
    assert {k: model[k] for k in ("backbone", "deep_stem", "head_channels", "ppm_channels", "num_classes")} == \
        {"backbone": "resnet18", "deep_stem": False, "head_channels": 32, "ppm_channels": 16, "num_classes": 3}
