"""Every file a training run writes can be read back: by pspnet.load, eval, predict, export and --resume."""

import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import pspnet
from pspnet.checkpoint import model_weights
from pspnet.cli.main import main
from pspnet.distributed import single_process
from pspnet.train.checkpoints import load_training_checkpoint
from pspnet.train.config import load_train_config
from pspnet.train.step import TrainingStep
from pspnet.train.trainer import Trainer, train

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_folders_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    run(config_dict(data_root, tmp / "run"), tmp)
    return tmp / "run"


def run(cfg: dict, tmp: Path, resume=None):
    path = tmp / f"cfg_{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return train(load_train_config(path), resume=resume, progress=False)


def test_resume_with_dropout_and_class_weights_continues_bit_for_bit(data_root, tmp_path) -> None:
    def cfg(out: Path) -> dict:
        d = config_dict(data_root, out, iterations=4, checkpoint_every=2, class_weights="median_frequency")
        d["model"]["dropout"] = 0.1
        return d

    full = run(cfg(tmp_path / "full"), tmp_path)
    part = tmp_path / "part"
    run(cfg(part), tmp_path)
    (part / "checkpoints" / "iter_0000004.pt").unlink()  # keep iteration 2 only, then continue to 4
    (part / "final.safetensors").unlink()
    resumed = run(cfg(part), tmp_path, resume=True)
    a, b = load_file(str(full.final_checkpoint)), load_file(str(resumed.final_checkpoint))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "2 + 2 iterations must equal 4, bit for bit"


def test_pspnet_load_reads_a_training_checkpoint(finished_run) -> None:
    path = finished_run / "checkpoints" / "iter_0000004.pt"
    model = pspnet.load(path)
    assert not model.training and model.info.num_classes == 3
    stored = load_training_checkpoint(path)["model"]
    assert all(torch.equal(model_weights(model)[k], stored[k]) for k in stored)
    final = load_file(str(finished_run / "final.safetensors"))
    assert all(torch.equal(final[k], stored[k]) for k in final)  # the last checkpoint is the final model


def test_eval_predict_and_export_take_a_training_checkpoint(finished_run, data_root, tmp_path, capsys) -> None:
    ckpt = str(finished_run / "checkpoints" / "iter_0000004.pt")
    images, labels = data_root / "images" / "val", data_root / "labels" / "val"
    assert main(["eval", ckpt, "--images", str(images), "--labels", str(labels), "--quiet", "--workers", "0",
                 "--base-size", "0", "--crop-size", "32"]) == 0
    assert "2 of 2 images scored" in capsys.readouterr().out
    assert main(["predict", ckpt, str(images), "--out", str(tmp_path / "pred"), "--quiet",
                 "--base-size", "0", "--crop-size", "32"]) == 0
    assert (tmp_path / "pred" / "0.png").is_file()
    assert main(["export", ckpt, "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert (tmp_path / "m.pt").is_file()


def test_resume_from_a_weights_file_says_what_resume_takes(finished_run, data_root, tmp_path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(data_root, tmp_path / "x")))
    final = finished_run / "final.safetensors"
    code = main(["train", "--config", str(cfg), "--resume", str(final), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert str(final) in err and "iter_N.pt" in err and "train.init=" in err


def test_train_init_starts_from_the_given_weights(finished_run, data_root, tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    init = str(finished_run / "final.safetensors")
    path.write_text(yaml.safe_dump(config_dict(data_root, tmp_path / "x", init=init)))
    cfg = load_train_config(path)
    trainer = Trainer(cfg, single_process(torch.device("cpu")), progress=False)
    assert isinstance(trainer.step, TrainingStep) and trainer.step.recipe == cfg.train.recipe()  # what bench times
    final = load_file(str(finished_run / "final.safetensors"))
    assert all(torch.equal(model_weights(trainer.model)[k], final[k]) for k in final)
