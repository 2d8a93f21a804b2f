"""Activation checkpointing (train.activation_checkpointing) against none, PSPNet training steps on this machine:
the bytes autograd keeps for the backward pass (a count of the saved tensors: exact, the same on every machine), and
each variant's peak resident memory and step time in a fresh process of its own (in one process the allocator keeps
what the first variant freed, and the second one's peak cannot go below it).

    python benchmarks/activation_memory.py --backbone resnet50 --size 473 --batch 2 --classes 150
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from pspnet import PSPNet
from pspnet.bench.memory import saved_for_backward


def saved_bytes(model: PSPNet, x: torch.Tensor, target: torch.Tensor) -> int:
    def step() -> None:
        logits, aux = model(x)
        (F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)).backward()

    total = saved_for_backward(step)
    model.zero_grad(set_to_none=True)
    return total


def workload(args: argparse.Namespace) -> tuple[PSPNet, torch.Tensor, torch.Tensor]:
    """The seeded model in training mode, a batch of inputs and its targets."""
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    return model, x, torch.randint(0, args.classes, (args.batch, args.size, args.size))


def child(args: argparse.Namespace) -> None:
    """Three optimiser-free training steps with the chosen variant; prints the peak RSS (MiB) and the last step's
    seconds."""
    model, x, target = workload(args)
    model.backbone.recompute = bool(args.child)
    for _ in range(3):
        start = time.perf_counter()
        logits, aux = model(x)
        (F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)).backward()
        model.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
    print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024, seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--child", type=int, choices=(0, 1), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args)
        return
    model, x, target = workload(args)
    rows = []
    for recompute in (False, True):
        model.backbone.recompute = recompute
        rows.append(saved_bytes(model, x, target))
    del model
    print(f"PSPNet {args.backbone}, {args.classes} classes, batch {args.batch} at {args.size}×{args.size}, fp32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"kept for the backward pass: {rows[0] / 2**20:.0f} MiB, with activation checkpointing "
          f"{rows[1] / 2**20:.0f} MiB ({rows[0] / rows[1]:.2f}× less)")
    measured = []
    for variant in (0, 1):
        out = subprocess.run([sys.executable, __file__, "--backbone", args.backbone, "--size", str(args.size),
                              "--batch", str(args.batch), "--classes", str(args.classes), "--child", str(variant)],
                             check=True, capture_output=True, text=True).stdout.split()
        measured.append((float(out[0]), float(out[1])))
    (peak0, s0), (peak1, s1) = measured
    print(f"peak resident memory, a fresh process each (model, input, 3 forward + backward): {peak0:.0f} MiB, with "
          f"activation checkpointing {peak1:.0f} MiB ({peak0 / peak1:.2f}× less)")
    print(f"third step's forward + backward: {s0:.2f} s, with activation checkpointing {s1:.2f} s ({s0 / s1:.2f}×)")


if __name__ == "__main__":
    main()
