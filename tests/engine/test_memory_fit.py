"""A batch that runs out of memory runs in parts that fit, with the same answer, and says so once per halving; one
input that does not fit, and a failure that is not about memory, are raised. The same with every backend: OpenVINO
(the CPU's default) and ONNX Runtime report their engines' allocation failures as `OutOfMemory`."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pspnet
from pspnet.device import MemoryFit, OutOfMemory, is_out_of_memory
from pspnet.engine.inference import InferenceSettings, infer_probabilities, inputs_per_image
from pspnet.engine.recipe import Recipe, inference_forward
from pspnet.errors import PSPNetError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CPU_FAILURE = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
               "to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)")


class RunsOutOfMemory(nn.Module):
    """The network, failing as torch does when one forward holds more than `fits` inputs (on a GPU, or on a CPU
    under a memory limit); `sizes` records every forward's batch."""

    def __init__(self, net: nn.Module, fits: int, cpu: bool = False) -> None:
        super().__init__()
        self.net, self.fits, self.cpu, self.sizes = net, fits, cpu, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.fits:
            if self.cpu:
                raise RuntimeError(CPU_FAILURE)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")
        return self.net(x)


SLIDE = InferenceSettings(base_size=None, crop_size=(49, 49), mode="slide", flip=True, batch_size=8)
WHOLE = InferenceSettings(base_size=None, crop_size=(33, 41), mode="whole", flip=False, batch_size=2)
TWO_BLANK = [torch.zeros((3, 33, 41), dtype=torch.uint8)] * 2


@pytest.fixture(scope="module")
def net() -> pspnet.PSPNet:
    torch.manual_seed(0)
    return pspnet.PSPNet(4, backbone="resnet18").eval()


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8, generator=generator) for _ in range(2)]


@pytest.fixture(scope="module")
def expected(net, images) -> list[torch.Tensor]:
    """The protocol's answer with every batch fitting."""
    return infer_probabilities(inference_forward(net, Recipe(fold_bn=True), "cpu"), images, SLIDE, MEAN, STD)


def assert_same(found: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cpu", [False, True])
def test_the_protocol_splits_a_batch_that_does_not_fit_and_keeps_the_answer(net, images, expected, cpu):
    notes: list[str] = []
    forward = inference_forward(RunsOutOfMemory(net, fits=3, cpu=cpu), Recipe(fold_bn=True), "cpu",
                                fit_memory=notes.append)
    assert_same(infer_probabilities(forward, images, SLIDE, MEAN, STD), expected)
    assert notes == [
        "a batch of 8 network inputs of 3×49×49 did not fit in the memory of cpu; running 4 at a time from now on "
        "(--batch-size 4 starts there)",
        "a batch of 4 network inputs of 3×49×49 did not fit in the memory of cpu; running 2 at a time from now on "
        "(--batch-size 2 starts there)"]
    sizes = forward.model.sizes  # the (folded) copy's record
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) <= {1, 2}  # after two failures, only what fits
    assert sum(sizes[2:]) == 2 * inputs_per_image(70, 90, SLIDE) == 24  # every window and mirror once


class FusedForward:
    """The compiled recipe's interface (softmax and mirror images in the graph), run eagerly: what the protocol
    calls when it batches flip pairs."""

    def __init__(self, forward) -> None:
        self.forward, self.fused_softmax, self.memory_fit = forward, True, forward.memory_fit

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def probabilities(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
        return self.forward.probabilities(x, mirrored=mirrored)


def test_mirrored_pairs_split_whole_and_count_as_two_network_inputs(net, images, expected):
    """The graph runs each window with its mirror image: a part holds whole pairs, and --batch-size counts network
    inputs."""
    notes: list[str] = []
    plain = inference_forward(RunsOutOfMemory(net, fits=5), Recipe(fold_bn=True), "cpu", fit_memory=notes.append)
    assert_same(infer_probabilities(FusedForward(plain), images, SLIDE, MEAN, STD), expected)
    sizes = plain.model.sizes
    assert sizes[:2] == [8, 4] and set(sizes[2:]) <= {2, 4} and sum(sizes[1:]) == 24  # 12 windows and mirrors
    assert notes == ["a batch of 8 network inputs of 3×49×49 did not fit in the memory of cpu; running 4 at a time "
                     "from now on (--batch-size 4 starts there)"]


def test_one_input_that_does_not_fit_is_an_error_that_says_what_to_change(net):
    forward = inference_forward(RunsOutOfMemory(net, fits=0), Recipe(fold_bn=True), "cpu", fit_memory=print)
    with pytest.raises(PSPNetError) as e:
        infer_probabilities(forward, TWO_BLANK, WHOLE, MEAN, STD)
    assert str(e.value) == ("one input of 3×33×41 does not fit in the memory of cpu: evaluate windows instead of "
                            "whole images (--mode slide), at a smaller scale (--base-size), or in bf16 on a GPU "
                            "(--fast)")


def test_the_python_api_names_the_inference_settings_to_change(net):
    """pspnet.probabilities runs a batch that does not fit in parts with a warning, and one input that does not fit
    is an error, both naming InferenceSettings' fields rather than the command's options."""
    model = RunsOutOfMemory(net, fits=1)
    model.info = net.info
    with pytest.warns(UserWarning, match=r"running 1 at a time from now on \(batch_size=1 starts there\)$"):
        pspnet.probabilities(model, TWO_BLANK[0].permute(1, 2, 0).numpy(), settings=SLIDE)
    model.fits = 0
    with pytest.raises(PSPNetError, match=r"instead of whole images \(InferenceSettings\(mode='slide'\)\), at a "
                                          r"smaller scale \(base_size\)$"):
        pspnet.probabilities(model, TWO_BLANK[0].permute(1, 2, 0).numpy(), settings=WHOLE)


def test_without_fit_memory_the_failure_is_raised_as_it_is(net):
    """`pspnet bench` times the batch it names: no parts."""
    forward = inference_forward(RunsOutOfMemory(net, fits=1), Recipe(fold_bn=True), "cpu")
    with pytest.raises(torch.OutOfMemoryError):
        infer_probabilities(forward, TWO_BLANK, WHOLE, MEAN, STD)


def test_other_failures_are_not_taken_for_memory(net):
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected input to have 3 channels")

    forward = inference_forward(Broken(), Recipe(fold_bn=True), "cpu", fit_memory=print)
    with pytest.raises(RuntimeError, match="expected input to have 3 channels"):
        infer_probabilities(forward, TWO_BLANK, WHOLE, MEAN, STD)


class EngineRequest:
    """An OpenVINO infer request or ONNX Runtime session that fails with the engine's `text` on more than `fits`
    inputs; `sizes` records every batch. For OpenVINO it also stands in for the core and the compiled model, whose
    requests fail alike (the wrapper compiles the graph afresh after a failure)."""

    def __init__(self, engine: str, real, fits: int, text: str, sizes: list[int]) -> None:
        self.engine, self.real, self.fits, self.text, self.sizes = engine, real, fits, text, sizes

    def _fail(self, batch: np.ndarray) -> bool:
        """Whether the batch fails by an empty output (`text` EMPTY); raised with `text` otherwise."""
        self.sizes.append(batch.shape[0])
        if batch.shape[0] > self.fits and self.text is not EMPTY:
            raise (RuntimeError if self.engine == "openvino" else Exception)(self.text)
        return batch.shape[0] > self.fits

    def infer(self, inputs, share_outputs=False):  # OpenVINO
        if self._fail(inputs[0]):
            return [np.zeros((0, 2, 0, 0), dtype=np.float32)]
        return self.real.infer(inputs, share_outputs=share_outputs)

    def run(self, names, feeds, options=None):  # ONNX Runtime
        self._fail(next(iter(feeds.values())))
        return self.real.run(names, feeds, options)

    def compile_model(self, *args):  # OpenVINO's core
        return EngineRequest(self.engine, self.real.compile_model(*args), self.fits, self.text, self.sizes)

    def create_infer_request(self):  # OpenVINO's compiled model
        return EngineRequest(self.engine, self.real.create_infer_request(), self.fits, self.text, self.sizes)


EMPTY = "an empty output"
ENGINE_FAILURES = {  # as each engine reports an allocation that the operating system refused
    "openvino": "Exception from src/inference/src/cpp/infer_request.cpp:224:\nException from src/plugins/intel_cpu/"
                "src/node.cpp:823:\n[CPU] Transpose node with name '__module.ppm.branches.3/aten::transpose/"
                "Transpose_3' can't alloc\n",
    "onnxruntime": "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv node. Name:'/mo"
                   "del/backbone/stem/relu_2/Relu_output_0_nchwc' Status Message: /onnxruntime_src/onnxruntime/core/"
                   "framework/bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
                   "onnxruntime::Stream*) Failed to allocate memory for requested buffer of size 303564800",
    # OpenVINO with one thread (INFERENCE_NUM_THREADS 1) under an address-space limit: no error, logits of shape
    # (0, 2, 0, 0) for a batch of (2, 3, 769, 769) (test_predict_under_a_real_memory_limit_runs_the_batch_in_parts).
    "openvino-empty": EMPTY,
}


@pytest.fixture(scope="module")
def engines(net, tmp_path_factory) -> dict:
    """`net` run by OpenVINO (through the converted-graph cache) and by ONNX Runtime (from an export)."""
    found = {}
    if importlib.util.find_spec("openvino"):
        from pspnet.export.openvino import OpenVinoModel

        found["openvino"] = lambda: OpenVinoModel(net)
    if importlib.util.find_spec("onnxruntime"):
        from pspnet.export.onnx import export_onnx
        from pspnet.export.onnx_runtime import OnnxRuntimeModel

        path = export_onnx(net, tmp_path_factory.mktemp("ort") / "m.onnx")
        found["onnxruntime"] = lambda: OnnxRuntimeModel(path)
    return found


@pytest.mark.parametrize("failure", ["openvino", "openvino-empty", "onnxruntime"])
def test_other_engines_report_running_out_of_memory_and_the_protocol_splits_the_batch(engines, failure, images):
    """Each engine's own allocation failure → `OutOfMemory`; the batch runs in parts with the answer of the batches
    that fit (OpenVINO through the graph compiled afresh: the failed compilation keeps what it had allocated)."""
    engine = failure.split("-")[0]
    if engine not in engines:
        pytest.skip(f"{engine} is not installed")
    model, sizes = engines[engine](), []
    expected = infer_probabilities(model, images, SLIDE, MEAN, STD)
    notes: list[str] = []
    model.memory_fit = MemoryFit(torch.device("cpu"), notes.append)
    if engine == "openvino":
        model._core = EngineRequest(engine, model._core, 3, ENGINE_FAILURES[failure], sizes)
        model.request = None  # compiled by the stand-in core at the first call
    else:
        model.session = EngineRequest(engine, model.session, 3, ENGINE_FAILURES[engine], sizes)
    assert_same(infer_probabilities(model, images, SLIDE, MEAN, STD), expected)
    assert len(notes) == 2 and sizes[:3] == [8, 4, 2] and sum(sizes[2:]) == 24

    model.memory_fit = None  # as `pspnet bench`: raised, and taken for memory by the command line
    with pytest.raises(OutOfMemory) as e:
        infer_probabilities(model, images, SLIDE, MEAN, STD)
    assert is_out_of_memory(e.value) and str(e.value).startswith(
        {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}[engine] + " could not allocate memory for an input "
        "of shape (8, 3, 49, 49): " + ("it returned an empty output, of shape (0, 2, 0, 0)" if failure.endswith(
            "empty") else ""))


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_other_engine_failures_are_not_taken_for_memory(engines, engine, images):
    if engine not in engines:
        pytest.skip(f"{engine} is not installed")
    model = engines[engine]()
    model.memory_fit = MemoryFit(torch.device("cpu"), print)
    text = "[CPU] Convolution node with name 'conv' has incorrect input shape"
    if engine == "openvino":
        model.request = EngineRequest(engine, model.request, 0, text, [])
    else:
        model.session = EngineRequest(engine, model.session, 0, text, [])
    with pytest.raises((RuntimeError, PSPNetError), match="incorrect input shape") as e:
        infer_probabilities(model, images, SLIDE, MEAN, STD)
    assert not is_out_of_memory(e.value)


UNDER_LIMIT = """
import resource, sys
if int(sys.argv[1]):
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), resource.RLIM_INFINITY))
from pspnet.cli.main import main
code = main(sys.argv[2:])
print("VmPeak", open("/proc/self/status").read().split("VmPeak:")[1].split()[0], flush=True)
sys.exit(code)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the address-space limit and /proc are Linux's")
@pytest.mark.parametrize("backend", ["torch", "openvino", "onnxruntime"])
def test_predict_under_a_real_memory_limit_runs_the_batch_in_parts(tmp_path, backend):
    """The operating system refuses the memory (an address-space limit halfway between what one input and a batch
    need), as a GPU would: `pspnet predict --batch-size 2` (4) runs the batch in halves and writes what batch 1
    writes, whichever engine runs the network."""
    pytest.importorskip({"torch": "torch", "openvino": "openvino", "onnxruntime": "onnxruntime"}[backend])
    torch.manual_seed(0)
    # Stride 16: half the time of stride 8, the same growth per input (the stem and stage 1 at full size hold it).
    pspnet.save(pspnet.PSPNet(2, backbone="resnet18", output_stride=16).eval(), tmp_path / "m.safetensors")
    model = tmp_path / "m.safetensors"
    if backend == "onnxruntime":
        from pspnet.export.onnx import export_onnx

        export_onnx(pspnet.load(model), tmp_path / "m.onnx")
        model = tmp_path / "m.onnx"
    if backend == "openvino":  # converted once into the cache, as by a user's first run: the runs below read it
        from pspnet.export.openvino import OpenVinoModel

        OpenVinoModel(pspnet.load(model))
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    many = 4 if backend == "onnxruntime" else 2  # ONNX Runtime's peak grows little from 1 to 2 inputs (its arena)
    # Four inputs grow ONNX Runtime's peak by ~280 MiB at 577²; at that size the others grow by ~90 MiB only, too
    # close to the allocators' noise (OpenVINO then crashed on an allocation other than the batch's).
    size = 577 if backend == "onnxruntime" else 769
    for i in range(many):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")

    # Freed tensors leave the address space; one malloc arena, not one per thread (64 MiB each, more or fewer from
    # run to run as the engines' threads allocate).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
    if backend == "openvino":
        # OpenVINO's own thread count, not the one thread per test process the runner gives PyTorch (which OpenVINO
        # now follows): with one thread, the batch that does not fit came back as an empty output (now taken for
        # memory: the test above) and the next inference, one input, crashed the process (SIGSEGV in infer).
        env.pop("OMP_NUM_THREADS", None)

    def predict(batch: int, limit: int = 0) -> tuple[int, subprocess.CompletedProcess]:
        done = subprocess.run(
            [sys.executable, "-c", UNDER_LIMIT, str(limit), "predict", str(model),
             str(tmp_path / "images"), "--out", str(tmp_path / f"out{batch}_{limit}"), "--backend", backend,
             "--mode", "whole", "--base-size", str(size), "--crop-size", str(size), str(size), "--no-flip",
             "--outputs", "labels", "--batch-size", str(batch)], capture_output=True, text=True, timeout=300,
            env=env)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split("VmPeak")[1].split()[0]) * 1024, done

    one, _ = predict(1)
    peak, _ = predict(many)
    assert peak - one > 48 * 2**20, "the other inputs' activations must be what the peak grows by"
    limit = one + (peak - one) // 2
    _, done = predict(many, limit)
    assert "Traceback" not in done.stderr and "[E:onnxruntime" not in done.stderr  # no engine's own log either
    assert (f"pspnet predict: note: a batch of {many} network inputs of 3×{size}×{size} did not fit in the memory of "
            f"cpu; running {many // 2} at a time from now on (--batch-size {many // 2} starts there)") in done.stderr
    for i in range(many):
        assert (tmp_path / f"out{many}_{limit}" / f"{i}.png").read_bytes() == (
            tmp_path / "out1_0" / f"{i}.png").read_bytes()
