"""A run's folder is never trained into twice by accident: --resume continues, --overwrite starts afresh with the
old files moved aside, and a finished run is reported as finished."""

import errno
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from pspnet.cli.main import main

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-iteration run: (its config, its out_dir)."""
    tmp = tmp_path_factory.mktemp("outdir")
    root = make_folders_dataset(tmp / "data")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(root, tmp / "run", iterations=2, checkpoint_every=1)))
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0
    return cfg, tmp / "run"


def test_training_into_a_folder_that_holds_a_run_refuses_and_says_what_to_do(finished, capsys) -> None:
    cfg, out = finished
    before = (out / "metrics.jsonl").read_text()
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds an earlier run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_text() == before


def test_resuming_a_finished_run_says_so_and_trains_nothing(finished, capsys) -> None:
    cfg, out = finished
    before = (out / "metrics.jsonl").read_text()
    assert main(["train", "--config", str(cfg), "--no-progress", "--resume"]) == 0
    assert "is finished (iteration 2 of 2)" in capsys.readouterr().out
    assert (out / "metrics.jsonl").read_text() == before


def test_a_config_or_run_given_without_config_is_answered_with_the_command_meant(finished, capsys) -> None:
    cfg, out = finished
    assert main(["train", str(cfg), "train.lr=0.1"]) == 2  # as mmsegmentation's tools/train.py takes it
    assert capsys.readouterr().err.strip() == (f"pspnet train: error: {cfg}: the config goes after --config: "
                                               f"pspnet train --config {cfg} train.lr=0.1")
    assert main(["train", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pspnet train: error: {out}: the config goes after --config: pspnet train --config {out / 'config.yaml'} "
        "--resume (continues that run)")
    assert main(["train", "--config", str(out), "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (f"pspnet train: error: {out}: a folder, not a config file; the config "
                                               f"in it is {out / 'config.yaml'}")
    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip().startswith("pspnet train: error: --config FILE is required")


def test_resume_and_overwrite_together_are_refused(finished, capsys) -> None:
    cfg, _ = finished
    assert main(["train", "--config", str(cfg), "--resume", "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err


def copy_of(finished, tmp_path: Path) -> tuple[Path, Path]:
    """The finished run copied to tmp_path/run, and a config that trains there: (config, run folder)."""
    cfg, out = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    copy = tmp_path / "cfg.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["train"]["out_dir"] = str(run)
    copy.write_text(yaml.safe_dump(data))
    return copy, run


def test_overwrite_moves_the_earlier_run_aside_and_starts_afresh(finished, tmp_path) -> None:
    cfg, run = copy_of(finished, tmp_path)
    first = (run / "final.safetensors").read_bytes()
    assert main(["train", "--config", str(cfg), "--no-progress", "--overwrite"]) == 0
    aside = [p for p in run.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and (aside[0] / "final.safetensors").read_bytes() == first
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # the new run's lines only


def test_resuming_a_run_that_stopped_before_its_first_checkpoint_starts_it_afresh(finished, tmp_path,
                                                                                   capsys) -> None:
    """Killed before its first checkpoint (SIGKILL, the out-of-memory killer, a power cut), a run leaves its config,
    metrics and TensorBoard files and no weights: `--resume` (what a rerun of scripts/camvid.sh passes) was refused
    and the folder had to be cleared by hand. It starts afresh now, the earlier files moved aside; a run with
    weights but no checkpoints (its final model) is still not continued."""
    cfg, run = copy_of(finished, tmp_path)
    shutil.rmtree(run / "checkpoints")
    for name in ("final.safetensors", "best.safetensors"):
        (run / name).unlink(missing_ok=True)
    earlier = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--no-progress", "--resume"]) == 0
    printed = capsys.readouterr().out
    aside = [p for p in run.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == earlier
    assert (f"the earlier run in {run} was moved to {aside[0]} (it stopped before its first checkpoint: --resume "
            "starts afresh)") in printed
    assert (run / "final.safetensors").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) == 2
    shutil.rmtree(run / "checkpoints")  # now a final model and no checkpoints
    assert main(["train", "--config", str(cfg), "--no-progress", "--resume"]) == 2
    assert "holds an earlier run" in capsys.readouterr().err


def test_a_run_replaced_twice_in_one_second_keeps_both_earlier_runs(finished, tmp_path) -> None:
    """The folder for the moved files is named by the second; one of that name already there (a run replaced a
    moment before) is neither reused nor merged into: the files go to a folder of their own."""
    cfg, run = copy_of(finished, tmp_path)
    first = (run / "final.safetensors").read_bytes()
    now = time.time()
    taken = [run / time.strftime("replaced-%Y%m%d-%H%M%S", time.localtime(now + s)) for s in range(60)]
    for folder in taken:  # every second of the next minute already holds a replaced run
        folder.mkdir()
        (folder / "final.safetensors").write_bytes(b"an earlier run")
    assert main(["train", "--config", str(cfg), "--no-progress", "--overwrite"]) == 0
    [aside] = [p for p in run.iterdir() if p.name.startswith("replaced-") and p.name.endswith("-2")]
    assert aside.name[:-2] in {p.name for p in taken} and (aside / "final.safetensors").read_bytes() == first
    assert all((p / "final.safetensors").read_bytes() == b"an earlier run" for p in taken)
    assert all(sorted(q.name for q in p.iterdir()) == ["final.safetensors"] for p in taken)


def test_a_move_aside_that_fails_leaves_the_earlier_run_in_place_and_says_why(finished, tmp_path, monkeypatch,
                                                                            capsys) -> None:
    """A file of the earlier run that cannot be moved (here: its checkpoints folder, busy) stops --overwrite in one
    line, with what was moved before it put back: the folder holds the earlier run as it was."""
    cfg, run = copy_of(finished, tmp_path)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    real = Path.rename

    def rename(self, target):
        if self.name == "checkpoints":
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    assert main(["train", "--config", str(cfg), "--no-progress", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"pspnet train: error: train.out_dir = {run}: cannot move the earlier run aside into "
                          f"{run}/replaced-"), err
    assert err.endswith(" (Device or resource busy); nothing was moved\n"), err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not [p for p in run.iterdir() if p.name.startswith("replaced-")]
