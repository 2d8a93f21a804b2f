"""Whether this CPU's half-precision instructions (AVX-512 FP16, AVX-512 BF16) make a PSPNet faster than fp32:
oneDNN's matrix product and 3×3 convolution in PyTorch, then the model in OpenVINO at each inference precision, in
turns in one run (batch 1, median):

    python benchmarks/half_precision_cpu.py runs/camvid/best.safetensors --size 360 480 --repeats 15
    python benchmarks/half_precision_cpu.py PSPNET50.safetensors --size 473 473 --repeats 5

Each OpenVINO row: the median, its ratio to f32, the argmax agreement with eager PyTorch fp32 and the largest logit
difference relative to the largest logit. Needs `pip install "pspnet[openvino]"`.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.bench.timing import measure_interleaved
from pspnet.export.openvino import cached_convert, compile_settings, require_openvino

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def kernels(repeats: int) -> None:
    """GFLOP/s of a 2048² matrix product and of a 512→512 3×3 convolution over 60×60 (PSPNet-50's stage-4 size)."""
    cpu = torch.device("cpu")
    a = torch.randn(2048, 2048)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 512, 60, 60)
    works, names = [], []
    for name, dtype in DTYPES.items():
        m, c, y = a.to(dtype), copy.deepcopy(conv).to(dtype), x.to(dtype)  # Module.to changes the module
        works += [lambda m=m: m @ m, lambda c=c, y=y: c(y)]
        names += [f"matrix product 2048², {name}", f"3×3 convolution 512→512 at 60×60, {name}"]
    with torch.inference_mode():
        measured, _ = measure_interleaved(works, cpu, repeats, 1)
    flops = [2 * 2048**3, 2 * 512 * 512 * 9 * 60 * 60]
    print("| PyTorch kernel | median | GFLOP/s |")
    print("|---|---|---|")
    for i, (name, m) in enumerate(zip(names, measured, strict=True)):
        print(f"| {name} | {1000 * m.median:.1f} ms | {flops[i % 2] / m.median / 1e9:.0f} |")
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, nargs=2, default=(473, 473), metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()

    print(f"CPU: {cpu_line()}\n")
    kernels(args.repeats)
    model = pspnet.load(args.checkpoint)
    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model(x)
    core = require_openvino().Core()
    graph, _ = cached_convert(model, core)  # converted (through the cache) once, compiled at each precision
    compiled = {precision: core.compile_model(graph, "CPU", compile_settings(precision))
                for precision in ("f32", "f16", "bf16")}
    array = x.numpy()
    measured, outputs = measure_interleaved([lambda c=c: torch.from_numpy(c(array)[0]) for c in compiled.values()],
                                            torch.device("cpu"), args.repeats, 1)
    print(f"model: {args.checkpoint}, input 1×3×{args.size[0]}×{args.size[1]}; median of {args.repeats} in turns\n")
    print("| OpenVINO precision (as compiled) | median | / f32 | argmax agreement with PyTorch fp32 | "
          "max logit difference |")
    print("|---|---|---|---|---|")
    for (precision, c), m, out in zip(compiled.items(), measured, outputs, strict=True):
        agree = (out.argmax(1) == reference.argmax(1)).float().mean().item()
        error = ((out - reference).abs().max() / reference.abs().max()).item()
        compiled_as = c.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        print(f"| {precision} ({compiled_as}) | {1000 * m.median:.1f} ms | "
              f"{measured[0].median / m.median:.2f}× | {100 * agree:.3f}% | {error:.1e} |")


if __name__ == "__main__":
    main()
