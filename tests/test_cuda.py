"""The CUDA paths: skipped without a GPU; `benchmarks/gpu_check.sh` runs them on a lent one (`pytest -m cuda`).
PSPNET_TEST_DEVICE=cpu rehearses them on the CPU (the script's dry run), where "cuda" below means that device."""

import os
from dataclasses import replace

import pytest
import torch

import pspnet
from pspnet.bench.workloads import synthetic_images, synthetic_labels, training_work
from pspnet.engine.inference import InferenceSettings, infer_probabilities
from pspnet.engine.recipe import REFERENCE, Recipe, default_recipe, fast_recipe, inference_forward

DEVICE = os.environ.get("PSPNET_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                                   reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def model() -> pspnet.PSPNet:
    torch.manual_seed(0)
    return pspnet.PSPNet(19, backbone="resnet18").eval()  # ResNet-18: the same paths, shorter compilations


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm()).item()


def test_the_fp32_default_on_cuda_matches_the_cpu(model) -> None:
    x = torch.randn(2, 3, 97, 129)
    cpu = inference_forward(model, REFERENCE, "cpu")(x)
    cuda = inference_forward(model, default_recipe(DEVICE), DEVICE)(x)  # TF32 off: fp32 means fp32
    assert relative_error(cuda, cpu) < 1e-4
    assert (cuda.argmax(1).cpu() == cpu.argmax(1)).float().mean() > 0.999


def test_the_fast_recipe_on_cuda_keeps_the_answer(model) -> None:
    x = torch.randn(2, 3, 129, 129)
    reference = inference_forward(model, default_recipe(DEVICE), DEVICE)(x)
    fast = inference_forward(model, fast_recipe(DEVICE), DEVICE)(x)
    assert (fast.argmax(1) == reference.argmax(1)).float().mean() >= 0.995
    assert relative_error(fast, reference) < 5e-2


def test_the_fast_recipes_protocol_with_its_softmax_in_the_graph_keeps_the_answer(model) -> None:
    images = synthetic_images(2, 97, 129, seed=3)
    settings = InferenceSettings(base_size=129, crop_size=(65, 65), batch_size=4)
    fast = inference_forward(model, fast_recipe(DEVICE), DEVICE)
    assert fast.fused_softmax == (DEVICE == "cuda")  # the CPU rehearsal's fast recipe is not compiled
    got = infer_probabilities(fast, images, settings, model.info.mean, model.info.std, DEVICE)
    want = infer_probabilities(inference_forward(model, default_recipe(DEVICE), DEVICE), images, settings,
                               model.info.mean, model.info.std, DEVICE)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.sum(0), torch.ones_like(g[0]), atol=1e-4, rtol=0)
        assert (g.argmax(0) == w.argmax(0)).float().mean() >= 0.995 and relative_error(g, w) < 5e-2


def test_the_protocol_runs_on_cuda_with_cuda_graphs(model) -> None:
    forward = inference_forward(model, Recipe(fold_bn=True, compile=True, compile_mode="reduce-overhead"), DEVICE)
    images = synthetic_images(2, 97, 129, seed=0)
    settings = InferenceSettings(base_size=129, crop_size=(65, 65), batch_size=4)
    probs = infer_probabilities(forward, images, settings, model.info.mean, model.info.std, DEVICE)
    assert all(p.shape == (19, 97, 129) and p.device.type == DEVICE for p in probs)


@pytest.mark.parametrize("recipe", [REFERENCE, fast_recipe(DEVICE, training=True)], ids=["fp32", "fast"])
def test_the_trainers_step_runs_on_cuda(model, recipe) -> None:
    images = synthetic_images(2, 129, 129, seed=1)
    labels = list(synthetic_labels(2, 129, 129, 19, seed=2).to(torch.uint8))
    work, first = training_work(model.train(), recipe, images, labels, torch.device(DEVICE), seed=0)
    losses = [float(work()) for _ in range(3)]
    model.eval()
    assert all(torch.isfinite(torch.tensor(losses))) and first[0].shape == (2, 19, 129, 129)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists on CUDA only")
def test_the_official_reference_keeps_pytorchs_tf32_default_and_fp32_turns_it_off() -> None:
    from pspnet.engine.recipe import OFFICIAL

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.backends.cudnn.allow_tf32)
            return x

    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
    inference_forward(Probe(), OFFICIAL, "cuda")(torch.zeros(1, 3, 4, 4))
    inference_forward(Probe(), REFERENCE, "cuda")(torch.zeros(1, 3, 4, 4))
    assert seen == [True, False] and torch.backends.cudnn.allow_tf32


@pytest.mark.skipif(DEVICE != "cuda", reason="a GPU's memory limit (a CPU's: tests/engine/test_memory_fit.py)")
def test_a_batch_that_does_not_fit_the_gpu_runs_in_parts_with_the_same_answer(model) -> None:
    """The process may use what it holds plus 1.5 inputs' worth (`set_per_process_memory_fraction`): a batch of 4
    whole images runs out of memory, and the protocol runs it in parts."""
    images = synthetic_images(4, 473, 473, seed=1)
    settings = InferenceSettings(base_size=473, crop_size=(473, 473), mode="whole", flip=False, batch_size=4)
    mean, std = model.info.mean, model.info.std
    one_at_a_time = replace(settings, batch_size=1)
    want = infer_probabilities(inference_forward(model, default_recipe(DEVICE), DEVICE), images, one_at_a_time, mean,
                               std, DEVICE)
    forward = inference_forward(model, default_recipe(DEVICE), DEVICE, fit_memory=(notes := []).append)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated()
    infer_probabilities(forward, images[:1], one_at_a_time, mean, std, DEVICE)
    one = torch.cuda.max_memory_allocated() - held
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_allocated() + 1.5 * one) / total)
    try:
        got = infer_probabilities(forward, images, settings, mean, std, DEVICE)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert notes and notes[0].startswith("a batch of 4 network inputs of 3×473×473 did not fit in the memory of cuda")
    for g, w in zip(got, want, strict=True):
        assert (g.argmax(0) == w.argmax(0)).float().mean() >= 0.999 and relative_error(g, w) < 1e-4
