import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import pspnet
from pspnet import PSPNet
from pspnet.checkpoint import read_metadata
from pspnet.classes import DatasetInfo
from pspnet.cli.main import main
from pspnet.errors import PSPNetError
from pspnet.run_folder import list_checkpoints
from pspnet.train.checkpoints import load_training_checkpoint
from pspnet.train.config import load_train_config
from pspnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_folders_dataset(tmp_path_factory.mktemp("data"))


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def run(cfg_dict: dict, tmp_path: Path, resume=None):
    cfg = load_train_config(write_config(tmp_path / f"cfg_{time.monotonic_ns()}.yaml", cfg_dict))
    return train(cfg, resume=resume, progress=False)


def test_a_run_writes_checkpoints_logs_and_the_final_model(data_root, tmp_path):
    out = tmp_path / "run"
    summary = run(config_dict(data_root, out, val_every=4, checkpoint_every=2, keep_last=1), tmp_path)
    assert summary.iterations == 4 and summary.best_miou is not None
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["iter_0000004.pt"]  # keep_last: 1
    assert (out / "final.safetensors").is_file() and (out / "best.safetensors").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"kind": "train"' in line]) == 4
    assert any('"val_mIoU"' in line for line in lines)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["backbone"] == "resnet18"


def test_fit_trains_from_python_with_a_mapping_and_overrides_as_the_command_does(data_root, tmp_path):
    settings = config_dict(data_root, tmp_path / "run", iterations=2)
    before = yaml.safe_dump(settings)
    summary = pspnet.fit(settings, "train.val_every=2", progress=False)  # one override may be given as it is
    assert summary.iterations == 2 and summary.best_miou is not None and summary.best_checkpoint.is_file()
    assert yaml.safe_dump(settings) == before, "the caller's settings are left as they were"
    assert pspnet.load(summary.best_checkpoint).info.num_classes == 3
    continued = pspnet.fit(settings, ["train.iterations=4"], resume=True, progress=False)
    assert continued.iterations == 4
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][-1] == "iter_0000004.pt"
    with pytest.raises(PSPNetError, match=r"^config: unknown key train.learning_rate; expected one of"):
        pspnet.fit({**settings, "train": {"learning_rate": 0.1}}, progress=False)


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(data_root, tmp_path):
    full = run(config_dict(data_root, tmp_path / "full"), tmp_path)
    part = tmp_path / "part"
    run(config_dict(data_root, part), tmp_path)
    # Throw away everything after iteration 2, then continue from there.
    (part / "checkpoints" / "iter_0000004.pt").unlink()
    (part / "final.safetensors").unlink()
    resumed = run(config_dict(data_root, part), tmp_path, resume=True)
    a, b = weights(full.final_checkpoint), weights(resumed.final_checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resume must continue bit for bit"


def test_a_run_killed_after_its_last_checkpoint_records_each_iteration_once_when_resumed(data_root, tmp_path):
    """Killed after iteration 4's records but before its checkpoint: the resume from iteration 2 does 3 and 4 again
    and metrics.jsonl (what `pspnet info` lists) and TensorBoard show them once, not twice."""
    part = tmp_path / "part"
    settings = config_dict(data_root, part, val_every=1, tensorboard=True)
    run(settings, tmp_path)
    whole = [(r["kind"], r["iteration"]) for r in map(json.loads, (part / "metrics.jsonl").read_text().splitlines())]
    (part / "checkpoints" / "iter_0000004.pt").unlink()  # as a kill before it was written leaves the run
    (part / "final.safetensors").unlink()
    run(settings, tmp_path, resume=True)
    records = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["iteration"]) for r in records] == whole
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(part / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val/val_mIoU")] == [1, 2, 3, 4]


def test_a_resume_from_an_earlier_checkpoint_moves_the_later_iterations_files_aside(data_root, tmp_path, capsys):
    """Left in place, the abandoned run's iter_4.pt was what a later plain --resume continued ('finished, iteration
    4 of 3'), and its final model stood for this run's."""
    out = tmp_path / "run"
    run(config_dict(data_root, out, iterations=4, val_every=4), tmp_path)
    first_final = (out / "final.safetensors").read_bytes()
    capsys.readouterr()
    run(config_dict(data_root, out, iterations=3, val_every=4), tmp_path,
        resume=out / "checkpoints" / "iter_0000002.pt")
    asides = list(out.glob("replaced-*"))
    assert len(asides) == 1 and sorted(p.name for p in asides[0].iterdir()) == [
        "best.safetensors", "final.safetensors", "iter_0000004.pt"]
    assert (asides[0] / "final.safetensors").read_bytes() == first_final
    said = capsys.readouterr().out
    assert (f"resuming at iteration 2: the files of later iterations, of the run that went on from it before "
            f"(iter_0000004.pt, final.safetensors, best.safetensors), were moved to {asides[0]}") in said
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["iter_0000002.pt", "iter_0000003.pt"]
    assert read_metadata(out / "final.safetensors")["provenance"]["iteration"] == 3
    run(config_dict(data_root, out, iterations=3, val_every=4), tmp_path, resume=True)
    assert "is finished (iteration 3 of 3)" in capsys.readouterr().out


def test_a_second_training_into_a_folder_being_trained_into_is_refused_and_info_says_it_runs(data_root, tmp_path,
                                                                                               capsys):
    """`pspnet info` said 'stopped ... --resume continues it' of a run still training, and the --resume it suggested
    trained beside the first run, their checkpoints and log lines interleaved."""
    import os
    import socket

    from pspnet.run_folder import LOCK, training_lock

    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", config_dict(data_root, out, iterations=2))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    before = sorted(p.name for p in out.rglob("*"))
    capsys.readouterr()
    holder = f"process {os.getpid()} on {socket.gethostname()}"
    with training_lock(out):  # as the first run holds it while it trains
        assert main(["info", str(out)]) == 0
        assert f"run: {out}: training now, by {holder}" in capsys.readouterr().out
        assert main(["train", "--config", str(cfg), "--no-progress", "--resume", "train.iterations=4"]) == 2
        assert capsys.readouterr().err == (f"pspnet train: error: train.out_dir = {out}: another `pspnet train` is "
                                           f"training into it now ({holder}); wait for it to end or stop it, or "
                                           "choose another train.out_dir\n")
    assert sorted(p.name for p in out.rglob("*")) == before  # the lock file stays, hidden: nothing else written
    assert main(["train", "--config", str(cfg), "--no-progress", "--resume", "train.iterations=4"]) == 0
    # A run that fails before writing anything leaves no folder made for its lock.
    bad = write_config(tmp_path / "b.yaml", config_dict(tmp_path / "no-data", tmp_path / "fresh"))
    assert main(["train", "--config", str(bad), "--no-progress"]) == 2 and not (tmp_path / "fresh").exists()
    assert (out / LOCK).is_file()


def test_a_resume_with_changed_settings_says_which_and_records_them(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    run(config_dict(data_root, out, iterations=2), tmp_path)
    run(config_dict(data_root, out, iterations=3), tmp_path, resume=True)
    printed = capsys.readouterr().out
    assert (f"resuming at iteration 2 with settings changed since the run started ({out / 'config.yaml'}): "
            "train.iterations 2 → 3\n") in printed
    run(config_dict(data_root, out, iterations=4, lr=0.02), tmp_path, resume=True)
    assert "train.iterations 2 → 4, train.lr 0.01 → 0.02\n" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["changed"]) for r in records if r["kind"] == "resume"] == [
        (2, ["train.iterations 2 → 3"]), (3, ["train.iterations 2 → 4", "train.lr 0.01 → 0.02"])]
    # ... and the run goes on with them: the new lr on the poly schedule (the optimiser's saved lr is not restored).
    lr = [r["lr"] for r in records if r["kind"] == "train" and r["iteration"] == 4][-1]
    assert lr == pytest.approx(0.02 * (1 - 3 / 4) ** 0.9)


def test_a_resume_with_other_model_settings_names_them(data_root, tmp_path):
    out = tmp_path / "run"
    run(config_dict(data_root, out, iterations=2), tmp_path)
    changed = config_dict(data_root, out, iterations=3)
    changed["model"] |= {"dropout": 0.1, "bins": [1, 2, 4]}
    with pytest.raises(PSPNetError) as e:
        run(changed, tmp_path, resume=True)
    assert str(e.value) == (f"{out / 'checkpoints' / 'iter_0000002.pt'}: its weights are for other model settings "
                            "than the config's (model.bins [1, 2, 3, 6] → [1, 2, 4], model.dropout 0.0 → 0.1); resume "
                            "with the run's own model settings, or start afresh with --overwrite or another "
                            "train.out_dir")


def test_a_resume_of_a_run_saved_before_a_setting_existed_does_not_report_it_as_changed(data_root, tmp_path, capsys):
    """A run started by an earlier pspnet has no `train.fast` in its config.yaml: resumed, that setting at its
    default is no change, and the real changes are shown as they are written in YAML."""
    out = tmp_path / "run"
    run(config_dict(data_root, out, iterations=2), tmp_path)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["train"]["fast"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    run(config_dict(data_root, out, iterations=3, tensorboard=True), tmp_path, resume=True)
    assert ("settings changed since the run started (" + str(out / "config.yaml") + "): train.iterations 2 → 3, "
            "train.tensorboard false → true\n") in capsys.readouterr().out


def exact_config(data_root: Path, out: Path, **train: object) -> dict:
    """GroupNorm (BatchNorm statistics depend on the micro-batch) and no ignore pixels (equal loss weights)."""
    d = config_dict(data_root, out, iterations=2, batch_size=4, checkpoint_every=10, **train)
    d["model"]["norm"] = "group"
    d["data"].update({"scale_range": [1.0, 1.0], "rotate_p": 0.0})
    return d


def test_gradient_accumulation_matches_the_full_batch(data_root, tmp_path):
    a = weights(run(exact_config(data_root, tmp_path / "whole"), tmp_path).final_checkpoint)
    b = weights(run(exact_config(data_root, tmp_path / "acc", accumulate=2), tmp_path).final_checkpoint)
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)


def test_a_non_finite_loss_stops_with_the_iteration_and_keeps_the_last_checkpoint(data_root, tmp_path, capsys):
    out = tmp_path / "nan"
    cfg = config_dict(data_root, out, lr=1e30, iterations=6, checkpoint_every=1)
    code = main(["train", "--config", str(write_config(tmp_path / "nan.yaml", cfg)), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "the loss became" in err and "at iteration" in err and "last good checkpoint" in err
    assert "Traceback" not in err
    for path in list_checkpoints(out / "checkpoints"):
        assert all(torch.isfinite(v).all() for v in load_training_checkpoint(path)["model"].values()
                   if v.is_floating_point())
    assert not (out / "final.safetensors").exists()


def test_without_a_validation_split_the_error_says_how_to_train_without_one(tmp_path, capsys):
    root = make_folders_dataset(tmp_path / "data", n_train=2, n_val=0)
    for kind in ("images", "labels"):
        (root / kind / "val").rmdir()
    cfg = config_dict(root, tmp_path / "run", val_every=2)
    assert main(["train", "--config", str(write_config(tmp_path / "c.yaml", cfg)), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pspnet train: error: {root / 'images/val'}: no such image folder (the validation split: add it, hold out "
        "part of train with data.val_fraction=0.1, or train without validation: train.val_every=-1)")


def test_val_fraction_validates_on_train_pairs_held_out_of_training(data_root, tmp_path, capsys):
    cfg = config_dict(data_root, tmp_path / "run", val_every=4)
    cfg["data"]["val_fraction"] = 0.25
    run(cfg, tmp_path)
    assert (f"validation on 2 of the 8 train pairs, held out of training (data.val_fraction 0.25); "
            f"{data_root / 'images' / 'val'}, which holds images, is not used (data.val_fraction=0 validates on it)"
            ) in capsys.readouterr().out  # the val folder this dataset has: said, not silently passed over
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["images"] for r in records if r["kind"] == "val"] == [2]


def test_an_unknown_config_key_is_named(data_root, tmp_path, capsys):
    cfg = config_dict(data_root, tmp_path / "x")
    cfg["train"]["learning_rate"] = 0.1
    assert main(["train", "--config", str(write_config(tmp_path / "bad.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert "unknown key train.learning_rate" in err and err.count("\n") == 1


def test_a_wrong_type_names_the_key_and_the_value(data_root, tmp_path, capsys):
    cfg = config_dict(data_root, tmp_path / "x")
    path = write_config(tmp_path / "cfg.yaml", cfg)
    assert main(["train", "--config", str(path), "train.batch_size=many"]) == 2
    assert "train.batch_size = 'many'; expected an integer" in capsys.readouterr().err


SAVE_LOOP = """
import sys, torch
from pathlib import Path
from pspnet import PSPNet
from pspnet.train.checkpoints import save_training_checkpoint
model = PSPNet(3, backbone="resnet18")
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for i in range(1, 10_000):
    save_training_checkpoint(Path(sys.argv[1]), model, opt, i, {}, keep_last=2)
    print(i, flush=True)
"""


def test_a_kill_during_checkpoint_writing_leaves_loadable_checkpoints(tmp_path):
    directory = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # one checkpoint written; the next is being written
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    found = list_checkpoints(directory)
    assert found, "the completed checkpoints must survive"
    for path in found:
        assert load_training_checkpoint(path)["iteration"] >= 1



@pytest.mark.parametrize(("failing", "code"), [("iter_0000004.pt", "ENOSPC"), ("final.safetensors", "ENOSPC"),
                                               ("metrics.jsonl", "ENOSPC"), ("final.safetensors", "EROFS")])
def test_a_full_disk_stops_the_run_in_one_line_and_resume_continues_to_the_same_weights(
        data_root, tmp_path, monkeypatch, capsys, failing, code):
    """A write that fails (the disk full at the second checkpoint, at the final model, or at a log line) is one line
    naming the file, why, and the checkpoint --resume continues from; nothing half-written is left, and the resumed
    run ends with the weights of a run that never stopped."""
    import errno

    import pspnet.train.runlog

    whole = weights(run(config_dict(data_root, tmp_path / "whole", iterations=4, checkpoint_every=2),
                        tmp_path).final_checkpoint)
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "run.yaml", config_dict(data_root, out, iterations=4, checkpoint_every=2))
    full = OSError(getattr(errno, code), os.strerror(getattr(errno, code)))  # as a write() says it: no file named
    real_write, real_open = Path.write_bytes, open

    def write_bytes(self, data):  # the checkpoints and models are written to a temporary file beside them
        if self.name.startswith(f".{failing}."):
            raise full
        return real_write(self, data)

    def opening(path, *args, **kwargs):  # the log appends its lines with open(path, "a")
        if Path(path).name == failing and iteration_logged(path):
            raise full
        return real_open(path, *args, **kwargs)

    def iteration_logged(path) -> bool:  # the third line (iteration 3) is the one that fails
        return Path(path).is_file() and len(Path(path).read_text().splitlines()) >= 2

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(pspnet.train.runlog, "open", opening, raising=False)
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    path = out / failing if failing != "iter_0000004.pt" else out / "checkpoints" / failing
    last = out / "checkpoints" / ("iter_0000004.pt" if failing == "final.safetensors" else "iter_0000002.pt")
    fix = "make room" if code == "ENOSPC" else "make it writable"  # a read-only disk: not "make room"
    assert err == (f"pspnet train: error: {path}: cannot write it ({full.strerror}); the last checkpoint, "
                   f"{last}, is intact: {fix} and --resume continues from it\n")
    assert not (out / "final.safetensors").exists()
    monkeypatch.undo()
    assert main(["train", "--config", str(cfg), "--resume", "--no-progress"]) == 0
    resumed = weights(out / "final.safetensors")
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_an_out_dir_that_cannot_be_made_is_refused_before_the_run_starts(data_root, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    cfg = write_config(tmp_path / "c.yaml", config_dict(data_root, tmp_path / "file" / "run"))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"pspnet train: error: train.out_dir = {tmp_path / 'file' / 'run'}: cannot write into it: {tmp_path / 'file'}, "
        "where it would be made, is not a writable folder; choose a folder you can write to\n")

@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_activation_checkpointing_trains_to_the_same_weights(data_root, tmp_path, capsys):
    """BatchNorm and dropout on: the recomputed forward replays the dropout masks and leaves the statistics alone."""
    def cfg(out: Path, **train: object) -> dict:
        d = config_dict(data_root, out, iterations=2, checkpoint_every=10, **train)
        d["model"]["dropout"] = 0.1
        return d

    a = weights(run(cfg(tmp_path / "plain"), tmp_path).final_checkpoint)
    b = weights(run(cfg(tmp_path / "recomputed", activation_checkpointing=True), tmp_path).final_checkpoint)
    assert "training recipe fp32, activation checkpointing;" in capsys.readouterr().out
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)
    assert torch.equal(a["backbone.layer1.0.bn1.running_mean"], b["backbone.layer1.0.bn1.running_mean"])


def test_two_process_torchrun_matches_one_process_with_the_same_global_batch(data_root, tmp_path):
    """Both start from other weights (train.init): 5 classes and no auxiliary head, so the classifiers and that
    head start afresh, and another normalisation, which the runs take. The two processes recompute the backbone's
    activations (train.activation_checkpointing) and accumulate two micro-batches of one image each per step (DDP's
    gradients reduced at the last), the one process keeps them and takes its 4 images at once: the same weights."""
    torch.manual_seed(1)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    other = PSPNet(5, backbone="resnet18", norm="group", aux=False,
                   info=DatasetInfo("other", list("abcde"), mean=mean, std=std))
    init = pspnet.save(other, tmp_path / "init.safetensors")

    def cfg(out: Path) -> Path:
        d = exact_config(data_root, out, init=str(init))
        d["data"]["label_values"] = [0, 1, 2]  # read through data.label_values on every process (the same indices)
        return write_config(tmp_path / f"{out.name}.yaml", d)

    one = tmp_path / "one"
    assert main(["train", "--config", str(cfg(one)), "--no-progress"]) == 0
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = tmp_path / "fit.py"  # a user's script under torchrun: pspnet.fit (the command's DDP runs elsewhere)
    # Each process writes what pspnet.fit returned to a file of its own: their stdout, which torchrun shares and
    # relays, once came back with one of the two lines missing (under a loaded machine). The script started its own
    # process group, which pspnet.fit uses and leaves to it: the barrier after it needs it still.
    script.write_text("import os\nimport sys\nfrom pathlib import Path\nimport torch.distributed as dist\n"
                      "import pspnet\n\ndist.init_process_group('gloo')\n"
                      "run = pspnet.fit(sys.argv[1], sys.argv[2:], progress=False)\ndist.barrier()\n"
                      "Path(sys.argv[1]).with_name(f\"fitted_{os.environ['RANK']}.txt\").write_text("
                      "f'fitted {run.iterations} {run.final_checkpoint}')\ndist.destroy_process_group()\n")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         str(cfg(two)), "train.device=cpu", "train.activation_checkpointing=true", "train.accumulate=2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):  # each process returns the summary
        assert (tmp_path / f"fitted_{rank}.txt").read_text() == f"fitted 2 {two / 'final.safetensors'}"
    a, b = weights(one / "final.safetensors"), weights(two / "final.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    assert a["head.classifier.weight"].shape[0] == 3 and "aux_head.classifier.weight" in a
    assert all(read_metadata(run / "final.safetensors")["info"]["mean"] == list(mean) for run in (one, two))


def test_the_global_batch_must_divide_over_processes_and_accumulation(data_root, tmp_path):
    with pytest.raises(PSPNetError, match="not divisible"):
        run(config_dict(data_root, tmp_path / "x", batch_size=3, accumulate=2), tmp_path)


def test_a_run_starved_by_its_data_loader_says_so_and_logs_the_waiting_share(data_root, tmp_path, monkeypatch,
                                                                             capsys) -> None:
    from pspnet.train import trainer as trainer_module

    batches = trainer_module.micro_batches

    def slow(*args, **kwargs):  # a loader that takes 0.3 s per batch: a slow disk
        for batch in batches(*args, **kwargs):
            time.sleep(0.3)
            yield batch

    monkeypatch.setattr(trainer_module, "micro_batches", slow)
    # The note's share, lowered: on a loaded machine the steps themselves slow down and the 0.3 s waits (0.9 s of the
    # run) fell under the 10% the note needs; every wait is still measured and logged for real.
    monkeypatch.setattr(trainer_module, "DATA_WAIT_NOTE", 0.02)
    run(config_dict(data_root, tmp_path / "run", iterations=4), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    waits = [r["data_wait"] for r in records if r["kind"] == "train"]
    assert len(waits) == 4 and all(0.0 <= w < 1.0 for w in waits) and max(waits[1:]) > 0.2
    assert waits[0] == 0.0  # the first batch (the loader starting up) is not counted
    out = capsys.readouterr().out
    assert "the training steps waited for data" in out and "data.workers 0" in out and "more data.workers" in out


def test_overrides_may_stand_on_both_sides_of_an_option(data_root, tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(data_root, tmp_path / "run"))
    assert main(["train", "--config", str(cfg), "train.lr=0.5", "--print-config", "train.iterations=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["train"]["lr"], printed["train"]["iterations"]) == (0.5, 7)
    assert main(["train", "--config", str(cfg), "train.lr=0.5", "--print-config", "--bogus"]) == 2
    assert capsys.readouterr().err == ("pspnet train: error: unrecognized argument --bogus; `pspnet train --help` "
                                       "lists what it takes\n")


def test_activation_checkpointing_compiles_with_the_model(data_root, tmp_path):
    """Measured on an H100 (the fast training step with it, BENCHMARKS.md) and its mechanism tested compiled
    (tests/model/test_recompute.py): training no longer refuses the two together."""
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(data_root, tmp_path / "run", activation_checkpointing=True,
                                                           compile=True))
    recipe = load_train_config(cfg).train.recipe("fp32")
    assert recipe.compile and recipe.activation_checkpointing
    assert recipe.describe() == "fp32, compiled, activation checkpointing"


def test_a_training_step_out_of_memory_says_what_to_change_and_resume_continues_with_it(data_root, tmp_path, capsys,
                                                                                          monkeypatch):
    """Steps 1 and 2 fit, step 3 runs out of memory, as a GPU would with 2 images per forward: a one-line error with
    the settings that hold less, and the run continues from its last checkpoint with one of them."""
    forward, calls = PSPNet.forward, []

    def runs_out_of_memory(self: PSPNet, x: torch.Tensor):
        if self.training:
            calls.append(x.shape[0])
            if len(calls) > 2 and x.shape[0] > 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")
        return forward(self, x)

    monkeypatch.setattr(PSPNet, "forward", runs_out_of_memory)
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", config_dict(data_root, out, iterations=4, checkpoint_every=2))
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "pspnet train: error: out of memory in training step 3 on cpu, 2 images of 32×32 per forward; lower what one "
        "forward holds with train.accumulate=2 (the batch stays 2 per step, 1 image per forward: BatchNorm's "
        "statistics then come from one), train.activation_checkpointing=true (up to 1.85× less memory, about 15% "
        f"slower) or a smaller data.crop_size; the last checkpoint, {out / 'checkpoints' / 'iter_0000002.pt'}, is "
        "intact: --resume continues from it with the change\n")
    assert main(["train", "--config", str(path), "--no-progress", "--resume", "train.accumulate=2"]) == 0
    assert calls[3:] == [1, 1, 1, 1]  # steps 3 and 4, two forwards of one image each
    assert load_training_checkpoint(out / "checkpoints" / "iter_0000004.pt")["iteration"] == 4


def test_a_missing_resume_file_is_named_before_the_data_is_read(tmp_path, capsys):
    """No data check, no class weights, no model first: the data root here does not even exist."""
    cfg = config_dict(tmp_path / "no_data", tmp_path / "run")
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "--config", str(path), "--resume", str(tmp_path / "iter_0000100.pt")]) == 2
    assert capsys.readouterr().err == f"pspnet train: error: {tmp_path / 'iter_0000100.pt'}: no such checkpoint file\n"


def test_a_checkpoint_of_another_run_is_refused_before_anything_is_written(data_root, tmp_path, capsys):
    """Continued into another folder, the two runs' checkpoints and logs would mix (or a new folder got no
    config.yaml and the run crashed at its end); train.init is the way to start from its weights."""
    other = tmp_path / "other"
    run(config_dict(data_root, other, iterations=2, checkpoint_every=2), tmp_path)
    ckpt = other / "checkpoints" / "iter_0000002.pt"
    third = tmp_path / "third"
    run(config_dict(data_root, third, iterations=1, checkpoint_every=1), tmp_path)
    before = sorted(p.name for p in third.rglob("*"))
    for out in (tmp_path / "new", third):
        path = write_config(tmp_path / "c.yaml", config_dict(data_root, out, iterations=4))
        assert main(["train", "--config", str(path), "--no-progress", "--resume", str(ckpt)]) == 2
        assert capsys.readouterr().err == (
            f"pspnet train: error: {ckpt}: not one of the checkpoints of the run in train.out_dir "
            f"({out / 'checkpoints'}); --resume continues a run in its own folder (set train.out_dir to the run the "
            f"checkpoint belongs to), and train.init={ckpt} starts a new run from its weights\n")
    assert not (tmp_path / "new").exists() and sorted(p.name for p in third.rglob("*")) == before
    path = write_config(tmp_path / "c.yaml", config_dict(data_root, other, iterations=3))  # its own run: continued
    assert main(["train", "--config", str(path), "--no-progress", "--resume", str(ckpt)]) == 0


def test_the_validation_protocol_travels_with_the_model_to_predict_eval_and_exports(data_root, tmp_path, capsys):
    """`pspnet train` records its val: protocol with the classes; predict, the Python API and exported graphs take
    it as their default (a CamVid model trained by scripts/camvid.sh scored 49.88 mIoU through `pspnet predict`'s
    defaults against eval's 54.99 before), and an option on the command line still changes it."""
    cfg = config_dict(data_root, tmp_path / "run", iterations=1, checkpoint_every=10)
    cfg["val"] = {"base_size": 24, "crop_size": [16, 16], "mode": "slide", "flip": False, "scales": [1.0, 1.5]}
    final = run(cfg, tmp_path).final_checkpoint
    model = pspnet.load(final)
    want = pspnet.InferenceSettings(base_size=24, crop_size=(16, 16), mode="slide", flip=False, scales=(1.0, 1.5))
    assert pspnet.InferenceSettings.for_model(model.info) == want
    image = data_root / "images" / "val" / "0.png"
    assert (pspnet.predict(model, image) == pspnet.predict(model, image, settings=want)).all()
    official = pspnet.InferenceSettings.for_dataset("folders")
    assert official != want
    out = tmp_path / "pred"
    assert main(["predict", str(final), str(image), "--out", str(out), "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert f"protocol: the one {final} was validated with in training" in err and want.describe() in err
    assert (np.asarray(Image.open(out / "0.png")) == pspnet.predict(model, image, settings=want)).all()
    assert main(["predict", str(final), str(image), "--out", str(tmp_path / "p2"), "--backend", "torch",
                 "--mode", "whole"]) == 0
    assert "whole image, scales 1 1.5, no flip" in capsys.readouterr().err
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(final), "--format", "onnx", "--out", str(onnx)]) == 0
    assert pspnet.InferenceSettings.for_model(read_info(onnx)) == want
    capsys.readouterr()
    assert main(["info", str(onnx)]) == 0
    assert f"test protocol: {want.describe()} (validated with it in training" in capsys.readouterr().out


def read_info(path: Path) -> DatasetInfo:
    from pspnet.export.read_metadata import export_metadata

    return DatasetInfo.from_dict(export_metadata(path)["info"], str(path))


def test_a_model_saved_before_the_protocol_travelled_reads_it_from_its_provenance(tmp_path):
    protocol = {"base_size": 240, "crop_size": [180, 240], "scales": [1.0], "flip": True, "mode": "whole"}
    path = pspnet.save(PSPNet(3, backbone="resnet18"), tmp_path / "old.safetensors", {"val_protocol": protocol})
    assert pspnet.load(path).info.protocol == protocol
    assert read_metadata(path)["info"]["protocol"] == protocol
    plain = pspnet.save(PSPNet(3, backbone="resnet18"), tmp_path / "plain.safetensors")
    assert pspnet.load(plain).info.protocol is None  # the dataset's official protocol, as before


def test_a_validation_batch_that_does_not_fit_runs_in_parts_and_names_the_val_setting(data_root, tmp_path, capsys,
                                                                                      monkeypatch):
    """The validation's network batch runs out of memory (as on a GPU): it runs in parts, and the note names the
    config's setting (val.batch_size), not the eval command's option."""
    from pspnet.model.pspnet import PSPNet

    forward = PSPNet.forward

    def runs_out_beyond_one(self, x, *args, **kwargs):
        if not self.training and x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(PSPNet, "forward", runs_out_beyond_one)
    cfg = config_dict(data_root, tmp_path / "run", iterations=2, val_every=2)
    cfg["val"]["batch_size"] = 2
    cfg["train"]["precision"] = "fp32"
    summary = run(cfg, tmp_path)
    assert summary.best_miou is not None
    said = capsys.readouterr().out
    assert "did not fit in the memory of cpu; running 1 at a time from now on (val.batch_size: 1 starts there)" in said


def test_fit_names_its_own_arguments_where_the_command_names_flags(data_root, tmp_path, monkeypatch):
    """From Python, continuing and restarting are `resume=True` and `overwrite=True`: the messages say so."""
    import signal

    from pspnet.train.stop import StopRequests, TrainingStopped

    settings = config_dict(data_root, tmp_path / "run", iterations=4, checkpoint_every=2)
    monkeypatch.setattr(StopRequests, "agreed", lambda self, d: signal.SIGTERM)  # a stop asked for at once
    with pytest.raises(TrainingStopped, match=r"after iteration 1: saved .*iter_0000001.pt; `resume=True` continues "
                                              r"from it$"):
        pspnet.fit(settings, progress=False)
    monkeypatch.undo()
    with pytest.raises(PSPNetError, match=r"holds an earlier run .*; continue it with resume=True, or start afresh "
                                          r"with overwrite=True \(its files"):
        pspnet.fit(settings, progress=False)
    with pytest.raises(PSPNetError, match=r"^resume=True continues the run in train.out_dir and overwrite=True starts "
                                          r"it afresh: choose one$"):
        pspnet.fit(settings, resume=True, overwrite=True, progress=False)


def test_epochs_set_beside_iterations_is_said_to_be_unused(data_root, tmp_path, capsys):
    run(config_dict(data_root, tmp_path / "run", iterations=1, epochs=3), tmp_path)  # e.g. train.epochs=3 overriding
    assert ("note: train.iterations 1 sets the run's length; train.epochs 3 (12 iterations) is not used "
            "(train.iterations=0 uses it)") in capsys.readouterr().out
