"""Start-up costs, side by side in one run: the command line before any work, reading a model file, and OpenVINO's
conversion against reading the converted graph back from the cache.

    python benchmarks/startup.py --checkpoint runs/camvid/best.safetensors [--baseline-src OLD_CHECKOUT/src]

- `pspnet --help` and `pspnet info CHECKPOINT`, each a fresh process (median of 5, in turns), from this tree and,
  with --baseline-src, from another source tree (e.g. a checkout of an earlier commit);
- `pspnet.load(FILE)` of a PSPNet-50 and a PSPNet-101 file (150 classes, random weights), each a fresh process
  with torch and pspnet imported (median of 5, in turns), from this tree and the other: the seconds of the call,
  and the peak memory above the memory before it, up to every weight having been read once (Linux:
  /proc/self/status);
- `OpenVinoModel(model)` for the checkpoint and for a random PSPNet-50 (150 classes): converted into an empty cache
  (PSPNET_CACHE: a new temporary folder), then read back from it, then converted with the cache off; median of 3.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

import pspnet
from pspnet.bench.report import cpu_line


def command_seconds(args: list[str], src: Path | None) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pspnet.cli.main", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


LOAD = """
import sys, time
import torch
import pspnet, pspnet.checkpoint


def status(key):  # kB
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1])


before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
start = time.perf_counter()
model = pspnet.load(sys.argv[1])
seconds = time.perf_counter() - start
for tensor in model.state_dict().values():  # every weight read once: a file's pages mapped but not yet read count
    tensor.sum()
print(seconds, (status("VmHWM:") - before) / 1024)
"""


def load_figures(path: Path, src: Path | None) -> tuple[float, float]:
    """`pspnet.load(path)` in a fresh process: its seconds, and its peak memory above the memory before it (MiB)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run([sys.executable, "-c", LOAD, str(path)], env=env, check=True, capture_output=True,
                          text=True)
    seconds, mib = done.stdout.split()
    return float(seconds), float(mib)


def openvino_seconds(model: torch.nn.Module, rounds: int) -> dict[str, float]:
    from pspnet.export.openvino import OpenVinoModel

    times: dict[str, list[float]] = {"converted, into the cache": [], "read from the cache": [], "cache off": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["PSPNET_CACHE"] = cache
            for key in ("converted, into the cache", "read from the cache"):
                start = time.perf_counter()
                OpenVinoModel(model)
                times[key].append(time.perf_counter() - start)
        start = time.perf_counter()
        OpenVinoModel(model, cache=False)
        times["cache off"].append(time.perf_counter() - start)
    return {key: median(t) for key, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--baseline-src", type=Path, help="another source tree's src/ to time the commands with")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"Machine: {cpu_line()}\n")

    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src
    commands = {"pspnet --help": ["--help"], "pspnet info CHECKPOINT": ["info", str(args.checkpoint)]}
    rows = [(tree, name) for tree in trees for name in commands]
    times: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    for _ in range(args.repeats):
        for tree, name in rows:
            times[(tree, name)].append(command_seconds(commands[name], trees[tree]))
    print("| source | command | wall s (median) |\n|---|---|---|")
    for tree, name in rows:
        print(f"| {tree} | {name} | {median(times[(tree, name)]):.2f} |")

    with tempfile.TemporaryDirectory() as folder:
        files = {f"PSPNet-{depth}": pspnet.save(pspnet.PSPNet(150, backbone=f"resnet{depth}"),
                                                Path(folder) / f"pspnet{depth}.safetensors") for depth in (50, 101)}
        rows_load = [(tree, name) for tree in trees for name in files]
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {row: [] for row in rows_load}
        for _ in range(args.repeats):
            for tree, name in rows_load:
                figures[(tree, name)].append(load_figures(files[name], trees[tree]))
    print("\n| source | `pspnet.load(FILE)` of | s (median) | peak memory above the start, MiB (median) |\n"
          "|---|---|---|---|")
    for tree, name in rows_load:
        print(f"| {tree} | {name} | {median(t for t, _ in figures[(tree, name)]):.2f} | "
              f"{median(m for _, m in figures[(tree, name)]):.0f} |")

    torch.manual_seed(0)
    models = {str(args.checkpoint): pspnet.load(args.checkpoint),
              "PSPNet-50, 150 classes (random)": pspnet.PSPNet(150, backbone="resnet50").eval()}
    print("\n| model | OpenVinoModel(model): converted into the cache | read from the cache | cache off | speed-up |\n"
          "|---|---|---|---|---|")
    for name, model in models.items():
        t = openvino_seconds(model, 3)
        print(f"| {name} | {t['converted, into the cache']:.2f} s | {t['read from the cache']:.2f} s | "
              f"{t['cache off']:.2f} s | {t['cache off'] / t['read from the cache']:.1f}× |")


if __name__ == "__main__":
    main()
