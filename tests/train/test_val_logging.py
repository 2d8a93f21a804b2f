"""What each validation shows in TensorBoard: per-class IoU curves and rows of image | ground truth | prediction."""

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pspnet.engine.evaluate import Sample
from pspnet.engine.report import sample_grid
from pspnet.train.config import load_train_config
from pspnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402


def test_the_grid_puts_image_truth_and_prediction_side_by_side_in_the_dataset_colours() -> None:
    palette = [(10, 20, 30), (200, 0, 0)]
    wide = Sample("a", np.full((2, 3, 3), 7, np.uint8), np.array([[0, 1, 1], [255, 0, 0]], np.uint8),
                  np.array([[1, 1, 1], [0, 0, 0]], np.uint8))
    narrow = Sample("b", np.full((1, 2, 3), 9, np.uint8), np.zeros((1, 2), np.uint8), np.ones((1, 2), np.uint8))
    grid = sample_grid([wide, narrow], palette)
    assert grid.shape == (3, 9, 3) and grid.dtype == np.uint8
    assert (grid[0, :3] == 7).all() and tuple(grid[0, 3]) == palette[0] and tuple(grid[0, 4]) == palette[1]
    assert tuple(grid[1, 3]) == (0, 0, 0)  # the ignored pixel: black
    assert tuple(grid[0, 6]) == palette[1] and (grid[2, :2] == 9).all()
    assert tuple(grid[2, 2]) == palette[0] and (grid[2, 6:] == 0).all()  # the narrow row padded


def test_validation_logs_per_class_iou_and_sample_rows_to_tensorboard(tmp_path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    root = make_folders_dataset(tmp_path / "data", n_train=4, n_val=3)
    cfg = config_dict(root, tmp_path / "run", iterations=2, val_every=2, tensorboard=True, val_samples=2)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    train(load_train_config(tmp_path / "cfg.yaml"), progress=False)
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                                                size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    iou_tags = [t for t in events.Tags()["scalars"] if t.startswith("val/val_IoU/")]
    assert iou_tags and set(iou_tags) <= {f"val/val_IoU/class_{i}" for i in range(3)}
    (picture,) = events.Images("val/samples (image | ground truth | prediction)")
    assert picture.step == 2 and (picture.height, picture.width) == (2 * 32, 3 * 40)  # 2 rows of 32×40 images


@pytest.mark.parametrize("at_the_end", [False, True], ids=["during-the-run", "at-the-last-flush"])
def test_a_full_disk_under_tensorboard_is_one_line_naming_its_folder(tmp_path, monkeypatch, capsys,
                                                                     at_the_end) -> None:
    """TensorBoard writes its events from a thread of its own: a write that fails there (the disk full) stops the run
    with one line naming the TensorBoard folder and the checkpoint --resume continues from — no traceback from that
    thread, metrics.jsonl (written fine) not blamed — whether it fails mid-run or at the end's flush."""
    import errno
    import threading

    pytest.importorskip("tensorboard")
    from tensorboard.summary.writer import record_writer

    from pspnet.cli.main import main

    root = make_folders_dataset(tmp_path / "data")
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(root, out, iterations=4, checkpoint_every=2, tensorboard=True)))
    real_write, real_flush = record_writer.RecordWriter.write, record_writer.RecordWriter.flush

    def full() -> bool:  # once the first checkpoint is written
        return (out / "checkpoints" / "iter_0000002.pt").exists()

    def write(self, data):  # noqa: ANN001, ANN202 (in the writer's thread)
        if not at_the_end and full():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    def flush(self):  # noqa: ANN001, ANN202 (the end's flush, from the run itself, is where the events go to disk)
        if at_the_end and full() and threading.current_thread() is threading.main_thread():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_flush(self)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    monkeypatch.setattr(record_writer.RecordWriter, "flush", flush)
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pspnet train: error: {out / 'tensorboard'}: cannot write into it (No space left on "
                          "device); the last checkpoint, "), err
    assert err.endswith(", is intact: make room and --resume continues from it\n") and err.count("\n") == 1, err
    assert not (out / "final.safetensors").exists()
