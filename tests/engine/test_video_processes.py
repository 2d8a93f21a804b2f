"""A video under torchrun: every process segments its share of each step's frames, the first writes every output
(the outputs of one process, byte for byte), and a failure to write stops every process at the same step. Two
threads stand for two processes here (the collectives exchanged through a barrier that fails rather than hangs);
tests/train/test_distributed.py runs videos under torchrun itself."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from videos import write_video  # tests/, on the path by conftest.py

import pspnet
from pspnet import distributed
from pspnet.distributed import Distributed
from pspnet.engine import predict as engine_predict
from pspnet.engine.inference import InferenceSettings
from pspnet.engine.predict import PredictionLayout, predict_video
from pspnet.engine.recipe import Recipe, inference_forward
from pspnet.errors import PSPNetError

av = pytest.importorskip("av")

SETTINGS = InferenceSettings(base_size=None, crop_size=(33, 33), mode="whole", flip=False, batch_size=2)
KINDS = ("labels", "overlay", "color", "confidence")
CURRENT = threading.local()  # .rank: the process the running thread stands for


class Collectives:
    """all_gather and all_reduce for `world` threads, each standing for a process."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world, timeout=60)  # a process left behind fails the test, not hangs it
        self.slots: list[torch.Tensor | None] = [None] * world

    def all_gather_tensor(self, value: torch.Tensor, d: Distributed) -> list[torch.Tensor]:
        self.slots[d.rank] = value.clone()
        self.barrier.wait()
        gathered = [slot.clone() for slot in self.slots]
        self.barrier.wait()
        return gathered

    def all_reduce_sum(self, value: torch.Tensor, d: Distributed) -> torch.Tensor:
        return value.copy_(sum(self.all_gather_tensor(value, d)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = pspnet.PSPNet(3, backbone="resnet18", output_stride=16).eval()
    return net, inference_forward(net, Recipe(fold_bn=True), "cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """7 frames of coloured blocks moving across 48×32."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(7):
        frame = np.full((32, 48, 3), 60, dtype=np.uint8)
        frame[:, 4 * i: 4 * i + 16] = rng.integers(0, 256, 3)
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames)


def run(model, video: Path, out: Path, processes: list[Distributed | None]) -> list[int | BaseException]:
    """predict_video in one thread per entry of `processes` (None: one process, no collectives), 2 frames per step
    each; what each returned or raised."""
    net, forward = model
    results: list[int | BaseException] = [0] * len(processes)

    def one(i: int) -> None:
        CURRENT.rank = i
        try:
            results[i] = predict_video(forward, video, "clip", PredictionLayout(out, KINDS), SETTINGS, net.info.mean,
                                       net.info.std, net.info.palette, frames_per_step=2, processes=processes[i])
        except BaseException as e:  # noqa: BLE001 — the test looks at what each raised
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(processes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def two_processes(monkeypatch) -> tuple[list[Distributed], dict[int, list[int]]]:
    """Two ranks sharing the collectives, and the frame count of each step each segments."""
    collectives = Collectives(2)
    monkeypatch.setattr(engine_predict, "all_gather_tensor", collectives.all_gather_tensor)
    monkeypatch.setattr(distributed, "all_reduce_sum", collectives.all_reduce_sum)  # in raise_together
    segmented: dict[int, list[int]] = {0: [], 1: []}
    real = engine_predict.segment_and_confidence

    def recording(forward, images, *args):
        segmented[CURRENT.rank].append(len(images))
        return real(forward, images, *args)

    monkeypatch.setattr(engine_predict, "segment_and_confidence", recording)
    return [Distributed(r, 2, r, torch.device("cpu")) for r in range(2)], segmented


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_processes_share_the_frames_and_write_what_one_process_writes(model, video, tmp_path, monkeypatch):
    assert run(model, video, tmp_path / "one", [None]) == [7]
    processes, segmented = two_processes(monkeypatch)
    assert run(model, video, tmp_path / "two", processes) == [7, 7]
    # Steps of 2 frames each (4 frames): rank 0 frames 0, 2 | 4, 6; rank 1 frames 1, 3 | 5.
    assert segmented == {0: [2, 2], 1: [2, 1]}
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert sorted(one) == sorted(two) == ["clip/000000.png", "clip/000001.png", "clip/000002.png", "clip/000003.png",
                                          "clip/000004.png", "clip/000005.png", "clip/000006.png", "color/clip.mp4",
                                          *(f"confidence/clip/00000{i}.png" for i in range(7)), "overlay/clip.mp4"]
    assert one == two


def test_a_failed_write_stops_every_process_at_the_same_step(model, video, tmp_path, monkeypatch):
    """The first process cannot write frame 5 (a full disk): it raises its error, the other stops instead of
    waiting for it, and no partial output is left."""
    processes, _ = two_processes(monkeypatch)
    real = engine_predict.save_label_png

    def full_disk(path: Path, *args) -> None:
        if path.name == "000005.png":
            raise OSError(28, "No space left on device")
        real(path, *args)

    monkeypatch.setattr(engine_predict, "save_label_png", full_disk)
    first, second = run(model, video, tmp_path / "o", processes)
    assert isinstance(first, PSPNetError) and str(first) == (
        f"{tmp_path / 'o' / 'clip'}: cannot write the video ([Errno 28] No space left on device)")
    assert isinstance(second, PSPNetError) and str(second) == (
        f"{video}: stopped: the first process could not write its outputs")
    assert files(tmp_path / "o") == {}


def test_a_stream_whose_frame_size_changes_is_shared_as_one_process_writes_it(model, tmp_path, monkeypatch):
    """An MPEG transport stream that changes from 48×32 to 64×48 after 3 frames (two encodings joined, as a broadcast
    or a camera's recording may): the steps that mix the sizes are exchanged at the larger."""
    parts = []
    for size, start in (((32, 48), 0), ((48, 64), 3)):
        frames = [np.full((*size, 3), 40 * i % 256, dtype=np.uint8) for i in range(start, start + 3)]
        parts.append(write_video(tmp_path / f"{start}.ts", frames, container="mpegts").read_bytes())
    video = tmp_path / "joined.mpg"
    video.write_bytes(b"".join(parts))
    assert run(model, video, tmp_path / "one", [None]) == [6]
    processes, segmented = two_processes(monkeypatch)
    assert run(model, video, tmp_path / "two", processes) == [6, 6]
    assert segmented == {0: [2, 1], 1: [2, 1]}
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(one) == 6 * 2 + 2 and one == two
    assert [Image.open(tmp_path / "two" / "clip" / f"00000{i}.png").size for i in (2, 3)] == [(48, 32), (64, 48)]


def test_a_video_that_cannot_be_read_is_the_same_error_on_every_process(model, video, tmp_path, monkeypatch):
    processes, _ = two_processes(monkeypatch)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    first, second = run(model, broken, tmp_path / "o", processes)
    assert isinstance(first, PSPNetError) and str(first).startswith(f"{broken}: cannot read it as a video")
    assert isinstance(second, PSPNetError) and str(second) == str(first)
    assert files(tmp_path / "o") == {}
