"""The head's convolution with the pyramid at its bins (`pspnet.model.pyramid_conv`) against the concatenation it
replaces, on the CPU engines, each pair timed in turns in one run (batch 1, median; the outputs lent where the
engine lends them, as the test protocol takes them):

    python benchmarks/pyramid_at_bins.py runs/camvid/best.safetensors --size 180 240 --repeats 31
    python benchmarks/pyramid_at_bins.py PSPNET50.safetensors --size 473 473 --int8 BEFORE.xml AFTER.xml

- eager PyTorch fp32 with BatchNorm folded: the default inference recipe of a CPU without and with the switch;
- OpenVINO f32: the checkpoint converted over the concatenation and as every conversion now does;
- with --int8, two int8 IRs of the checkpoint (`pspnet quantize` before and after the change).
Each row: both medians, their ratio, the argmax agreement and the largest logit difference relative to the largest
logit. OpenVINO rows need `pip install "pspnet[openvino]"`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.bench.timing import measure_interleaved
from pspnet.engine.recipe import Recipe, inference_forward

Forward = Callable[[torch.Tensor], torch.Tensor]


def row(name: str, before: Forward, after: Forward, x: torch.Tensor, repeats: int) -> str:
    with torch.inference_mode():
        (a, b), outputs = measure_interleaved([lambda: before(x), lambda: after(x)],
                                              torch.device("cpu"), repeats, 2)
    first, second = outputs
    agree = (first.argmax(1) == second.argmax(1)).float().mean().item()
    error = ((first - second).abs().max() / first.abs().max()).item()
    return (f"| {name} | {1000 * a.median:.1f} ms | {1000 * b.median:.1f} ms | {a.median / b.median:.2f}× | "
            f"{100 * agree:.4f}% | {error:.1e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, nargs=2, default=(473, 473), metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--int8", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                   help="two int8 IRs of the checkpoint: without the pyramid at its bins, and with it")
    p.add_argument("--no-openvino", action="store_true", help="PyTorch's row only")
    args = p.parse_args()

    model = pspnet.load(args.checkpoint)
    x = torch.randn(1, 3, *args.size)
    print(f"CPU: {cpu_line()}")
    print(f"model: {args.checkpoint}, input 1×3×{args.size[0]}×{args.size[1]}; median of {args.repeats} in turns\n")
    print("| engine | concatenation | pyramid at its bins | speed-up | argmax agreement | max logit difference |")
    print("|---|---|---|---|---|---|")
    cpu = torch.device("cpu")
    print(row("eager PyTorch fp32, BN folded", inference_forward(model, Recipe(fold_bn=True), cpu),
              inference_forward(model, Recipe(fold_bn=True, pyramid_at_bins=True), cpu), x, args.repeats), flush=True)
    if args.no_openvino:
        return
    from pspnet.export.openvino import OpenVinoModel, convert, require_openvino

    require_openvino()
    before, after = (OpenVinoModel(convert(model, pyramid_at_bins=flag), "f32") for flag in (False, True))
    print(row("OpenVINO f32", before.lend, after.lend, x, args.repeats), flush=True)
    if args.int8:
        before, after = (OpenVinoModel(path) for path in args.int8)
        print(row(f"OpenVINO int8 ({args.int8[0]} → {args.int8[1]})", before.lend, after.lend, x, args.repeats))


if __name__ == "__main__":
    main()
