"""`python -m pspnet`, `train --print-config`, `pspnet info` and the one-call `pspnet.predict`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pspnet
from pspnet.cli.main import main
from pspnet.engine.inference import InferenceSettings
from pspnet.train.config import load_train_config
from pspnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent / "train"))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    root = make_folders_dataset(tmp / "data")
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(config_dict(root, tmp / "run", iterations=2, val_every=2)))
    train(load_train_config(tmp / "cfg.yaml"), progress=False)
    return tmp


def test_python_dash_m_pspnet_is_the_command(run_dir) -> None:
    out = subprocess.run([sys.executable, "-m", "pspnet", "info", str(run_dir / "run" / "final.safetensors")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "PSPNet resnet18, 3 classes" in out.stdout


def test_print_config_prints_the_merged_config_that_loads_back_the_same(run_dir, capsys) -> None:
    assert main(["train", "--config", str(run_dir / "cfg.yaml"), "train.lr=0.02", "--print-config"]) == 0
    printed = capsys.readouterr().out
    saved = run_dir / "printed.yaml"
    saved.write_text(printed)
    again = load_train_config(saved)
    assert again.train.lr == 0.02 and again.train.momentum == 0.9  # the override and a default
    assert again == load_train_config(run_dir / "cfg.yaml", ["train.lr=0.02"])


def test_info_shows_the_architecture_classes_and_training_provenance(run_dir, capsys) -> None:
    final = run_dir / "run" / "final.safetensors"
    assert main(["info", str(final)]) == 0
    text = capsys.readouterr().out
    assert "PSPNet resnet18, 3 classes" in text and "class_0" in text and "mean" in text
    assert "source pspnet train" in text and "iteration 2" in text and "val_mIoU" in text
    assert main(["info", str(final), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"] == sum(p.numel() for p in pspnet.load(final).parameters())
    assert doc["provenance"]["val_mIoU"] is not None and doc["provenance"]["iterations"] == 2
    assert main(["info", str(run_dir / "run" / "checkpoints" / "iter_0000002.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["iteration"] == 2


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_a_command_that_does_not_share_its_work_runs_in_the_first_process_only(run_dir, capsys,
                                                                                              monkeypatch, rank):
    """What torchrun sets in each process (tests/train/test_distributed.py launches it): the first runs `pspnet
    info` and says the others stop; the second stops at once, exit 0, silent. train, eval and predict share out."""
    from pspnet.cli.main import other_process_of_torchrun

    final = run_dir / "run" / "final.safetensors"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    assert main(["info", str(final)]) == 0
    out, err = capsys.readouterr()
    if rank:
        assert (out, err) == ("", "")
    else:
        assert "PSPNet resnet18, 3 classes" in out
        assert err == ("pspnet info: note: under torchrun (2 processes) the first process runs it and the others stop "
                       "at once; only train, eval and predict share their work out\n")
    assert not any(other_process_of_torchrun(command) for command in ("train", "eval", "predict"))
    # The merged config (a command that stops before training) is printed by the first process only.
    assert main(["train", "--config", str(run_dir / "cfg.yaml"), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert (printed == "") if rank else (yaml.safe_load(printed)["train"]["iterations"] == 2)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not other_process_of_torchrun("info")


def test_info_on_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"not a checkpoint at all")
    assert main(["info", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.safetensors" in err


def test_one_call_predict_takes_a_path_a_pil_image_or_an_array(run_dir) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    path = run_dir / "data" / "images" / "val" / "0.png"
    settings = InferenceSettings(base_size=None, crop_size=(32, 32))
    from_path = pspnet.predict(model, path, settings)
    assert from_path.shape == (32, 40) and from_path.dtype == np.uint8 and from_path.max() < 3
    assert np.array_equal(pspnet.predict(model, Image.open(path), settings), from_path)
    assert np.array_equal(pspnet.predict(model, np.asarray(Image.open(path)), settings), from_path)
    assert pspnet.predict(model, path, device=torch.device("cpu")).shape == (32, 40)  # the dataset's own protocol


def test_probabilities_are_what_predict_takes_the_argmax_of(run_dir) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    path = run_dir / "data" / "images" / "val" / "0.png"
    settings = InferenceSettings(base_size=None, crop_size=(32, 32))
    probs = pspnet.probabilities(model, path, settings)
    assert probs.shape == (3, 32, 40) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=0), pspnet.predict(model, path, settings))


def test_a_list_of_images_gives_the_list_of_their_single_predictions(run_dir) -> None:
    """Images of two sizes, given as a path, a PIL image, an array and a torch tensor, their windows batched
    together: each label map is the one a call for that image alone gives, and so are the probabilities."""
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    paths = sorted((run_dir / "data" / "images" / "train").glob("*.png"))[:3]
    small = np.asarray(Image.open(paths[2]))[:24, :30]
    images = [paths[0], Image.open(paths[1]), small, torch.from_numpy(small.copy()).permute(2, 0, 1)]
    settings = InferenceSettings(base_size=None, crop_size=(16, 16), batch_size=8)  # windows of several images
    many = pspnet.predict(model, images, settings)
    assert isinstance(many, list) and [m.shape for m in many] == [(32, 40), (32, 40), (24, 30), (24, 30)]
    for image, labels in zip(images, many, strict=True):
        assert np.array_equal(labels, pspnet.predict(model, image, settings))
    probs = pspnet.probabilities(model, tuple(images), settings)
    for image, p in zip(images, probs, strict=True):
        np.testing.assert_allclose(p, pspnet.probabilities(model, image, settings), atol=1e-5)


def test_torch_tensors_are_read_as_torchvision_gives_them(run_dir) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    path = run_dir / "data" / "images" / "val" / "0.png"
    settings = InferenceSettings(base_size=None, crop_size=(32, 32))
    expected = pspnet.predict(model, path, settings)
    uint8 = torch.from_numpy(np.asarray(Image.open(path)).copy()).permute(2, 0, 1)  # torchvision.io.read_image
    assert np.array_equal(pspnet.predict(model, uint8, settings), expected)
    assert np.array_equal(pspnet.predict(model, uint8.float() / 255, settings), expected)  # ToTensor()
    batch = pspnet.predict(model, torch.stack([uint8, uint8]), settings)  # N×C×H×W: one map per image
    assert len(batch) == 2 and all(np.array_equal(b, expected) for b in batch)


@pytest.mark.parametrize(("image", "words"), [
    (torch.zeros(32, 40, 3, dtype=torch.uint8), ["image tensor of shape (32, 40, 3)", "C×H×W"]),
    ([], ["no images given"]),
    ("FOLDER", ["is a folder", "as a list"]),
    (torch.full((3, 8, 8), 2.0), ["float image", "0..1"]),
])
def test_api_inputs_it_cannot_read_are_one_line_errors(run_dir, image, words) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    image = run_dir / "data" / "images" / "val" if isinstance(image, str) else image
    with pytest.raises(pspnet.PSPNetError) as e:
        pspnet.predict(model, image)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_python_evaluate_gives_the_scores_of_the_eval_command(run_dir, tmp_path) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    images, labels = run_dir / "data" / "images" / "val", run_dir / "data" / "labels" / "val"
    settings = InferenceSettings(base_size=None, crop_size=(24, 24))
    result = pspnet.evaluate(model, images, labels, settings)
    assert main(["eval", str(run_dir / "run" / "final.safetensors"), "--images", str(images), "--labels",
                 str(labels), "--backend", "torch", "--base-size", "0", "--crop-size", "24", "--workers", "0",
                 "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    cli = json.loads((tmp_path / "e.json").read_text())
    assert result.images == cli["images"] == 2 and len(result.per_image) == 2
    assert result.matrix.tolist() == cli["confusion_matrix"] and result.scores.miou == pytest.approx(cli["mIoU"])
    # shard=True in one process (no torchrun, no process group): the same, and no process group left behind
    assert torch.equal(pspnet.evaluate(model, images, labels, settings, shard=True).matrix, result.matrix)
    assert not torch.distributed.is_initialized()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "0.png").write_bytes((labels / "0.png").read_bytes())  # 1.png's label is missing
    with pytest.raises(pspnet.PSPNetError, match="1.png"):
        pspnet.evaluate(model, images, tmp_path / "labels", settings)


def test_python_evaluate_warns_of_masks_saved_0_255_and_reads_them_with_label_values(run_dir, tmp_path) -> None:
    model = pspnet.load(run_dir / "run" / "final.safetensors")
    images = run_dir / "data" / "images" / "val"
    (tmp_path / "masks").mkdir()
    for label in (run_dir / "data" / "labels" / "val").glob("*.png"):  # classes 0, 1, 2 drawn as 0, 255, 2
        values = np.array([0, 255, 2], dtype=np.uint8)[np.asarray(Image.open(label))]
        Image.fromarray(values).save(tmp_path / "masks" / label.name)
    settings = InferenceSettings(base_size=None, crop_size=(24, 24))
    with pytest.warns(UserWarning, match=r"class 1 \(class_1\) appears in no ground-truth label.*label_values="):
        pspnet.evaluate(model, images, tmp_path / "masks", settings)
    read = pspnet.evaluate(model, images, tmp_path / "masks", settings, label_values=[0, 255, 2])
    assert read.scores == pspnet.evaluate(model, images, run_dir / "data" / "labels" / "val", settings).scores


def test_a_command_imports_only_its_own_module(run_dir) -> None:
    """`pspnet info` (or `--help`) does not import every command's module (the bench's would add a second); the
    helpers the commands share (cli/model_folder.py, …) may come along."""
    code = ("import sys; from pspnet.cli.main import COMMANDS, main; main(['info', sys.argv[1]]); "
            "commands = {f'pspnet.cli.{module}' for _, module, _ in COMMANDS} | {'torch._dynamo'}; "
            "print(sorted(m for m in sys.modules if m in commands))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir / "run" / "final.safetensors")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['pspnet.cli.info']"
    helped = subprocess.run([sys.executable, "-m", "pspnet", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and all(name in helped.stdout for name in ("train", "predict", "bench", "info"))


def test_help_version_a_mistyped_command_and_models_answer_without_loading_torch() -> None:
    """What a newcomer types first answers at once (torch takes seconds to import); `pspnet.PSPNet` and the rest of
    the API still load on first use."""
    code = ("import sys; from pspnet.cli.main import main\n"
            "for argv in (['--help'], ['--version'], ['trian'], ['models']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n"
            "import pspnet\n"
            "print(type(pspnet.PSPNet(2, backbone='resnet18')).__name__, 'load' in dir(pspnet), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-2:] == ["False", "PSPNet True"], out.stderr[-2000:]
    assert "pspnet_r50-d8_4xb4-80k_ade20k-512x512" in out.stdout and "pspnet 0.1.0" in out.stdout


def test_a_missing_checkpoint_is_named_without_the_optional_overrides(capsys) -> None:
    from pspnet.cli.main import main

    with pytest.raises(SystemExit):
        main(["eval"])
    error = capsys.readouterr().err
    assert error == ("pspnet eval: error: the following arguments are required: checkpoint; `pspnet eval --help` "
                     "lists what it takes\n")  # one line: not the usage (it shows [key=value ...]) above it


@pytest.mark.parametrize("argv,dest", [
    (["train", "--config", "c.yaml"], "no_progress"),
    (["data", "prepare", "camvid", "--root", "r"], "no_progress"),
    (["data", "check", "--dataset", "camvid", "--root", "r"], "no_progress"),
    (["eval", "m.safetensors", "--config", "c.yaml"], "quiet"),
    (["predict", "m.safetensors", "a.png", "--out", "o"], "quiet"),
])
def test_every_command_with_progress_bars_takes_both_quiet_and_no_progress(argv, dest) -> None:
    """One spelling learnt on one command works on the others (`train --no-progress`, `predict --quiet`)."""
    from pspnet.cli.main import build_parser

    for flag in ("--quiet", "--no-progress"):
        assert getattr(build_parser(argv[0]).parse_args([*argv, flag]), dest) is True
    assert getattr(build_parser(argv[0]).parse_args(argv), dest) is False
