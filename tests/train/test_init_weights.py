"""train.init: fine-tuning another model's weights, on another dataset too — the architecture follows the weights,
the classifiers start afresh for another class count, the inputs are normalised as the weights expect."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

import pspnet
from pspnet import PSPNet, PSPNetError
from pspnet.checkpoint import model_weights, read_metadata
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.distributed import single_process
from pspnet.model.config import ModelConfig
from pspnet.model.resnet import DilatedResNet
from pspnet.train.config import load_train_config
from pspnet.train.init_weights import follow_init
from pspnet.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
CAFFE_MEAN, CAFFE_STD = (0.4816, 0.4579, 0.4078), (1 / 255, 1 / 255, 1 / 255)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_folders_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory) -> Path:
    """An mmsegmentation zoo checkpoint as the zoo ships it: ResNetV1c-50 (32-32-64 stem, contracted dilation,
    align_corners False), 19 Cityscapes-like classes, the FCN auxiliary head (the shared fixture's weights)."""
    sys.path.insert(0, str(FIXTURES))
    from official_weights import fill

    fx = torch.load(FIXTURES / "mmseg_pspnet_r50_c19.pt", weights_only=True)
    path = tmp_path_factory.mktemp("zoo") / "pspnet_r50-d8_512x1024_40k_cityscapes.pth"
    torch.save({"meta": {"dataset_meta": {"classes": [f"c{i}" for i in range(19)]}},
                "state_dict": fill(fx["shapes"], fx["seed"])}, path)
    return path


def own_model(path: Path, *, classes: list[str], aux: bool) -> Path:
    """A ResNet-18 PSPNet of ours with other class names and the Caffe models' normalisation."""
    torch.manual_seed(1)
    model = PSPNet(len(classes), backbone="resnet18", aux=aux, dilation="contracted",
                   info=DatasetInfo("other", classes, mean=CAFFE_MEAN, std=CAFFE_STD))
    return pspnet.save(model, path)


def config(data_root: Path, tmp_path: Path, init: Path, model: dict | None = None, **train: object) -> Path:
    d = config_dict(data_root, tmp_path / "run", init=str(init), **train)
    d["model"] = model or {}  # no backbone: the architecture comes from the weights
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def trainer(path: Path, capsys) -> tuple[Trainer, str]:
    capsys.readouterr()
    t = Trainer(load_train_config(path), single_process(torch.device("cpu")), progress=False)
    return t, capsys.readouterr().out


def test_a_zoo_model_fine_tunes_on_data_with_other_classes(data_root, zoo_file, tmp_path, capsys) -> None:
    """The user's path: `pspnet train` with train.init = a Cityscapes zoo file on 3-class data, no model settings."""
    path = config(data_root, tmp_path, zoo_file, iterations=1)
    cfg = load_train_config(path)
    zoo = pspnet.load(zoo_file)
    c = cfg.model
    assert (c.backbone, c.stem_channels, c.dilation, c.align_corners, c.num_classes) == \
        ("resnet50", (32, 32, 64), "contracted", False, 3)
    t, out = trainer(path, capsys)
    assert (f"weights initialised from {zoo_file}; its 19 classes (c0, c1, c2, ...) are not the data's 3: the "
            "classifiers start afresh\n") in out
    ours, theirs = model_weights(t.model), model_weights(zoo)
    kept = [k for k in theirs if not k.startswith(("head.classifier.", "aux_head.classifier."))]
    assert len(kept) == len(theirs) - 4 and all(torch.equal(ours[k], theirs[k]) for k in kept)
    assert ours["head.classifier.weight"].shape[0] == 3 and ours["aux_head.classifier.weight"].shape[0] == 3

    capsys.readouterr()
    assert main(["train", "--config", str(path), "--no-progress"]) == 0  # one step, end to end
    final = read_metadata(tmp_path / "run" / "final.safetensors")
    assert final["model"]["stem_channels"] == [32, 32, 64] and final["model"]["num_classes"] == 3
    assert final["provenance"]["init"] == str(zoo_file)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["dilation"] == "contracted"  # the run's config.yaml says what was trained


def test_the_same_class_count_keeps_the_classifiers_and_the_weights_normalisation(data_root, tmp_path,
                                                                                   capsys) -> None:
    init = own_model(tmp_path / "init.safetensors", classes=["sky", "road", "car"], aux=True)
    t, out = trainer(config(data_root, tmp_path, init), capsys)
    assert "its classes (sky, road, car) are taken as the data's (class_0, class_1, class_2), in order" in out
    assert "inputs normalised as its weights expect: mean (0.4816, 0.4579, 0.4078), std (0.003922, " in out
    theirs = model_weights(pspnet.load(init))
    assert all(torch.equal(model_weights(t.model)[k], v) for k, v in theirs.items())
    assert (t.info.mean, t.info.std) == (CAFFE_MEAN, CAFFE_STD) and t.info.classes[0] == "class_0"
    assert t.step.augment.info is t.info  # the training inputs are normalised that way, and so is validation
    assert t.model.info is t.info  # and the saved model records it


def test_an_auxiliary_head_the_weights_lack_starts_afresh_and_one_the_run_drops_is_left(data_root, tmp_path,
                                                                                        capsys) -> None:
    init = own_model(tmp_path / "init.safetensors", classes=["a", "b", "c"], aux=False)
    t, out = trainer(config(data_root, tmp_path, init), capsys)
    assert "it has no auxiliary head: that head starts afresh" in out
    assert t.model.aux_head is not None
    with_aux = own_model(tmp_path / "aux.safetensors", classes=["a", "b", "c"], aux=True)
    t, out = trainer(config(data_root, tmp_path, with_aux, {"aux": False}), capsys)
    assert t.model.aux_head is None and "no auxiliary head" not in out


def test_a_setting_the_weights_cannot_fit_is_one_line_naming_where_it_was_set(data_root, zoo_file, tmp_path,
                                                                              capsys) -> None:
    path = config(data_root, tmp_path, zoo_file, {"backbone": "resnet101"})
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"{path}:" in err and "model.backbone = resnet101, but train.init = " in err
            and "trained with backbone resnet50" in err and "leave model.backbone out" in err)
    assert main(["train", "--config", str(path), "model.backbone=resnet50", "model.head_channels=256",
                 "--no-progress"]) == 2
    assert "command line model.head_channels=256: model.head_channels = 256, but" in capsys.readouterr().err


def test_what_the_network_computes_may_be_changed_on_purpose_and_is_said(data_root, zoo_file, tmp_path,
                                                                         capsys) -> None:
    path = config(data_root, tmp_path, zoo_file, {"output_stride": 16, "align_corners": True})
    t, out = trainer(path, capsys)
    assert t.model.config.output_stride == 16 and t.model.config.dilation == "contracted"
    assert "the run changes output_stride 16 (the weights': 8), align_corners true (the weights': false)" in out


def test_init_and_imagenet_together_or_a_missing_init_file_are_one_line_errors(data_root, zoo_file, tmp_path,
                                                                              capsys) -> None:
    path = config(data_root, tmp_path, zoo_file, imagenet="torchvision")
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "replaces every weight train.imagenet = torchvision would set" in err
    assert main(["train", "--config", str(path), "train.imagenet=null", "train.init=missing.pth",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.init=missing.pth" in err and "missing.pth: no such checkpoint file" in err


def test_follow_init_takes_what_is_left_out_and_keeps_what_is_set() -> None:
    weights = ModelConfig(num_classes=19, backbone="resnet101", stem_channels=(32, 32, 64), norm="syncbatch",
                          align_corners=False)
    run = ModelConfig(num_classes=3, norm="batch", dropout=0.0)
    got = follow_init(run, {"norm": "f.yaml:3", "dropout": "f.yaml:4"}, weights, "w")
    assert (got.backbone, got.stem_channels, got.align_corners, got.norm, got.num_classes, got.dropout) == \
        ("resnet101", (32, 32, 64), False, "batch", 3, 0.0)  # batch ↔ syncbatch: the same weights
    with pytest.raises(PSPNetError, match=r"^f.yaml:3: model.norm = group, but train.init = w was trained with "
                                          r"norm syncbatch"):
        follow_init(ModelConfig(num_classes=3, norm="group"), {"norm": "f.yaml:3"}, weights, "w")


def test_a_training_runs_folder_starts_the_run_from_its_best_model(data_root, tmp_path, capsys) -> None:
    """train.init = RUN (as `pspnet eval RUN`): its best model, recorded as that file. Fine-tuning into RUN itself with
    --overwrite (which moves its files aside, the weights included) is refused before anything moves."""
    first = tmp_path / "first"
    d = config_dict(data_root, first, iterations=2, val_every=2)
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(tmp_path / "first.yaml"), "--no-progress"]) == 0
    best = first / "best.safetensors"
    t, out = trainer(config(data_root, tmp_path, first), capsys)
    assert t.cfg.train.init == str(best) and f"weights initialised from {best}\n" in out
    assert all(torch.equal(model_weights(t.model)[k], v) for k, v in model_weights(pspnet.load(best)).items())

    before = sorted(first.rglob("*"))
    for init in (first, best):
        assert main(["train", "--config", str(tmp_path / "cfg.yaml"), f"train.init={init}",
                     f"train.out_dir={first}", "--overwrite", "--no-progress"]) == 2
        assert capsys.readouterr().err == (
            f"pspnet train: error: train.init = {best}: part of the earlier run in train.out_dir = {first} "
            f"(best.safetensors), which --overwrite moves aside; train into another train.out_dir (e.g. "
            f"{tmp_path / 'first-finetuned'})\n")
    assert sorted(first.rglob("*")) == before  # nothing moved

    for path in [best, first / "final.safetensors", *(first / "checkpoints").iterdir()]:
        path.unlink()
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--no-progress"]) == 2
    assert f"train.init: {first}: a training run with no model yet" in capsys.readouterr().err



def imagenet_file(path: Path) -> Path:
    """ResNet-18 ImageNet weights as torchvision lays them out (a 7×7 stem, unlike the model's default)."""
    torch.manual_seed(2)
    state = {k.removeprefix("stem."): v for k, v in DilatedResNet("resnet18", deep_stem=False).state_dict().items()}
    torch.save({**state, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}, path)
    return path


@pytest.mark.parametrize("start_from", ["init", "imagenet"])
def test_a_resume_needs_neither_the_starting_weights_nor_the_folder_they_were_named_from(
        data_root, tmp_path, monkeypatch, capsys, start_from) -> None:
    """The weights a run started from (train.init, or train.imagenet's backbone) live on in its checkpoints: after
    they are deleted, or from another folder (their file named relative to the first), `--resume` continues to the
    weights of a run never stopped, with what the run took from them: the architecture and the normalisation (the
    Caffe models' here), or the ImageNet weights' 7×7 stem."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    if start_from == "init":
        weights = own_model(start / "init.safetensors", classes=["a", "b", "c"], aux=True)
        path = config(data_root, tmp_path, Path(weights.name), iterations=4, checkpoint_every=2)
        missing = "init.safetensors: no such checkpoint file"
    else:
        weights = imagenet_file(start / "resnet18-tv.pth")
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(config_dict(data_root, tmp_path / "run", iterations=4, checkpoint_every=2,
                                                   imagenet=weights.name)))
        missing = "no such ImageNet weights file"
    run = tmp_path / "run"
    monkeypatch.chdir(start)
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    whole = torch.load(run / "checkpoints" / "iter_0000004.pt", weights_only=True)["model"]
    # As if killed after iteration 2's checkpoint, then the weights it started from deleted:
    for name in ("checkpoints/iter_0000004.pt", "final.safetensors"):
        (run / name).unlink()
    weights.unlink()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resumed from {run / 'checkpoints' / 'iter_0000002.pt'} at iteration 2" in out
    assert "initialised" not in out and "stem set" not in out and "settings changed" not in out
    resumed = torch.load(run / "checkpoints" / "iter_0000004.pt", weights_only=True)["model"]
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
    model = pspnet.load(run / "final.safetensors")
    if start_from == "init":
        assert (model.config.dilation, model.info.std) == ("contracted", CAFFE_STD)
    else:
        assert not model.config.deep_stem

    # Without a checkpoint to continue from, the run needs them, and says so.
    assert main(["train", "--config", str(path), f"train.out_dir={tmp_path / 'fresh'}", "--resume",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err, err
