"""Why the official reference's training step ran at 69 img/s in one H100 call and at 50 in another (BENCHMARKS.md,
the third lease): each case below times the same reference training step (eager fp32, PyTorch's default TF32
convolutions, `pspnet.engine.recipe.OFFICIAL`) in a fresh process, after something different ran first, and names
the convolution kernels its step launches (cuDNN's `tf32` kernels or fp32 ones).

    python benchmarks/reference_speed.py [--device cuda] [--backbone resnet50] [--size 473] [--batch 16]

Cases: `alone` (nothing before it); `after-inference` (three fp32 inference calls of the same batch first, as the
bench's main table does); `after-variants` (the levers call's other variants prepared and run once first: the fast
training step with and without CUDA graphs); `held-memory` (40% of the device's memory allocated and held). If the
cases differ, the printed kernels show which convolution plans each got.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from pspnet import PSPNet
from pspnet.bench.timing import measure
from pspnet.bench.workloads import normalized_batch, synthetic_images, synthetic_labels, training_work
from pspnet.engine.recipe import OFFICIAL, Recipe, inference_forward

CASES = ("alone", "after-inference", "after-variants", "held-memory")
FASTEST = Recipe(precision="bf16", channels_last=True, compile=True, matmul_upsample=True)


def run_case(case: str, args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).train()
    images = synthetic_images(args.batch, args.size, args.size, seed=2)
    labels = list(synthetic_labels(args.batch, args.size, args.size, args.classes, seed=3).to(torch.uint8))
    held: list[object] = []
    if case == "after-inference":
        forward = inference_forward(model, OFFICIAL, device)
        batch = normalized_batch(images, model.info.mean, model.info.std)
        for _ in range(3):
            forward(batch)
        del forward
    elif case == "after-variants":
        for recipe in (FASTEST, replace(FASTEST, compile_mode="reduce-overhead")):
            work, _ = training_work(model, recipe, images, labels, device, seed=0, compile_loss=True,
                                    fused_sgd=device.type == "cuda")
            work()
            held.append(work)
    elif case == "held-memory" and device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        held.append(torch.empty(int(0.4 * total), dtype=torch.uint8, device=device))
    work, _ = training_work(model, OFFICIAL, images, labels, device, seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        m, _ = measure(work, device, repeats=args.repeats, warmup=2, items=args.batch)
    except torch.cuda.OutOfMemoryError:
        held_gb = sum(t.numel() for t in held if isinstance(t, torch.Tensor)) / 2**30
        print(f"{case}: the reference training step ran out of memory ({held_gb:.1f} GiB held)")
        return
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    print(f"{case}: reference training step {m.rate:.2f} img/s, peak {peak:.0f} MiB, "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, cudnn.benchmark={torch.backends.cudnn.benchmark}")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    kernels = [e for e in prof.key_averages()
               if e.device_type == torch.autograd.DeviceType.CUDA or device.type != "cuda"]
    convs = sorted((e for e in kernels if any(k in e.key.lower() for k in ("conv", "xmma", "cudnn", "gemm", "sm90"))),
                   key=lambda e: -(e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total))
    for e in convs[:args.top]:
        us = e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total
        print(f"  {us / 1e3:8.2f} ms  ×{e.count:<3d} {e.key[:150]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--top", type=int, default=6)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in this process
    args = p.parse_args()
    if args.case:
        run_case(args.case, args)
        return
    for case in args.cases:  # each in a fresh process: cuDNN keeps the plans it chose for the process's life
        start = time.perf_counter()
        rest = [a for a in sys.argv[1:] if a != "--cases" and a not in CASES]
        subprocess.run([sys.executable, __file__, "--case", case, *rest], check=False)
        print(f"  ({case}: {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
