"""Training, evaluation and prediction under torchrun (gloo on the CPU): validation on every process without a hang,
sharded evaluation and prediction equal to one process, and two "nodes" on this machine equal to one node with two
processes."""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
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

from pspnet.checkpoint import read_metadata
from pspnet.cli.main import main
from pspnet.engine.recipe import Recipe, training_precision

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402
from videos import write_video  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HANG = 300  # seconds: a deadlock becomes a failure, not a stuck suite
VAL_IMAGES = 5  # odd: the two shards differ in size
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_folders_dataset(tmp_path_factory.mktemp("data"), n_train=8, n_val=VAL_IMAGES)


def ddp_config(data_root: Path, out: Path, path: Path) -> Path:
    """BatchNorm without SyncBN (CPU processes each keep their own statistics), dropout on, validation every 2 of
    6 iterations. One network input per val batch, so a shard's batches are those of one process (sharding, not
    batch composition, is what is compared)."""
    d = config_dict(data_root, out, iterations=6, batch_size=4, val_every=2, checkpoint_every=2)
    d["model"]["dropout"] = 0.1
    d["val"]["batch_size"] = 1
    d["train"]["precision"] = "auto"  # resolved by every process alike (bf16 only if all CPUs have fast bf16 units)
    # TensorBoard on where installed: the first process writes it, and every process agrees on each of its writes.
    d["train"].update(tensorboard=TENSORBOARD, val_samples=2)
    path.write_text(yaml.safe_dump(d))
    return path


def torchrun(*args: str, nodes: tuple[int, int, int] | None = None, nproc: int = 2) -> list[str]:
    """The torchrun command: one machine with `nproc` processes, or node (rank, count, port) meeting at 127.0.0.1."""
    where = (["--standalone"] if nodes is None else
             ["--nnodes", str(nodes[1]), "--node-rank", str(nodes[0]), "--master-addr", "127.0.0.1",
              "--master-port", str(nodes[2])])
    return [sys.executable, "-m", "torch.distributed.run", *where, "--nproc-per-node", str(nproc),
            "-m", "pspnet.cli.main", *args]


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """torchrun in a session of its own, so that a hang can be ended with everything it started (`env`: variables
    besides the tests' own)."""
    return subprocess.Popen(command, env={**ENV, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(procs: list[subprocess.Popen], returncode: int = 0) -> list[str]:
    """Wait for every process (HANG seconds at most, then kill their sessions and fail); their stderr, once each
    ended with `returncode`."""
    try:
        errors = [proc.communicate(timeout=HANG)[1] for proc in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun still running after {HANG} s: a hang")
    finally:
        for proc in procs:  # SIGTERM first: torchrun then stops its workers (they run in sessions of their own)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    for proc, err in zip(procs, errors, strict=True):
        assert proc.returncode == returncode, err[-3000:]
    return errors


def output_of(proc: subprocess.Popen) -> tuple[str, str]:
    """Its stdout and stderr once it ended (HANG seconds at most: then its session is killed, the timeout raised)."""
    try:
        return proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(data_root, tmp_path_factory) -> tuple[Path, Path]:
    """A 2-process training run with validation (the run's folder and its config), with `--fast`: on CPUs the
    precision auto picks, agreed by both processes, and the pyramid at its bins (the two-node run below, with
    train.pyramid_at_bins instead, must equal this one)."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = ddp_config(data_root, tmp / "run", tmp / "run.yaml")
    finish([start(torchrun("train", "--config", str(cfg), "train.device=cpu", "--no-progress", "--fast"))])
    return tmp / "run", cfg


def val_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "val"]


def test_two_processes_validate_three_times_and_end(two_process_run) -> None:
    run, _ = two_process_run
    records = val_records(run)
    assert [r["iteration"] for r in records] == [2, 4, 6]
    assert all(r["images"] == VAL_IMAGES for r in records), "every val image counted once over the two shards"
    assert (run / "final.safetensors").is_file() and (run / "best.safetensors").is_file()
    auto = training_precision("auto", torch.device("cpu"))[0]  # both processes agreed on train.precision: auto
    assert read_metadata(run / "final.safetensors")["provenance"]["train_recipe"] == \
        Recipe(precision=auto, pyramid_at_bins=True).describe()
    if TENSORBOARD:  # what metrics.jsonl holds, and the samples of each validation
        from tensorboard.backend.event_processing import event_accumulator

        events = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("val/val_mIoU")] == [
            (r["iteration"], pytest.approx(r["val_mIoU"])) for r in records]
        assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
        assert [e.step for e in events.Images("val/samples (image | ground truth | prediction)")] == [2, 4, 6]


def test_the_last_validation_equals_a_one_process_eval_of_the_final_model(two_process_run, tmp_path) -> None:
    run, cfg = two_process_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(run / "final.safetensors"), "--config", str(cfg), "--device", "cpu", "--quiet",
                 "--workers", "0", "--json", str(out)]) == 0
    single = json.loads(out.read_text())
    assert single["images"] == VAL_IMAGES
    assert abs(val_records(run)[-1]["val_mIoU"] - single["mIoU"]) <= 1e-6


def test_two_process_eval_gives_the_one_process_confusion_matrix_exactly(two_process_run, tmp_path) -> None:
    run, cfg = two_process_run
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    saved = ["--save-predictions", "--outputs", "labels", "confidence"]
    # A report of 4 images spread over the 5 and the 4 lowest: either holds images of both processes' shards.
    report = ["--samples", "4"] if MATPLOTLIB else []
    assert main(["eval", str(run / "best.safetensors"), "--config", str(cfg), "--device", "cpu", "--quiet",
                 "--workers", "0", "--json", str(one), "--out", str(tmp_path / "one"), *saved,
                 *(["--report", str(tmp_path / "report_one"), *report] if report else [])]) == 0
    # The run's folder, as a user names it: its best model on the validation split of its own config.yaml.
    [err] = finish([start(torchrun("eval", str(run), "--device", "cpu", "--quiet", "--workers", "0",
                                   "--json", str(two), "--out", str(tmp_path / "two"), *saved,
                                   *(["--report", str(tmp_path / "report_two"), *report] if report else [])))])
    for grid in ("samples.png", "worst.png") if report else ():  # the report's images: those of one process
        assert (tmp_path / "report_one" / grid).read_bytes() == (tmp_path / "report_two" / grid).read_bytes(), grid
    assert err.count(f"{run}: a training run; using its best model, {run / 'best.safetensors'}") == 1, err[-3000:]
    assert err.count(f"data: the val split of the run's config (--config {run / 'config.yaml'})") == 1
    # each process saved its own images' label and confidence PNGs: together those of one process, byte for byte
    pngs = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(pngs) == 2 * VAL_IMAGES and sum(p.parts[0] == "confidence" for p in pngs) == VAL_IMAGES
    assert sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png")) == pngs
    assert all((tmp_path / "one" / p).read_bytes() == (tmp_path / "two" / p).read_bytes() for p in pngs)
    # every image's own row, gathered from both processes
    per_image = (tmp_path / "one" / "per_image.csv").read_text()
    assert per_image == (tmp_path / "two" / "per_image.csv").read_text()
    assert len(per_image.splitlines()) == 1 + VAL_IMAGES
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["processes"] == 2 and a["processes"] == 1
    # The CPU default engine in both: OpenVINO where installed (the two processes then share its conversion cache).
    expected = "openvino" if importlib.util.find_spec("openvino") else "torch"
    assert a["recipe"]["backend"] == b["recipe"]["backend"] == expected
    assert a["images"] == b["images"] == VAL_IMAGES
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["ignored_pixels"] == b["ignored_pixels"]  # summed over both shards
    assert sum(map(sum, a["confusion_matrix"])) > 0


def test_two_process_predict_writes_each_input_once_as_one_process_does(two_process_run, data_root, tmp_path) -> None:
    """Five images (two in a subfolder: --recursive), two videos (their frames shared) and an unreadable image between
    two processes: the same PNGs and videos at the same paths as one process, the failure counted once, one summary,
    and both processes (so torchrun) exiting 1 for the failed input."""
    run, _ = two_process_run
    model = str(run / "final.safetensors")
    inputs = tmp_path / "inputs"
    shutil.copytree(data_root / "images" / "val", inputs)
    for frames in (3, 4):  # the val images as frames
        write_video(inputs / f"v{frames}.mp4", [np.asarray(Image.open(inputs / f"{i}.png")) for i in range(frames)])
    (inputs / "broken.png").write_bytes(b"not a png")
    (inputs / "sub").mkdir()
    for moved in ("3.png", "4.png"):
        (inputs / moved).rename(inputs / "sub" / moved)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["predict", model, str(inputs), "--recursive", "--out", str(one), "--device", "cpu", "--quiet"]) == 1
    err = finish([start(torchrun("predict", model, str(inputs), "--recursive", "--out", str(two), "--device", "cpu",
                                 "--quiet"))], returncode=1)[0]
    written = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(written) == 3 * VAL_IMAGES + 2  # labels, colour, overlay; an overlay video of each video
    assert len([p for p in written if "sub" in p.parts]) == 3 * 2
    assert [p for p in written if p.suffix == ".mp4"] == [Path("overlay/v3.mp4"), Path("overlay/v4.mp4")]
    assert sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) == written
    assert all((one / p).read_bytes() == (two / p).read_bytes() for p in written)  # H.264 encoding is deterministic
    assert err.count("v3.mp4: 3 frames → ") == err.count("v4.mp4: 4 frames → ") == 1  # by the first process
    assert err.count(f"{VAL_IMAGES + 2} of {VAL_IMAGES + 3} inputs written to {two}") == 1
    assert err.count("1 input(s) failed") == 1 and err.count("cannot read it as an image") == 1
    assert "device cpu, 2 processes)" in err
    # A second run into the same folder is refused before anything is computed, by each process alike, in one line
    # (the traceback that follows is torchrun's own report of the failed processes).
    again = finish([start(torchrun("predict", model, str(inputs), "--out", str(two), "--device", "cpu"))],
                   returncode=1)[0]
    assert again.count(f"pspnet predict: error: --out: {two / '0.png'} exists") == 2
    assert "pspnet/cli" not in again
    # --skip-existing after an interruption: both processes leave out the same finished inputs and share the rest.
    for path in [two / "overlay" / "0.png", *two.rglob("3.png"), two / "overlay" / "v4.mp4"]:
        path.unlink()
    resumed = finish([start(torchrun("predict", model, str(inputs), "--recursive", "--out", str(two), "--device",
                                     "cpu", "--quiet", "--skip-existing"))], returncode=1)[0]  # broken.png again
    assert resumed.count(f"--skip-existing: {VAL_IMAGES - 1} of {VAL_IMAGES + 3} inputs have their outputs in {two} "
                         "already; predicting the other 4") == 1
    assert resumed.count(f"3 of 4 inputs written to {two}") == 1
    assert sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) == written
    assert all((one / p).read_bytes() == (two / p).read_bytes() for p in written)


@pytest.mark.parametrize("when", ["2", "val4"], ids=["in-a-step", "in-a-validation"])
def test_torchrun_stopped_by_sigterm_saves_one_iteration_on_both_processes_and_resumes_exactly(
        two_process_run, tmp_path, when) -> None:
    """SIGTERM to torchrun (a scheduler stopping the job) during the third step, or while the validation at iteration
    4 scores its first image: torchrun passes it on, both processes stop at the same iteration (the validation cut
    short on both, though only one may have been mid-way), the checkpoint is saved once, and `--resume` under
    torchrun ends with the validations and weights of the run never stopped."""
    single, cfg = two_process_run
    out = tmp_path / "run"
    stopped = tmp_path / "stopped.yaml"
    stopped.write_text(cfg.read_text().replace(str(single), str(out)))
    signal_at = Path(__file__).parent / "signal_at.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(signal_at),
               when, "SIGTERM", "parent", "train", "--config", str(stopped), "train.device=cpu", "--no-progress",
               "--fast"]
    proc = start(command)
    output, err = output_of(proc)
    assert proc.returncode != 0, err[-3000:]  # torchrun reports its stopped workers
    said = [line for line in output.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(said) == 1, output[-3000:]  # the first process speaks for both
    if when == "val4":
        assert said[0].startswith("stopped by SIGTERM during the validation of iteration 4:"), said
        assert [r["iteration"] for r in val_records(out)] == [2]  # nothing of the cut validation logged
        iteration = 4
    else:
        iteration = int(said[0].split("after iteration ")[1].split(":")[0])
        assert iteration in (3, 4)
    assert (out / "checkpoints" / f"iter_{iteration:07d}.pt").is_file()
    assert not (out / "final.safetensors").exists()
    finish([start(torchrun("train", "--config", str(stopped), "train.device=cpu", "--no-progress", "--fast",
                           "--resume"))])
    a, b = load_file(str(single / "final.safetensors")), load_file(str(out / "final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(r["iteration"], r["val_mIoU"]) for r in val_records(out)] == [
        (r["iteration"], r["val_mIoU"]) for r in val_records(single)]


def test_torchrun_resumes_from_the_checkpoint_alone_when_the_init_weights_are_gone(two_process_run, data_root,
                                                                                    tmp_path) -> None:
    """Both processes continue from the checkpoint: the train.init file the run started from, deleted before the
    resume, is not read again; the run ends with the weights of the run never stopped."""
    single, _ = two_process_run
    init = tmp_path / "init.safetensors"
    init.write_bytes((single / "final.safetensors").read_bytes())
    cfg = ddp_config(data_root, tmp_path / "run", tmp_path / "run.yaml")
    settings = yaml.safe_load(cfg.read_text())
    settings["train"].update(init=str(init), iterations=4, val_every=-1)  # no validation: not the point here
    cfg.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    finish([start(torchrun("train", "--config", str(cfg), "train.device=cpu", "--no-progress"))])
    whole = torch.load(run / "checkpoints" / "iter_0000004.pt", weights_only=True)["model"]
    for path in (run / "checkpoints" / "iter_0000004.pt", run / "final.safetensors", init):  # killed at 4, init gone
        path.unlink()
    [err] = finish([start(torchrun("train", "--config", str(cfg), "train.device=cpu", "--no-progress", "--resume"))])
    resumed = load_file(str(run / "final.safetensors"))
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole), err[-3000:]


def test_a_full_disk_or_bad_data_under_torchrun_stops_both_processes_in_a_line_each(data_root, tmp_path) -> None:
    """The first process writes the run's files, moves an earlier run aside and checks the data; when it cannot (a
    full disk at the second checkpoint, a busy folder) or will not (a label beyond the classes), both processes stop
    there: it says why, the other that it stopped for it — no process waits for one that has gone, none prints a
    traceback."""
    cfg = ddp_config(data_root, tmp_path / "run", tmp_path / "run.yaml")
    helper = Path(__file__).parent / "write_fails_at.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(helper),
               "iter_0000004.pt", "train", "--config", str(cfg), "train.device=cpu", "train.val_every=-1",
               "--no-progress"]
    [err] = finish([start(command)], returncode=1)  # torchrun's own code for failed workers
    failed = tmp_path / "run" / "checkpoints" / "iter_0000004.pt"
    assert (f"pspnet train: error: {failed}: cannot write it (No space left on device); the last checkpoint, "
            f"{failed.with_name('iter_0000002.pt')}, is intact: make room and --resume continues from it\n") in err
    assert f"pspnet train: error: stopped: the first process could not write {failed}\n" in err
    assert "[rank0]: Traceback" not in err and "[rank1]: Traceback" not in err, err[-3000:]

    run = tmp_path / "run"  # the stopped run, started afresh: its checkpoints folder cannot be moved aside
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    command[command.index("iter_0000004.pt")] = "move:checkpoints"
    [err] = finish([start([*command, "--overwrite"])], returncode=1)
    assert f"pspnet train: error: train.out_dir = {run}: cannot move the earlier run aside into {run}" in err
    assert " (Device or resource busy); nothing was moved\n" in err
    assert "pspnet train: error: stopped: the first process could not move the earlier run aside\n" in err
    assert "[rank0]: Traceback" not in err and "[rank1]: Traceback" not in err, err[-3000:]
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before

    bad = tmp_path / "bad"
    shutil.copytree(data_root, bad)
    Image.fromarray(np.full((32, 40), 7, np.uint8)).save(bad / "labels" / "train" / "0.png")
    [err] = finish([start(torchrun("train", "--config", str(cfg), f"data.root={bad}", f"train.out_dir={tmp_path / 'b'}",
                                   "train.device=cpu", "--no-progress"))], returncode=1)
    assert "pspnet train: error: the data has 1 problem(s)" in err
    assert "pspnet train: error: stopped: the first process found problems in the data (its message lists them)" in err
    assert "[rank0]: Traceback" not in err and "[rank1]: Traceback" not in err, err[-3000:]


def test_two_nodes_train_to_the_weights_of_one_node_with_two_processes(two_process_run, data_root, tmp_path) -> None:
    """`torchrun --nnodes 2 --node-rank {0,1} --nproc-per-node 1` twice on this machine, meeting over 127.0.0.1:
    each process has local rank 0, so anything keyed on the local rank instead of the global one shows here."""
    single, _ = two_process_run
    cfg = ddp_config(data_root, tmp_path / "run", tmp_path / "run.yaml")
    port = free_port()
    finish([start(torchrun("train", "--config", str(cfg), "train.device=cpu", "--no-progress",
                           "train.pyramid_at_bins=true", nodes=(rank, 2, port), nproc=1)) for rank in (0, 1)])
    a, b = load_file(str(single / "final.safetensors")), load_file(str(tmp_path / "run" / "final.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_mIoU"] for r in val_records(single)] == [r["val_mIoU"] for r in val_records(tmp_path / "run")]


def test_an_export_under_torchrun_is_written_once_by_the_first_process(two_process_run, tmp_path) -> None:
    """A command that does not share its work out (export, score, data prepare, bench, ...) runs in the first
    process only: one file written by one process, its line printed once, and a note saying so."""
    run, _ = two_process_run
    out = tmp_path / "m.onnx"
    proc = start(torchrun("export", str(run / "final.safetensors"), "--format", "onnx", "--out", str(out)))
    output, err = output_of(proc)
    assert proc.returncode == 0, err[-3000:]
    assert output.count(f"{out}: onnx, input") == 1 and out.is_file(), output[-3000:]
    assert err.count("pspnet export: note: under torchrun (2 processes) the first process runs it") == 1, err[-3000:]


def test_two_process_eval_says_once_which_ground_truth_values_of_both_shards_are_no_class(two_process_run, data_root,
                                                                                         tmp_path) -> None:
    """Labels holding values that are no class (a void value of their own) on each process's shard: the images are
    skipped on the process that reads them, and the first process names every such value in one note."""
    import numpy as np
    from PIL import Image

    run, _ = two_process_run
    labels = tmp_path / "labels"
    shutil.copytree(data_root / "labels" / "val", labels)
    for index, value in ((1, 9), (2, 7)):  # image 1 is the second process's, image 2 the first's
        label = np.array(Image.open(labels / f"{index}.png"))
        label[0, 0] = value
        Image.fromarray(label).save(labels / f"{index}.png")
    err = finish([start(torchrun("eval", str(run / "final.safetensors"), "--images", str(data_root / "images" / "val"),
                                 "--labels", str(labels), "--device", "cpu", "--quiet", "--workers", "0"))],
                 returncode=1)[0]
    assert err.count("pspnet eval: skipped") == 2
    assert err.count("pspnet eval: note: ground-truth values 7, 9 are no class (0..2) and not the ignore index 255: "
                     "if they mark unlabelled pixels, data.ignore_values=[7,9]") == 1


EVALUATE_SHARDED = """
import json, os, sys
from pathlib import Path
import torch.distributed as dist
import pspnet
import pspnet.distributed
import pspnet.engine.evaluate

if os.environ["RANK"] == "0":  # the process that hosts the store where torchrun's agent does not: the last to leave
    pspnet.distributed.TEARDOWN_PAUSE_S = 1.5

scored = []  # the images this process ran the network on
run_network = pspnet.engine.evaluate.segment_and_confidence
def counted(forward, images, *args, **kwargs):
    scored.append(len(images))
    return run_network(forward, images, *args, **kwargs)
pspnet.engine.evaluate.segment_and_confidence = counted

model = pspnet.load(sys.argv[1])
own = pspnet.evaluate(model, sys.argv[2], sys.argv[3], shard=True)  # a process group started for the call
left = not dist.is_initialized()
share = sum(scored)
dist.init_process_group("gloo")  # the script's own group: used, and still there for the script afterwards
theirs = pspnet.evaluate(model, sys.argv[2], sys.argv[3], shard=True)
dist.barrier()
Path(sys.argv[4], f"rank{dist.get_rank()}.json").write_text(json.dumps({
    "matrices": [own.matrix.tolist(), theirs.matrix.tolist()], "images": [own.images, theirs.images],
    "per_image": [s.name for s in theirs.per_image], "shares": [share, sum(scored) - share], "left": left}))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("store", ["torchrun's", "rank 0's"])
def test_python_evaluate_with_shard_shares_the_images_between_the_processes_of_a_script(two_process_run, data_root,
                                                                                          tmp_path, store) -> None:
    """`pspnet.evaluate(..., shard=True)` in a user's script under torchrun: each process runs the network on its
    share of the images and returns the whole folder's confusion matrix, that of one process; a process group it
    started is left at its end, the script's own is used and kept. Also where rank 0 hosts the store (torch 2.4's
    torchrun did; other launchers do) and leaves last: the script's group met in its closing store ("Connection reset
    by peer")."""
    run, _ = two_process_run
    model, images, labels = run / "final.safetensors", data_root / "images" / "val", data_root / "labels" / "val"
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE_SHARDED)
    finish([start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                   str(script), str(model), str(images), str(labels), str(tmp_path)],
                  env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"} if store == "rank 0's" else {})])
    import pspnet

    one = pspnet.evaluate(pspnet.load(model), images, labels)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in ranks:
        assert result["matrices"] == [one.matrix.tolist()] * 2
        assert result["images"] == [VAL_IMAGES] * 2
        assert result["per_image"] == [score.name for score in one.per_image]  # in the folder's order
        assert result["left"]
    assert [r["shares"] for r in ranks] == [[3, 3], [2, 2]]  # every image once per call, none twice


EVALUATE_ON_RANK_0 = """
import os, sys
import pspnet, pspnet.distributed
pspnet.distributed.JOIN_NOTE_AFTER_S, pspnet.distributed.JOIN_GIVE_UP_AFTER_S = 2, 6  # 60 s and 30 minutes for users
if os.environ["RANK"] == "0":  # the mistake: the other process never calls it
    pspnet.evaluate(pspnet.load(sys.argv[1]), sys.argv[2], sys.argv[3], shard=True)
"""


def test_python_evaluate_with_shard_on_one_process_only_says_whom_it_waits_for_then_stops(two_process_run, data_root,
                                                                                           tmp_path) -> None:
    """A script that calls `pspnet.evaluate(..., shard=True)` on rank 0 alone: rank 0 says that it waits for rank 1
    and that every process must call it, then stops with that error, instead of waiting without a word (it waited
    until torch's 30-minute timeout)."""
    run, _ = two_process_run
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE_ON_RANK_0)
    start_time = time.monotonic()
    [err] = finish([start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(run / "final.safetensors"), str(data_root / "images" / "val"),
                           str(data_root / "labels" / "val")])], returncode=1)
    assert time.monotonic() - start_time < 60
    assert re.search(r"note: rank 0 has waited \d+ s for rank 1 \(of 2 processes\) to join; every process of the "
                     r"job must call pspnet\.evaluate\(shard=True\) \(giving up after 6 s\)", err), err[-3000:]
    assert re.search(r"pspnet\.errors\.PSPNetError: rank 1 \(of 2 processes\) did not join within \d+ s; every "
                     r"process of the job must call pspnet\.evaluate\(shard=True\)", err), err[-3000:]
