"""OpenVINO and ONNX Runtime take the CPU threads the process was given (OMP_NUM_THREADS, as PyTorch does), and do not
pin them where torchrun's processes share the machine's cores; otherwise they keep their own choice."""

from pathlib import Path

import pytest
import torch

import pspnet
from pspnet.classes import DatasetInfo
from pspnet.device import cores_shared, engine_threads

TORCHRUN = {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}  # as torchrun sets them for 2


@pytest.fixture(scope="module")
def model() -> pspnet.PSPNet:
    torch.manual_seed(0)
    return pspnet.PSPNet(3, backbone="resnet18", output_stride=16, info=DatasetInfo("toy", ["a", "b", "c"])).eval()


@pytest.fixture
def threads(monkeypatch):
    """Set the environment (None: removed) and PyTorch's thread count as a launcher would; both restored after."""
    before = torch.get_num_threads()

    def given(env: dict[str, str | None], count: int) -> None:
        for key in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
            value = env.get(key)
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        torch.set_num_threads(count)

    yield given
    torch.set_num_threads(before)


def test_the_threads_asked_for_are_the_engines_and_shared_cores_are_not_pinned(threads) -> None:
    threads(TORCHRUN, 1)
    assert engine_threads() == 1 and cores_shared()
    threads({"OMP_NUM_THREADS": "3"}, 3)  # one process told how many
    assert engine_threads() == 3 and not cores_shared()
    threads({}, 2)  # nothing asked: each engine's own choice
    assert engine_threads() is None and not cores_shared()


def test_openvino_under_torchrun_runs_the_processes_threads_unpinned(model, threads) -> None:
    pytest.importorskip("openvino")
    from pspnet.export.openvino import OpenVinoModel, compile_settings

    threads({}, 2)
    assert compile_settings("f32") == {"INFERENCE_PRECISION_HINT": "f32"}  # the plugin's defaults otherwise
    threads(TORCHRUN, 1)
    engine = OpenVinoModel(model, cache=False)
    assert engine.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert engine.compiled.get_property("ENABLE_CPU_PINNING") is False
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        torch.testing.assert_close(engine(x), model(x), atol=1e-4, rtol=1e-4)


def test_onnx_runtime_under_torchrun_runs_the_processes_threads(model, threads, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from pspnet.export.onnx import export_onnx
    from pspnet.export.onnx_runtime import OnnxRuntimeModel

    export_onnx(model, tmp_path / "m.onnx")
    threads({}, 2)
    assert OnnxRuntimeModel(tmp_path / "m.onnx").session.get_session_options().intra_op_num_threads == 0  # its own
    threads(TORCHRUN, 1)
    engine = OnnxRuntimeModel(tmp_path / "m.onnx")
    assert engine.session.get_session_options().intra_op_num_threads == 1
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        torch.testing.assert_close(engine(x), model(x), atol=1e-4, rtol=1e-4)
