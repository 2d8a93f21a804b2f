"""A run asked to stop (SIGTERM from a scheduler, Ctrl-C) finishes its iteration, saves a checkpoint there and exits
143 / 130; resumed, it ends with the weights of a run never stopped. A validation in progress is cut short and run
first on resume. A second request stops at once without saving."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pspnet.cli.main import main

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402

SIGNAL_AT = Path(__file__).parent / "signal_at.py"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_folders_dataset(tmp_path_factory.mktemp("data"), n_train=16, n_val=4)


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory) -> Path:
    """The final weights of the 6-iteration run of 8 micro-batches a step, never stopped."""
    tmp = tmp_path_factory.mktemp("whole")
    assert main(["train", "--config", str(write(tmp, data_root, tmp / "run", accumulate=8)), "--no-progress"]) == 0
    return tmp / "run" / "final.safetensors"


def write(tmp: Path, data_root: Path, out: Path, workers: int = 0, val_every: int = -1, accumulate: int = 2) -> Path:
    """Six iterations of `accumulate` micro-batches of two images, a checkpoint every 100 (none on the way: a stop
    writes its own); with `val_every`, validations of one image per forward (four groups a stop can come between).
    With `workers`, the data come from worker processes (they get a scheduler's SIGTERM too), 2 × 2 micro-batches in
    flight when a step needing 8 (`accumulate=8`) starts: the step needs them alive after the signal. (Workers run in
    subprocess tests only: forked from a test process where OpenVINO's threads run, they hang.) The weights do not
    depend on them: they only decode."""
    cfg = config_dict(data_root, out, iterations=6, checkpoint_every=100, batch_size=2 * accumulate,
                      accumulate=accumulate)
    cfg["data"]["workers"] = workers
    cfg["train"]["val_every"] = val_every
    cfg["val"]["batch_size"] = 1
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX's")
def test_sigterm_to_the_run_and_its_loader_workers_saves_the_iteration_and_resumes_exactly(data_root, uninterrupted,
                                                                                           tmp_path):
    """As a scheduler stops a job: SIGTERM to the whole process group (the data loader's workers included) during
    the third step → iteration 3 finished and saved, exit 143; --resume ends where a run never stopped ends."""
    out = tmp_path / "run"
    cfg = write(tmp_path, data_root, out, workers=2, accumulate=8)
    done = run_signalled(cfg, 2, "SIGTERM", "group")
    assert done.returncode == 143, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    assert "SIGTERM received: stopping after this iteration with a checkpoint" in printed
    saved = out / "checkpoints" / "iter_0000003.pt"
    assert (f"stopped by SIGTERM after iteration 3: saved {saved}; `--resume` continues from it") in printed
    assert "Traceback" not in printed and saved.is_file() and not (out / "final.safetensors").exists()
    assert main(["train", "--config", str(cfg), "data.workers=0", "--resume", "--no-progress"]) == 0  # in-process
    assert same_weights(out / "final.safetensors", uninterrupted)


def run_signalled(cfg: Path, at: int | str, signals: str, target: str, **env: str) -> subprocess.CompletedProcess:
    """`pspnet train --config cfg` in a process (and process group) of its own, sent `signals` during step `at`
    (or at the start of the validation at iteration N: `valN`; `signal_at.py`). Signals are not sent to the test
    process itself: after OpenVINO's TensorFlow frontend has been loaded in it (tests/export), a SIGINT there ended
    pytest with a segmentation fault."""
    return subprocess.run([sys.executable, str(SIGNAL_AT), str(at), signals, target, "train", "--config", str(cfg),
                           "--no-progress"], capture_output=True, text=True, timeout=300, start_new_session=True,
                          env={**os.environ, **env})


def test_ctrl_c_twice_at_once_is_one_request(data_root, uninterrupted, tmp_path):
    """torchrun's workers get a Ctrl-C twice (the terminal's and torchrun's): one request, a checkpoint, exit 130."""
    out = tmp_path / "run"
    cfg = write(tmp_path, data_root, out, accumulate=8)
    done = run_signalled(cfg, 3, "SIGINT,SIGINT", "self")
    assert done.returncode == 130, done.stderr[-3000:]
    assert f"stopped by SIGINT after iteration 4: saved {out / 'checkpoints' / 'iter_0000004.pt'}" in done.stdout
    assert main(["train", "--config", str(cfg), "--resume", "--no-progress"]) == 0
    assert same_weights(out / "final.safetensors", uninterrupted)


def test_a_second_request_stops_at_once_without_saving(data_root, tmp_path):
    out = tmp_path / "run"
    done = run_signalled(write(tmp_path, data_root, out), 1, "SIGINT,SIGINT", "self", REPEAT_WINDOW_S="0")
    assert done.returncode == 130, done.stderr[-3000:]  # the second Ctrl-C is a person's, not torchrun's copy
    assert "stopped at once, without saving" in done.stdout and "pspnet train: interrupted" in done.stderr
    assert not list((out / "checkpoints").glob("*.pt")) if (out / "checkpoints").exists() else True


def test_the_signal_handlers_are_restored_after_training(data_root, tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["train", "--config", str(write(tmp_path, data_root, tmp_path / "run")), "--no-progress"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.fixture(scope="module")
def validated(data_root, tmp_path_factory) -> Path:
    """The run validated at iterations 3 and 6, never stopped."""
    tmp = tmp_path_factory.mktemp("validated")
    assert main(["train", "--config", str(write(tmp, data_root, tmp / "run", val_every=3)), "--no-progress"]) == 0
    return tmp / "run"


def val_records(run: Path) -> list[tuple[int, float]]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [(r["iteration"], r["val_mIoU"]) for r in records if r["kind"] == "val"]


@pytest.mark.parametrize("at", [3, 6], ids=["midway", "last"])
def test_sigterm_during_a_validation_cuts_it_short_and_resume_validates_first(data_root, validated, tmp_path, capsys,
                                                                              at):
    """A validation can outlast a scheduler's grace period: SIGTERM while it scores its first image stops it (nothing
    of it logged), saves the iteration marked as owing its validation, exits 143; `--resume` validates that
    iteration first (the last one too: the run had not written its final model) and ends as the run never stopped,
    with the same validations, best model and final model."""
    out = tmp_path / "run"
    cfg = write(tmp_path, data_root, out, val_every=3)
    done = run_signalled(cfg, f"val{at}", "SIGTERM", "self")
    assert done.returncode == 143, done.stderr[-3000:]
    saved = out / "checkpoints" / f"iter_{at:07d}.pt"
    assert (f"stopped by SIGTERM during the validation of iteration {at}: saved {saved}; `--resume` validates it "
            "first, then continues") in done.stdout
    assert f"iteration {at}: val mIoU" not in done.stdout and "Traceback" not in done.stderr
    assert [i for i, _ in val_records(out)] == [3][: at // 3 - 1]
    assert not (out / "final.safetensors").exists()
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--resume", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"validating iteration {at} first: its validation did not finish" in said
    assert val_records(out) == val_records(validated)
    assert same_weights(out / "final.safetensors", validated / "final.safetensors")
    assert same_weights(out / "best.safetensors", validated / "best.safetensors")


def test_a_run_killed_before_writing_its_final_model_validates_and_writes_it_on_resume(validated, data_root,
                                                                                        tmp_path, capsys):
    """Killed (SIGKILL, a lost node) after its last checkpoint but before final.safetensors: not 'finished' on
    resume, which runs the last validation again and writes the final model."""
    out = tmp_path / "run"
    shutil.copytree(validated, out)
    (out / "final.safetensors").unlink()
    assert main(["train", "--config", str(write(tmp_path, data_root, out, val_every=3)), "--resume",
                 "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "validating iteration 6 first" in said and "is finished" not in said
    assert same_weights(out / "final.safetensors", validated / "final.safetensors")
    assert val_records(out) == val_records(validated)  # the validation done again is recorded once, not twice
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--resume", "--no-progress"]) == 0
    assert "is finished (iteration 6 of 6)" in capsys.readouterr().out


def test_a_resumed_validation_that_is_not_the_best_clears_the_checkpoints_mark(validated, data_root, tmp_path,
                                                                                capsys):
    """The owed validation ran on resume but did not beat the best: the checkpoint no longer says it owes one, so a
    later --resume of the finished run says so instead of validating again."""
    out = tmp_path / "run"
    shutil.copytree(validated, out)
    (out / "final.safetensors").unlink()
    last = out / "checkpoints" / "iter_0000006.pt"
    saved = torch.load(last, weights_only=True)
    saved["progress"] = json.dumps({"best_miou": 2.0, "val_due": 6})  # cut short, with a best no mIoU beats
    torch.save(saved, last)
    cfg = write(tmp_path, data_root, out, val_every=3)
    assert main(["train", "--config", str(cfg), "--resume", "--no-progress"]) == 0
    assert "validating iteration 6 first" in capsys.readouterr().out
    assert "val_due" not in json.loads(torch.load(last, weights_only=True)["progress"])
    assert main(["train", "--config", str(cfg), "--resume", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "is finished (iteration 6 of 6)" in said and "validating" not in said
