"""Where an OpenVINO model's time goes at batch 1 (issue 14: the profile behind a missed speed target).

    python benchmarks/openvino_profile.py runs/camvid/best.safetensors --ir runs/cpu_engines/camvid-int8/model.xml \
        --size 240

Prints, for one input of SIZE×SIZE:
- OpenVINO's own per-layer counters (PERF_COUNT), summed by layer type and kernel, with the share of each, then
  the largest layers by name with their input shapes (a reorder shows what it converts, a convolution its size);
- the engine's latency back to back (a stream of frames: nothing else runs between calls) and in turns with the eager
  PyTorch fp32 reference (as `pspnet bench` times them: the CPU runs PyTorch between the engine's calls), and the
  reference's latency both ways, so that the ratio can be read under each condition;
- the engine's call with its output copied out (as `model(x)` returns it) and lent (as the test protocol takes it);
- the network's matrix work against the CPU's measured fp32 matrix-product rate;
- with --held-runs N, N runs of both engines in turns with each output dropped at once or held until that engine's
  next call (as `pspnet bench` did before session 32): every call's seconds and the process's system seconds.
The model is the checkpoint converted in memory (f32) unless --ir names an IR of it (e.g. `pspnet quantize`'s int8);
with --interpolate converted with OpenVINO's Interpolate for the final upsampling, as before session 33 (the product
converts it as two matrix products).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.bench.roofline import forward_gflop, matmul_gflops
from pspnet.bench.timing import measure, measure_interleaved
from pspnet.device import cpu_features
from pspnet.engine.recipe import REFERENCE, inference_forward
from pspnet.export.openvino import OpenVinoModel, convert, require_openvino


def timed(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """The output, the call's wall seconds and the process's system (kernel) seconds during it."""
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
    with torch.inference_mode():
        out = forward(x)
    return out, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def held_outputs(engines: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, runs: int,
                 turns: int = 4) -> None:
    """Both engines in turns, each output dropped at once or held until that engine's next call has returned."""
    print("\nin turns, outputs dropped or held (s per call, and the process's system s during it):")
    for run in range(1, runs + 1):
        for way in ("dropped", "held"):
            held: dict[str, torch.Tensor] = {}
            calls = []
            for _ in range(turns):
                for name, forward in engines.items():
                    out, seconds, system = timed(forward, x)
                    if way == "held":
                        held[name] = out
                    del out
                    calls.append(f"{name} {seconds:.3f} s (sys {system:.3f})")
            held.clear()
            print(f"run {run}, outputs {way}: " + " | ".join(calls), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--ir", type=Path, help="an OpenVINO IR of the checkpoint (default: converted in memory, f32)")
    p.add_argument("--size", type=int, default=240)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--layers", type=int, default=8, help="how many of the largest layers to name")
    p.add_argument("--held-runs", type=int, default=0, help="runs of the engines in turns, outputs dropped or held")
    p.add_argument("--interpolate", action="store_true", help="convert the final upsampling as an Interpolate")
    args = p.parse_args()
    ov = require_openvino()

    model = pspnet.load(args.checkpoint)
    engine = OpenVinoModel(args.ir if args.ir else convert(model, matmul_upsample=not args.interpolate), "f32")
    x = torch.randn(1, 3, args.size, args.size)
    reference = inference_forward(model, REFERENCE, "cpu")
    print(f"CPU: {cpu_line()}; "
          f"openvino {ov.__version__}")
    upsampling = "" if args.ir else f" (final upsampling: {'Interpolate' if args.interpolate else 'matmuls'})"
    print(f"engine: {engine.describe()} from {engine.source}{upsampling}; input 1×3×{args.size}×{args.size}")

    # The layer counters, from a separate compilation with PERF_COUNT on (the timed one runs without it).
    core = ov.Core()
    settings = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}  # f32: OpenVINO's default is bf16 on some CPUs
    compiled = core.compile_model(engine.graph, "CPU", settings)  # the IR as read once, or the conversion
    request = compiled.create_infer_request()
    array = x.numpy()
    for _ in range(3):
        request.infer({0: array})
    totals: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    layers: dict[tuple[str, str, str], float] = defaultdict(float)
    for _ in range(args.repeats):
        request.infer({0: array})
        for layer in request.profiling_info:
            key = (layer.node_type, layer.exec_type)
            totals[key] += layer.real_time.total_seconds() / args.repeats
            counts[key] += 1
            layers[(layer.node_name, *key)] += layer.real_time.total_seconds() / args.repeats
    whole = sum(totals.values())
    print(f"\nOpenVINO layer counters: {1000 * whole:.2f} ms per call in all")
    print("| layer type | kernel | layers | ms | share |\n|---|---|---|---|---|")
    for (kind, kernel), seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        if seconds / whole >= 0.005:
            print(f"| {kind} | {kernel} | {counts[(kind, kernel)] // args.repeats} | {1000 * seconds:.2f} | "
                  f"{100 * seconds / whole:.1f}% |")
    shapes = {op.get_friendly_name(): " · ".join(str(i.get_partial_shape()) for i in op.inputs())
              for op in compiled.get_runtime_model().get_ordered_ops()}
    print(f"\nthe {args.layers} largest layers:")
    print("| layer | type | kernel | inputs | ms | share |\n|---|---|---|---|---|---|")
    for (name, kind, kernel), seconds in sorted(layers.items(), key=lambda kv: -kv[1])[:args.layers]:
        print(f"| {name} | {kind} | {kernel} | {shapes.get(name, '?')} | {1000 * seconds:.2f} | "
              f"{100 * seconds / whole:.1f}% |")

    cpu = torch.device("cpu")
    with torch.inference_mode():  # the bench's own timing: back to back, then in turns
        ref_alone, eng_alone = (measure(lambda f=f: f(x), cpu, args.repeats, 1)[0].median for f in (reference, engine))
        ref_turns, eng_turns = (m.median for m in measure_interleaved([lambda: reference(x), lambda: engine(x)], cpu,
                                                                      args.repeats, 1)[0])
        copied, lent = (m.median for m in measure_interleaved([lambda: engine(x), lambda: engine.lend(x)], cpu,
                                                                 args.repeats, 1)[0])
    print(f"\nthe engine's output copied out (`model(x)`) {1000 * copied:.1f} ms, lent (`model.lend(x)`, as the test "
          f"protocol takes it) {1000 * lent:.1f} ms: median of {args.repeats} in turns")
    gflop = forward_gflop(model, args.size, args.size)
    peak = matmul_gflops(torch.device("cpu"))
    print(f"\nlatency, median of {args.repeats}: | back to back | in turns (as `pspnet bench`) |")
    print("|---|---|---|")
    print(f"| eager PyTorch fp32 | {1000 * ref_alone:.1f} ms | {1000 * ref_turns:.1f} ms |")
    print(f"| {engine.describe()} | {1000 * eng_alone:.1f} ms | {1000 * eng_turns:.1f} ms |")
    print(f"| speed-up | {ref_alone / eng_alone:.2f}× | {ref_turns / eng_turns:.2f}× |")
    print(f"\n{gflop:.1f} GFLOP per forward; fp32 matrix products here {peak:.0f} GFLOP/s: the reference "
          f"runs at {100 * gflop / ref_alone / peak:.0f}% of it, the engine at {100 * gflop / eng_alone / peak:.0f}%"
          + (" (int8 dot products reach up to 4× the fp32 rate with AVX-512 VNNI)"
             if engine.quantization is not None and "avx512_vnni" in cpu_features() else ""))
    if args.held_runs:
        held_outputs({"ref": reference, "ov": engine}, x, args.held_runs)


if __name__ == "__main__":
    main()
