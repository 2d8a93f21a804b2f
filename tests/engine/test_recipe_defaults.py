"""Headline metrics are fp32 on every device unless the user asks for more, and every result names its recipe."""

import argparse
import json
from dataclasses import replace

import pytest
import torch

from pspnet.cli.recipe_options import add_recipe_arguments, recipe_from_args
from pspnet.engine import recipe as recipe_module
from pspnet.engine.recipe import default_recipe, fast_recipe, training_precision


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_recipe_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize(("device", "described"), [("cpu", "fp32, BN folded, pyramid at its bins"),
                                                   ("cuda", "fp32, BN folded")])
def test_the_default_recipe_is_fp32_with_batchnorm_folded_on_every_device(device, described) -> None:
    """On CPUs the head's convolution takes the pyramid at its bins too (measured there; on GPUs not yet)."""
    recipe = recipe_from_args(parse(), torch.device(device))
    assert recipe == default_recipe(device)
    assert (recipe.precision, recipe.fold_bn, recipe.compile, recipe.channels_last) == ("fp32", True, False, False)
    assert recipe.describe() == described
    assert recipe_from_args(parse("--no-pyramid-at-bins"), torch.device(device)).describe() == "fp32, BN folded"
    assert default_recipe(device, training=True) == recipe_module.REFERENCE


def test_fast_turns_on_bf16_channels_last_and_compile_on_cuda_only() -> None:
    cuda = recipe_from_args(parse("--fast"), torch.device("cuda"))
    assert cuda == fast_recipe("cuda") and (cuda.precision, cuda.channels_last, cuda.compile) == ("bf16", True, True)
    assert recipe_from_args(parse("--fast"), torch.device("cpu")) == default_recipe("cpu")


def test_single_switches_apply_on_top_of_either() -> None:
    assert recipe_from_args(parse("--precision", "bf16"), torch.device("cuda")).precision == "bf16"
    assert recipe_from_args(parse("--fast", "--no-compile"), torch.device("cuda")).compile is False
    assert recipe_from_args(parse("--no-fold-bn"), torch.device("cuda")).describe() == "eager fp32"
    assert recipe_from_args(parse("--no-fold-bn"), torch.device("cpu")).describe() == "fp32, pyramid at its bins"
    assert recipe_from_args(parse("--no-fold-bn", "--no-pyramid-at-bins"), torch.device("cpu")).describe() == \
        "eager fp32"


def test_the_upsampling_as_matmuls_is_a_switch_of_inference_too_with_the_same_answer() -> None:
    """`--matmul-upsample` (eval, predict, bench): the fast inference recipe with it is measured on GPUs; in fp32
    the forward gives the logits of the interpolation."""
    from pspnet import PSPNet
    from pspnet.engine.recipe import inference_forward

    cuda = recipe_from_args(parse("--fast", "--matmul-upsample"), torch.device("cuda"))
    assert cuda == replace(fast_recipe("cuda"), matmul_upsample=True)
    assert "upsample as matmuls" in cuda.describe()
    assert recipe_from_args(parse("--fast", "--no-matmul-upsample"), torch.device("cuda"), training=True) \
        .matmul_upsample is False
    torch.manual_seed(0)
    model = PSPNet(4, backbone="resnet18", output_stride=16).eval()
    x = torch.randn(2, 3, 45, 61)
    plain = inference_forward(model, recipe_from_args(parse(), torch.device("cpu")), "cpu")(x)
    matmul = inference_forward(model, recipe_from_args(parse("--matmul-upsample"), torch.device("cpu")), "cpu")(x)
    torch.testing.assert_close(matmul, plain, atol=1e-4, rtol=1e-4)
    assert not model.upsample_by_matmul  # the switch is set on the forward's copy, not on the caller's model


@pytest.mark.parametrize(("vendor", "flags", "expected", "why"), [
    ("GenuineIntel", ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"), "bf16", "bf16 units (amx_bf16)"),
    ("AuthenticAMD", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "bf16", "(avx512_bf16 on AuthenticAMD)"),
    # an Intel Xeon whose hypervisor hides AMX: bf16 measured 0.75–0.87× fp32 for a training step (BENCHMARKS.md)
    ("GenuineIntel", ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "fp32",
     "(avx512_bf16 without AMX on GenuineIntel) runs bf16 slower than fp32"),
    ("AuthenticAMD", ("avx2",), "fp32", "no bf16 units (avx2)"),
])
def test_training_precision_auto_is_bf16_only_where_bf16_outruns_fp32(fake_cpu, vendor, flags, expected, why) -> None:
    cpu = torch.device("cpu")
    fake_cpu(vendor, *flags)
    precision, said = training_precision("auto", cpu)
    assert precision == expected and why in said
    assert training_precision("fp32", cpu) == ("fp32", "as configured")
    assert training_precision("bf16", cpu)[0] == "bf16"  # asked for: given (with the trainer's warning where slow)
    assert training_precision("auto", torch.device("cuda"))[0] == "fp32"


def test_the_trainer_says_what_auto_picked_and_trains_in_it(fake_cpu, tmp_path, capsys) -> None:
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from synthetic import config_dict, make_folders_dataset

    from pspnet.distributed import single_process
    from pspnet.train.config import load_train_config
    from pspnet.train.trainer import Trainer

    fake_cpu("GenuineIntel", "avx2", "amx_bf16", "amx_tile")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config_dict(make_folders_dataset(tmp_path / "data"), tmp_path / "run",
                                               precision="auto")))
    trainer = Trainer(load_train_config(path), single_process(torch.device("cpu")), progress=False)
    assert trainer.recipe.precision == "bf16" and trainer.step.recipe.precision == "bf16"
    assert "train.precision auto → bf16: this CPU has bf16 units (amx_bf16)" in capsys.readouterr().out


def test_eval_records_the_recipe_it_ran_with(tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    import pspnet
    from pspnet.cli.main import main

    torch.manual_seed(0)
    ckpt = pspnet.save(pspnet.PSPNet(3, backbone="resnet18", output_stride=16), tmp_path / "m.safetensors")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.ones((24, 32), np.uint8)).save(tmp_path / "lab" / "a.png")
    out = tmp_path / "e.json"
    assert main(["eval", str(ckpt), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                 "--workers", "0", "--quiet", "--base-size", "0", "--crop-size", "24", "--json", str(out),
                 "--backend", "torch"]) == 0
    assert "(fp32, BN folded, pyramid at its bins)" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["recipe"]["precision"] == "fp32"
    assert doc["recipe"]["description"] == "fp32, BN folded, pyramid at its bins"


def test_the_fast_training_recipe_on_cuda_upsamples_by_matmuls_and_inference_does_not() -> None:
    train_fast = fast_recipe("cuda", training=True)
    assert (train_fast.precision, train_fast.channels_last, train_fast.compile, train_fast.matmul_upsample) == (
        "bf16", True, True, True)
    assert not fast_recipe("cuda").matmul_upsample and not train_fast.pyramid_at_bins  # not yet measured on GPUs
    assert fast_recipe("cpu", training=True) == replace(default_recipe("cpu", True), pyramid_at_bins=True)


def test_train_fast_is_one_switch_that_refuses_the_switches_it_sets(tmp_path, capsys) -> None:
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from synthetic import config_dict, make_folders_dataset

    from pspnet.cli.main import main
    from pspnet.errors import PSPNetError
    from pspnet.train.config import load_train_config

    path = tmp_path / "cfg.yaml"
    cfg = config_dict(make_folders_dataset(tmp_path / "data"), tmp_path / "run")
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--fast"]) == 2  # the file sets train.precision: fp32
    assert f"{path}:" in (err := capsys.readouterr().err) and "train.fast or train.precision, not both" in err
    del cfg["train"]["precision"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--fast", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["fast"] is True
    with pytest.raises(PSPNetError, match=r"set either train.fast or train.compile, train.matmul_upsample, not both"):
        load_train_config(path, ["train.fast=true", "train.compile=true", "train.matmul_upsample=true"])
    with pytest.raises(PSPNetError, match=r"set either train.fast or train.pyramid_at_bins, not both"):
        load_train_config(path, ["train.fast=true", "train.pyramid_at_bins=true"])


def test_train_fast_on_a_cpu_is_what_auto_picks_and_says_so(fake_cpu, tmp_path, capsys) -> None:
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from synthetic import config_dict, make_folders_dataset

    from pspnet.distributed import single_process
    from pspnet.train.config import load_train_config
    from pspnet.train.trainer import Trainer

    path = tmp_path / "cfg.yaml"
    cfg = config_dict(make_folders_dataset(tmp_path / "data"), tmp_path / "run")
    del cfg["train"]["precision"]
    path.write_text(yaml.safe_dump(cfg))
    for flags, precision in ((("avx2", "avx512_bf16"), "bf16"), (("avx2",), "fp32")):
        fake_cpu("AuthenticAMD", *flags)
        trainer = Trainer(load_train_config(path, ["train.fast=true"]), single_process(torch.device("cpu")),
                          progress=False)
        assert trainer.recipe == recipe_module.Recipe(precision=precision, pyramid_at_bins=True)
        assert f"train.fast auto → {precision}" in capsys.readouterr().out
    trainer = Trainer(load_train_config(path, ["train.pyramid_at_bins=true"]), single_process(torch.device("cpu")),
                      progress=False)  # the switch alone, without train.fast
    assert trainer.recipe.pyramid_at_bins and not trainer.recipe.fold_bn


def test_cudnn_autotuning_is_on_while_a_recipe_with_it_runs_forward_and_backward_and_restored_after() -> None:
    from pspnet import PSPNet
    from pspnet.bench.workloads import synthetic_images, synthetic_labels, training_work
    from pspnet.engine.recipe import Recipe, inference_forward

    seen: list[tuple[str, bool]] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(("forward", torch.backends.cudnn.benchmark))
            return x

    before = torch.backends.cudnn.benchmark
    inference_forward(Probe(), Recipe(cudnn_benchmark=True), "cpu")(torch.zeros(1, 3, 4, 4))
    inference_forward(Probe(), Recipe(), "cpu")(torch.zeros(1, 3, 4, 4))
    assert seen == [("forward", True), ("forward", False)] and torch.backends.cudnn.benchmark == before
    assert Recipe(cudnn_benchmark=True).describe() == "fp32, cuDNN autotuned"

    seen.clear()
    model = PSPNet(3, backbone="resnet18")
    model.head.register_forward_hook(lambda *_: seen.append(("forward", torch.backends.cudnn.benchmark)))
    model.head.register_full_backward_hook(lambda *_: seen.append(("backward", torch.backends.cudnn.benchmark)))
    images, labels = synthetic_images(2, 33, 33, seed=0), list(synthetic_labels(2, 33, 33, 3, seed=1))
    work, _ = training_work(model, Recipe(cudnn_benchmark=True), images, labels, torch.device("cpu"), seed=0)
    work()
    assert seen == [("forward", True), ("backward", True)] and torch.backends.cudnn.benchmark == before
