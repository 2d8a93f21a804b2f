import json

import pytest
import torch

from pspnet import PSPNet, PSPNetError
from pspnet.bench.memory import PeakMemory, resident_bytes
from pspnet.cli.main import main
from pspnet.engine.recipe import REFERENCE, Recipe, inference_forward
from pspnet.model.fold import fold_batchnorm


def tiny_model() -> PSPNet:
    torch.manual_seed(0)
    model = PSPNet(5, backbone="resnet18", output_stride=16)
    for m in model.modules():  # non-trivial running statistics, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_smoke_bench_runs_both_modes_and_they_agree(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--json", str(out), "--markdown", str(tmp_path / "bench.md")]) == 0
    doc = json.loads(out.read_text())
    workloads = [row["workload"] for row in doc["rows"]]
    assert any(w.startswith("inference, batch 1") for w in workloads)
    assert any(w.startswith("eval protocol") for w in workloads)
    assert any(w.startswith("training step") for w in workloads)
    assert any(w.startswith("whole image") for w in workloads)
    for row in doc["rows"]:
        assert row["agreement"]["argmax"] >= 0.995, row["workload"]
        assert row["agreement"]["relative_error"] < 1e-4, row["workload"]
        assert row["reference"]["seconds"] and row["fast"]["seconds"]
    table = capsys.readouterr().out
    assert "reference" in table and "fast" in table and "speed-up" in table
    assert "| reference | fast |" in (tmp_path / "bench.md").read_text()


def test_folding_batchnorm_keeps_the_logits():
    model = tiny_model()
    x = torch.randn(2, 3, 49, 57)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_fast_forward_returns_fp32_logits_of_the_input_size():
    forward = inference_forward(tiny_model(), Recipe(fold_bn=True, channels_last=True), "cpu")
    reference = inference_forward(tiny_model(), REFERENCE, "cpu")
    x = torch.randn(1, 3, 41, 41)
    out = forward(x)
    assert out.dtype == torch.float32 and out.shape == (1, 5, 41, 41)
    torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-4)


def test_recipe_rejects_an_unknown_precision():
    with pytest.raises(PSPNetError, match="precision"):
        Recipe(precision="int4")


def test_peak_memory_is_at_least_what_was_resident_inside():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        inside = resident_bytes()
        del block
    if peak.bytes is None or inside is None:
        pytest.skip("no /proc peak-memory counter on this platform")
    # The kernel syncs its per-thread page counters in batches: the two readings may differ by a few pages.
    assert peak.bytes >= inside - 4 * 1024 * 1024
    assert inside >= 64 * 1024 * 1024


def test_the_bench_training_workload_runs_the_trainers_own_step(monkeypatch):
    from pspnet.bench.workloads import synthetic_images, synthetic_labels, training_work
    from pspnet.train.step import TrainingStep

    calls = []
    original = TrainingStep.__call__

    def counted(self, stream, iteration):
        calls.append(iteration)
        return original(self, stream, iteration)

    monkeypatch.setattr(TrainingStep, "__call__", counted)
    images = synthetic_images(2, 33, 33, seed=0)
    labels = list(synthetic_labels(2, 33, 33, 5, seed=1).to(torch.uint8))
    work, first = training_work(tiny_model().train(), REFERENCE, images, labels, torch.device("cpu"), seed=0)
    loss = work()
    assert calls == [0] and torch.isfinite(loss)
    assert first[0].shape == (2, 5, 33, 33)


def test_training_ablation_and_anchor_are_measured_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--backbones", "resnet18", "--sizes", "33", "--classes", "5",
            "--workloads", "infer1", "train", "--train-batch", "2", "--train-ablation", "2", "--anchor",
            "--repeats", "1", "--warmup", "0", "--json", str(out)]
    assert main(args) in (0, 1)  # 1 only if bf16 moved an argmax of the random model (reported, not the point here)
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["train_ablation"]] == ["reference", "bf16 autocast"]  # step 1 always runs
    assert all(r["measurement"]["seconds"] and r["training"] for r in doc["train_ablation"])
    assert all(r["anchor"] is not None and r["anchor"]["seconds"] for r in doc["rows"])
    assert doc["matmul_gflops"]["fp32"] > 0 and doc["forward_gflop"]


def test_a_training_ablation_step_that_does_not_exist_is_a_one_line_error(capsys):
    from pspnet.cli.bench import TRAIN_ABLATION

    assert main(["bench", "--device", "cpu", "--train-ablation", "99", "--workloads"]) == 2
    err = capsys.readouterr().err
    assert "--train-ablation 99" in err and f"1 to {len(TRAIN_ABLATION)}" in err and "Traceback" not in err


def test_the_compiled_loss_equals_the_eager_loss():
    from pspnet.train.loss import segmentation_loss

    torch.manual_seed(0)
    logits, aux = torch.randn(2, 5, 17, 19, requires_grad=True), torch.randn(2, 5, 17, 19)
    labels = torch.randint(0, 5, (2, 17, 19))
    labels[:, 0] = 255
    weights = torch.rand(5) + 0.5
    eager = segmentation_loss(logits, aux, labels, 255, 0.4, weights)
    compiled = torch.compile(segmentation_loss)(logits, aux, labels, 255, 0.4, weights)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    (grad_eager,) = torch.autograd.grad(eager[0], logits)
    (grad_compiled,) = torch.autograd.grad(compiled[0], logits)
    torch.testing.assert_close(grad_eager, grad_compiled, rtol=1e-5, atol=1e-7)


def test_a_bf16_recipe_on_random_weights_is_noted_and_a_trained_model_or_fp32_is_checked():
    """Random logits are near-tied: bf16 rounding flips a few percent of their argmax whatever the recipe's
    accuracy (98% on an H100), so only a trained model's agreement, or an fp32 recipe's, fails the bench."""
    from pspnet.bench.suite import BenchResult, Row
    from pspnet.bench.timing import Measurement
    from pspnet.bench.workloads import Agreement
    from pspnet.cli.bench import disagreements

    def row(workload: str, argmax: float, precision: str) -> Row:
        m = Measurement([1.0])
        return Row("PSPNet-50", "473×473", workload, "img/s", m, m, Agreement(argmax, 1e-3),
                   fast_precision=precision)

    result = BenchResult(rows=[row("inference, batch 16", 0.98, "bf16"), row("inference, batch 1", 0.999, "bf16"),
                               row("training step, batch 16", 0.3, "bf16")])
    assert disagreements(result, trained=False) == ([], ["PSPNet-50 473×473 inference, batch 16: argmax agreement "
                                                         "98.00%"])
    assert disagreements(result, trained=True) == (["PSPNet-50 473×473 inference, batch 16: argmax agreement "
                                                    "98.00%"], [])
    fp32 = BenchResult(rows=[row("eval protocol", 0.99, "fp32")])
    assert disagreements(fp32, trained=False)[0] == ["PSPNet-50 473×473 eval protocol: argmax agreement 99.00%"]


def test_bf16_on_a_cpu_where_it_is_slow_is_warned_once_for_both_recipes(fake_cpu, capsys):
    import argparse

    from pspnet.cli.bench import add_arguments, config_from_args

    fake_cpu("GenuineIntel", "avx2", "avx512f", "avx512_bf16")  # no AMX: bf16 slower than fp32
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--device", "cpu", "--precision", "bf16"]))
    assert config.fast.precision == "bf16" and config.fast_train.precision == "bf16"
    err = capsys.readouterr().err
    assert err.count("runs bf16 slower than fp32") == 1, err


def test_no_timed_call_runs_while_an_earlier_result_is_held_and_the_results_come_after_the_timing():
    """A timed call never runs while an earlier call's output is still held (as a loop that uses each output and
    drops it): holding it made each call write its output into fresh memory, which on a VM cost PSPNet-50's OpenVINO
    int8 call half its time, and counted in the peak memory of the works after it. The results returned come from
    one more round after the timed ones."""
    import weakref

    from pspnet.bench.timing import measure_interleaved

    class Output:
        pass

    made: list[weakref.ref] = []
    held_at_call: list[int] = []

    def work() -> Output:
        held_at_call.append(sum(ref() is not None for ref in made))
        out = Output()
        made.append(weakref.ref(out))
        return out

    measurements, results = measure_interleaved([work, work], torch.device("cpu"), repeats=3, warmup=2)
    assert [len(m.seconds) for m in measurements] == [3, 3] and [len(m.warmup_seconds) for m in measurements] == [2, 2]
    assert held_at_call == [0] * 10 + [0, 1]  # then the untimed round: the first result is held for the second call
    assert [r() for r in made[-2:]] == results


def test_the_recompile_limit_is_set_under_the_name_this_torch_has() -> None:
    """torch 2.4.1's dynamo has only `cache_size_limit`; setting `recompile_limit` there raised AttributeError and
    every `pspnet bench` ended in a traceback (seen in a suite run with torch 2.4.1, the oldest torch pspnet takes)."""
    from types import SimpleNamespace

    from torch import _dynamo

    from pspnet.cli.bench import allow_recompiles

    older = SimpleNamespace(cache_size_limit=8)
    allow_recompiles(older, 64)
    assert vars(older) == {"cache_size_limit": 64}
    newer = SimpleNamespace(recompile_limit=8, cache_size_limit=8)
    allow_recompiles(newer, 64)
    assert vars(newer) == {"recompile_limit": 64, "cache_size_limit": 8}
    name = "recompile_limit" if hasattr(_dynamo.config, "recompile_limit") else "cache_size_limit"
    # Restored by hand: pytest 9.2's monkeypatch undoes an attribute that is not in the module's __dict__ with
    # delattr, which hides the setting in torch's config module and broke every later compile in this process.
    before = getattr(_dynamo.config, name)
    try:
        allow_recompiles(_dynamo.config, 33)
        assert getattr(_dynamo.config, name) == 33
    finally:
        setattr(_dynamo.config, name, before)
    assert getattr(_dynamo.config, name) == before


def test_int8_without_torchao_is_said_before_any_timing(capsys, monkeypatch) -> None:
    """The int8 step comes last: without torchao (which no extra installs) every workload was timed first and the
    results thrown away with the error."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    monkeypatch.setattr("pspnet.cli.bench.run_bench", None)  # nothing is timed
    assert main(["bench", "--int8", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pspnet bench: error: int8 quantisation in PyTorch (bench --int8) needs torchao") and (
        err.count("\n") == 1)
