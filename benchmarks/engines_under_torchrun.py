"""Inference engines in the processes of one torchrun on one machine: the images per second of all processes
together, with each engine as its defaults leave it (before: a thread per core in every process, pinned to the same
cores) and as pspnet sets it up (now: the threads torchrun gives each process, OMP_NUM_THREADS, unpinned).

    python benchmarks/engines_under_torchrun.py --checkpoint runs/camvid/best.safetensors --processes 2

The script starts torchrun itself (`--processes N`; 1: one plain process, for the figure without torchrun). Every
variant runs for `--seconds` in all processes at once, after a barrier, in `--rounds` rounds taken in turns; the
table gives the median and every round. The reference is PyTorch eager fp32 (the weights as trained, BatchNorm not
folded). Prints a Markdown table with the CPU's model and flags.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import torch

VARIANTS = ["PyTorch eager fp32 (reference)", "OpenVINO f32, engine defaults (before)", "OpenVINO f32, pspnet (now)",
            "ONNX Runtime fp32, engine defaults (before)", "ONNX Runtime fp32, pspnet (now)"]


def runner(variant: str, checkpoint: Path, onnx: Path) -> Callable[[torch.Tensor], object]:
    """The forward of `variant`, built in this process."""
    import pspnet

    if variant.startswith("PyTorch"):
        model = pspnet.load(checkpoint).eval()

        def eager(x: torch.Tensor) -> object:
            with torch.inference_mode():
                return model(x)
        return eager
    if variant.startswith("OpenVINO"):
        from pspnet.export.openvino import OpenVinoModel

        engine = OpenVinoModel(pspnet.load(checkpoint))
        if "before" in variant:  # the plugin's defaults, as pspnet compiled it before
            engine.compiled = engine._core.compile_model(engine.graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            engine.request = engine.compiled.create_infer_request()
        return engine
    from pspnet.export.onnx_runtime import OnnxRuntimeModel

    engine = OnnxRuntimeModel(onnx)
    if "before" in variant:  # no session options: ONNX Runtime's own thread count and affinities
        import onnxruntime as ort

        engine.session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return engine


def worker(args: argparse.Namespace) -> None:
    """One process of the run: every variant in turn, timed in step with the others."""
    import torch.distributed as dist

    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if several else 0
    x = torch.randn(args.batch, 3, *args.size)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            forward = runner(variant, args.checkpoint, args.onnx)
            forward(x)  # the first call: shapes settled, buffers allocated
            if several:
                dist.barrier()
            start, images = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                forward(x)
                images += args.batch
            rate = torch.tensor([images / (time.perf_counter() - start)], dtype=torch.float64)
            if several:
                dist.all_reduce(rate)
            rates[variant].append(rate.item())
            del forward
    if rank == 0:
        from pspnet.bench.report import cpu_line

        processes = int(os.environ.get("WORLD_SIZE", "1"))
        print(f"{cpu_line()}; {processes} process(es), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
              f"input {args.batch}×3×{args.size[0]}×{args.size[1]}, {args.seconds} s × {args.rounds} rounds\n")
        print("| engine | images/s, all processes (median) | each round | vs reference |\n|---|---|---|---|")
        reference = median(rates[VARIANTS[0]])
        for variant in VARIANTS:
            middle, rounds = median(rates[variant]), " ".join(f"{r:.2f}" for r in rates[variant])
            print(f"| {variant} | {middle:.2f} | {rounds} | {middle / reference:.2f}× |")
    if several:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--processes", type=int, default=2, help="torchrun's --nproc-per-node (1: no torchrun)")
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)  # given to the workers: the file exported once
    args = p.parse_args()
    if args.onnx is not None:
        worker(args)
        return
    import pspnet
    from pspnet.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "model.onnx"
        export_onnx(pspnet.load(args.checkpoint), onnx)
        launch = [sys.executable] if args.processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes)]
        command = [*launch, __file__, "--checkpoint", str(args.checkpoint), "--size", *map(str, args.size),
                   "--batch", str(args.batch), "--seconds", str(args.seconds), "--rounds", str(args.rounds),
                   "--onnx", str(onnx)]
        sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
