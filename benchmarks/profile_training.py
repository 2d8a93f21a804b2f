"""Where a training step's GPU time goes: the bench's training step (the trainer's own `TrainingStep`) for one
recipe, profiled with torch.profiler after warm-up (compilation included there), kernels ranked by device time.

    python benchmarks/profile_training.py --recipe fast --backbone resnet50 --size 473 --batch 16 [--device cuda]

Recipes: reference (eager fp32), anchor (bf16 + channels_last eager), fast (the trainer's fast recipe: bf16 +
channels_last + compiled model and loss). Prints the top kernels and the share of device time by kind.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Iterable

import torch
from torch.profiler import ProfilerActivity, profile

from pspnet import PSPNet
from pspnet.bench.workloads import synthetic_images, synthetic_labels, training_work
from pspnet.engine.recipe import REFERENCE, Recipe

RECIPES = {"reference": REFERENCE, "anchor": Recipe(precision="bf16", channels_last=True),
           "fast": Recipe(precision="bf16", channels_last=True, compile=True)}
KINDS = [  # (kind, pattern on the kernel name), first match wins
    ("convolution (cuDNN / CUTLASS)", r"conv|cudnn|xmma|implicit|sm90|sm80|cutlass|wgrad|dgrad|fprop"),
    ("matrix product", r"gemm|cublas"),
    ("batch norm", r"batch_norm|bn_|welford"),
    ("upsample / interpolate", r"upsample|interp"),
    ("loss (softmax, nll)", r"softmax|nll|cross_entropy|log_softmax"),
    ("fused by Inductor (triton)", r"triton"),
    ("optimiser", r"sgd|foreach|multi_tensor"),
    ("copies, casts, layout", r"copy|cast|convert|transpose|permute|memcpy|memset|fill"),
    ("augmentation (grid sample, affine)", r"grid_sampler|affine"),
]


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, lowered):
            return kind
    return "other (elementwise, reductions)"


def parser(doc: str | None, recipes: Iterable[str], top: int) -> argparse.ArgumentParser:
    """The options both profiling scripts take: the recipe, the model, the input and the device."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=list(recipes), default="fast")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--device", default="cuda")
    p.add_argument("--top", type=int, default=top)
    return p


def main() -> None:
    p = parser(__doc__, RECIPES, top=25)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).train()
    images = synthetic_images(args.batch, args.size, args.size, seed=2)
    labels = list(synthetic_labels(args.batch, args.size, args.size, args.classes, seed=3).to(torch.uint8))
    work, _ = training_work(model, RECIPES[args.recipe], images, labels, device, seed=0)
    wall, timed = profiled(work, device, args.steps, args.recipe)
    report(args.recipe, wall, timed, device, args.batch, args.top, "step")


Timed = list[tuple[str, float, int]]  # (kernel or operator, ms per call, calls per call)


def profiled(work: Callable[[], object], device: torch.device, steps: int, label: str) -> tuple[float, Timed]:
    """Wall seconds per call of `work` and (name, ms per call, calls per call) of every kernel (on a GPU) or
    operator (on a CPU), profiled over `steps` calls after two warm-up calls (compilation included there)."""
    start = time.perf_counter()
    for _ in range(2):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"{label}: warm-up (compilation included) {time.perf_counter() - start:.1f} s")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        # Inside the block: leaving it stops the profiler and collects the trace, which is no part of the calls.
        wall = (time.perf_counter() - start) / steps
    averages = prof.key_averages()
    if device.type == "cuda":  # the kernels themselves (an operator's device time repeats its kernels')
        kernels = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA]
        timed = [(e.key, e.self_device_time_total / steps / 1e3, e.count // steps) for e in kernels]
    else:
        timed = [(e.key, e.self_cpu_time_total / steps / 1e3, e.count // steps) for e in averages]
    return wall, [t for t in timed if t[1] > 0]


def report(label: str, wall: float, timed: Timed, device: torch.device, items: int, top: int,
           unit: str) -> None:
    """The busy share, the time by kind of kernel and the top kernels, per `unit` (a call of the profiled work)."""
    total = sum(t[1] for t in timed)
    where = "device" if device.type == "cuda" else "CPU"
    print(f"{label}: {wall * 1e3:.1f} ms per {unit} wall, {total:.1f} ms of {where} time per {unit} "
          f"({100 * total / 1e3 / wall:.0f}% busy), {items / wall:.1f} img/s")
    by_kind: dict[str, float] = {}
    for name, ms, _ in timed:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + ms
    print("by kind:")
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:8.2f} ms  {100 * ms / total:5.1f}%  {kind}")
    print(f"top {top} kernels (ms per {unit}, calls per {unit}):")
    for name, ms, count in sorted(timed, key=lambda t: -t[1])[:top]:
        print(f"  {ms:8.2f} ms  {100 * ms / total:5.1f}%  ×{count:<4d} {name[:110]}")

if __name__ == "__main__":
    main()
