"""Headline metrics are fp32 on every device unless the user asks for more, and every result names its recipe."""

import argparse
import json

import pytest
import torch

from pspnet.cli.recipe_options import add_recipe_arguments, recipe_from_args
from pspnet.engine.recipe import default_recipe, fast_recipe


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_recipe_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_default_recipe_is_fp32_with_batchnorm_folded_on_every_device(device) -> None:
    recipe = recipe_from_args(parse(), torch.device(device))
    assert recipe == default_recipe(device)
    assert (recipe.precision, recipe.fold_bn, recipe.compile, recipe.channels_last) == ("fp32", True, False, False)
    assert recipe.describe() == "fp32, BN folded"


def test_fast_turns_on_bf16_channels_last_and_compile_on_cuda_only() -> None:
    cuda = recipe_from_args(parse("--fast"), torch.device("cuda"))
    assert cuda == fast_recipe("cuda") and (cuda.precision, cuda.channels_last, cuda.compile) == ("bf16", True, True)
    assert recipe_from_args(parse("--fast"), torch.device("cpu")) == default_recipe("cpu")


def test_single_switches_apply_on_top_of_either() -> None:
    assert recipe_from_args(parse("--precision", "bf16"), torch.device("cuda")).precision == "bf16"
    assert recipe_from_args(parse("--fast", "--no-compile"), torch.device("cuda")).compile is False
    assert recipe_from_args(parse("--no-fold-bn"), torch.device("cpu")).describe() == "eager fp32"


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
    assert "(fp32, BN folded)" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["recipe"]["precision"] == "fp32" and doc["recipe"]["description"] == "fp32, BN folded"
