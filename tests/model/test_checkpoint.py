import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import pspnet
from pspnet import PSPNet, PSPNetError
from pspnet.classes import CAMVID
from pspnet.cli.main import main


def test_save_then_load_rebuilds_the_model_with_no_other_argument(tmp_path):
    model = PSPNet(11, info=CAMVID, backbone="resnet18", bins=(1, 2, 4), norm="group", aux=False).eval()
    path = pspnet.save(model, tmp_path / "m.safetensors")
    loaded = pspnet.load(path)
    assert loaded.config == model.config
    assert loaded.info == CAMVID
    assert not loaded.training
    x = torch.randn(1, 3, 41, 33)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_loading_draws_no_random_weights_and_gives_the_file_its_own_dtypes_back(tmp_path, official_fixture):
    """A model file, a training checkpoint and the authors' checkpoint layout (converted as it is read) are read into
    a model built without weights of its own: the global random number generator is left as it was (a seeded script
    draws the same numbers whether it loads a model or not), every tensor is the file's, in memory of its own
    (aligned: the saved model's outputs are reproduced bit for bit, above), and half-precision weights come back as
    the model's float32, as copied before."""
    from pspnet.train.checkpoints import save_training_checkpoint

    model = PSPNet(3, backbone="resnet18").eval()
    files = [pspnet.save(model, tmp_path / "m.safetensors"),
             save_training_checkpoint(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1), 2, {}, 1),
             pspnet.save(PSPNet(3, backbone="resnet18").half(), tmp_path / "half.safetensors"),
             tmp_path / "official.pth"]
    torch.save({"state_dict": official_fixture["state"]}, files[-1])
    for path in files:
        torch.manual_seed(0)
        expected = torch.rand(4)
        torch.manual_seed(0)
        loaded = pspnet.load(path)
        assert torch.equal(torch.rand(4), expected), f"{path.name}: loading drew random numbers"
        state = loaded.state_dict()
        assert not any(t.is_meta for t in state.values())
        assert all(t.data_ptr() % 64 == 0 for t in state.values() if t.numel() > 1)
        assert {t.dtype for t in loaded.parameters()} == {torch.float32}
        assert all(p.requires_grad for p in loaded.parameters()) and not loaded.training
    x = torch.randn(1, 3, 41, 33)
    with torch.no_grad():
        assert torch.equal(pspnet.load(files[1])(x), model(x))


def test_save_replaces_the_file_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    pspnet.save(PSPNet(2, backbone="resnet18"), path)
    pspnet.save(PSPNet(3, backbone="resnet18"), path)
    assert pspnet.load(path).config.num_classes == 3
    assert os.listdir(tmp_path) == ["m.safetensors"]


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    RunsCode.marker = marker
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": RunsCode()}, evil)
    with pytest.raises(PSPNetError, match="refused to load") as e:
        pspnet.load(evil)
    assert not marker.exists()
    # The object refused is named, in plain text (torch's first line held terminal escape codes and no name).
    assert re.search(r"could run code \([^()]*(GLOBAL|global)[^()]*(system|RunsCode)[^()]*\)\. Only", str(e.value))
    assert "\x1b" not in str(e.value) and "weights_only" not in str(e.value)


def test_a_legacy_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    RunsCode.marker = marker
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump(RunsCode(), f, protocol=2)
    with pytest.raises(PSPNetError, match="refused to load"):
        pspnet.load(evil)
    assert not marker.exists()


def test_mismatched_weights_list_missing_unexpected_and_misshaped_keys(tmp_path):
    model = PSPNet(2, backbone="resnet18")
    state = model.state_dict()
    state.pop("head.classifier.bias")
    state["extra.weight"] = torch.zeros(1)
    state["head.classifier.weight"] = torch.zeros(5, 512, 1, 1)
    from pspnet.model.state import load_state_strict

    with pytest.raises(PSPNetError) as e:
        load_state_strict(model, state, "f.safetensors")
    msg = str(e.value)
    assert "1 missing: head.classifier.bias" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "head.classifier.weight (file (5, 512, 1, 1), model (2, 512, 1, 1))" in msg


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(PSPNetError, match="not a checkpoint"):
        pspnet.load(path)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(PSPNetError, match="no such checkpoint file"):
        pspnet.load(tmp_path / "nope.safetensors")


def test_a_folder_is_said_to_be_one_naming_a_training_runs_model(tmp_path, capsys):
    with pytest.raises(PSPNetError, match=r"a folder, not a checkpoint file; give a file in it$"):
        pspnet.load(tmp_path)
    (tmp_path / "final.safetensors").write_bytes(b"")
    with pytest.raises(PSPNetError, match=rf"give {tmp_path / 'final.safetensors'} \(a training run's model\)$"):
        pspnet.load(tmp_path)
    (tmp_path / "best.safetensors").write_bytes(b"")  # the run's best, where validation chose one
    from pspnet.cli.main import main

    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"pspnet info: error: {tmp_path}: a folder, not a checkpoint file; give "
                                       f"{tmp_path / 'best.safetensors'} (a training run's model)\n")


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(PSPNetError, match="without pspnet metadata"):
        pspnet.load(path)


def test_a_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    pspnet.save(PSPNet(2, backbone="resnet18"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PSPNetError, match="m.safetensors"):
        pspnet.load(path)


def test_a_foreign_torch_file_is_not_taken_for_a_pspnet(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(PSPNetError, match="not an official semseg PSPNet checkpoint"):
        pspnet.load(path)


def test_saved_checkpoints_get_the_usual_file_permissions(tmp_path):
    path = pspnet.save(PSPNet(2, backbone="resnet18"), tmp_path / "m.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "--from", "semseg", "{evil}", "{tmp}/out.safetensors"],
        ["eval", "{evil}", "--images", "{tmp}/img", "--labels", "{tmp}/lab"],
        ["predict", "{evil}", "{tmp}/image.png", "--out", "{tmp}/out"],
        ["export", "{evil}", "--format", "onnx", "--out", "{tmp}/m.onnx"],
    ],
)
def test_every_command_refuses_a_pickle_that_would_run_code(tmp_path, capsys, command):
    from pspnet.cli.main import main

    marker = tmp_path / "pwned"
    RunsCode.marker = marker
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": RunsCode()}, evil)
    Image.new("RGB", (9, 9)).save(tmp_path / "image.png")  # predict reads the checkpoint only when it has an input
    for folder, mode in (("img", "RGB"), ("lab", "L")):  # and eval when it has a pair
        (tmp_path / folder).mkdir()
        Image.new(mode, (9, 9)).save(tmp_path / folder / "image.png")
    code = main([part.format(evil=evil, tmp=tmp_path) for part in command])
    err = capsys.readouterr().err
    assert code != 0 and "refused to load" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_write_that_fails_names_the_file_and_leaves_nothing_beside_it(tmp_path, monkeypatch, capsys) -> None:
    """A full disk (the write itself fails, naming no file) while `pspnet.save` or `pspnet export` writes: an OSError
    naming the file being written, no temporary file left; a command says it in one line."""
    import errno

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    model = PSPNet(3, backbone="resnet18")
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match="No space left on device") as e:
        pspnet.save(model, tmp_path / "m.safetensors")
    assert e.value.filename == str(tmp_path / "m.safetensors") and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    pspnet.save(model, tmp_path / "m.safetensors")
    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "m.pt"
    assert main(["export", str(tmp_path / "m.safetensors"), "--format", "torchscript", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"pspnet export: error: {out}: No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_pth_of_a_pspnet_state_dict_says_how_to_save_a_model_that_loads(tmp_path):
    """It was taken for a broken official checkpoint ('no cls.4.weight keys')."""
    path = tmp_path / "mine.pth"
    torch.save(PSPNet(3, backbone="resnet18").state_dict(), path)
    with pytest.raises(PSPNetError, match=r"^.*mine.pth: the state_dict\(\) of a pspnet model, which does not record "
                                          r"its settings and classes; save models with pspnet.save"):
        pspnet.load(path)
