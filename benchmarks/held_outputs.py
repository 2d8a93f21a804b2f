"""Eager PyTorch fp32 and an OpenVINO model timed in turns, each output dropped at once or held until that engine's
next call (as `pspnet bench` did before session 32): what holding outputs costs a call (BENCHMARKS.md, "The bench
held each output into the next call").

    python benchmarks/held_outputs.py runs/cpu_bf16_check/engines/pspnet50_random.safetensors \
        --ir runs/cpu_bf16_check/engines/pspnet50-int8/model.xml --size 473 --turns 4 --runs 2

Prints, for each run and way, every call's seconds and the process's system (kernel) seconds during it.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.engine.recipe import REFERENCE, inference_forward
from pspnet.export.openvino import OpenVinoModel


def timed(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """The output, the call's wall seconds and the process's system seconds during it."""
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
    with torch.inference_mode():
        out = forward(x)
    return out, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--ir", type=Path, help="an OpenVINO IR of the checkpoint (default: converted in memory, f32)")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    model = pspnet.load(args.checkpoint)
    engines = {"ref": inference_forward(model, REFERENCE, "cpu"),
               "ov": OpenVinoModel(args.ir if args.ir else model, "f32", cache=False)}
    x = torch.randn(1, 3, args.size, args.size)
    print(f"CPU: {cpu_line()}")
    print(f"ref: eager PyTorch fp32; ov: {engines['ov'].describe()}; input 1×3×{args.size}×{args.size}")
    for forward in engines.values():  # warm-up
        timed(forward, x)
    for run in range(1, args.runs + 1):
        for way in ("dropped", "held"):
            held: dict[str, torch.Tensor] = {}
            calls = []
            for _ in range(args.turns):
                for name, forward in engines.items():
                    out, seconds, system = timed(forward, x)
                    if way == "held":
                        held[name] = out  # until this engine's next call has returned, as the old bench held it
                    del out
                    calls.append(f"{name} {seconds:.3f} s (sys {system:.3f})")
            held.clear()
            print(f"run {run}, outputs {way}: " + " | ".join(calls), flush=True)


if __name__ == "__main__":
    main()
