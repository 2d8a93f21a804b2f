"""The bench's tables (plain text for the terminal, Markdown for BENCHMARKS.md) and the machine description."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from pspnet.bench.roofline import TRAINING_FLOP_FACTOR
from pspnet.bench.suite import AblationRow, BenchResult, Row
from pspnet.bench.timing import Measurement
from pspnet.device import cpu_features, isa_cap
from pspnet.engine.recipe import Recipe

MIB = 1024 * 1024


def machine(device: torch.device) -> str:
    """One line: the processor (or GPU), its vector capability, threads, torch version."""
    if device.type == "cuda":
        hw = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        hw = f"{_cpu_model()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, " \
             f"vector capability {torch.backends.cpu.get_cpu_capability()}"
        if (cap := isa_cap()) is not None:
            hw += f", oneDNN capped at {cap}"
    return f"{hw}; torch {torch.__version__}; Python {platform.python_version()}"


def cpu_line() -> str:
    """`machine` for the CPU, with the instruction-set features that pick the engines' kernels."""
    return f"{machine(torch.device('cpu'))}; flags: {', '.join(sorted(cpu_features())) or 'none'}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _figure(m: Measurement, unit: str) -> str:
    """Median and the spread over repetitions, in the row's unit."""
    lo, hi = m.spread
    if unit == "s/img":
        return f"{m.per_item:.3f} ({lo / m.items:.3f}–{hi / m.items:.3f})"
    return f"{m.rate:.2f} ({m.items / hi:.2f}–{m.items / lo:.2f})"


def _mib(m: Measurement) -> str:
    return "n/a" if m.peak_bytes is None else f"{m.peak_bytes / MIB:.0f}"


def _first(m: Measurement) -> str:
    return f"{m.warmup_seconds[0]:.1f}" if m.warmup_seconds else "–"


def _agree(row: Row | AblationRow) -> tuple[str, str]:
    a = row.agreement
    return ("–", "–") if a is None else (f"{100 * a.argmax:.2f}%", f"{a.relative_error:.1e}")


MAIN_HEADER = ["model", "size", "workload", "unit", "reference", "fast", "speed-up", "peak MiB ref",
               "peak MiB fast", "1st call s ref", "1st call s fast", "argmax agree", "rel. error"]
ANCHOR_HEADER = ["anchor", "fast vs anchor", "peak MiB anchor"]
PEAK_HEADER = ["ref % of fp32 peak", "fast % of its peak"]
ABLATION_HEADER = ["model", "size", "step", "recipe", "s/img", "vs reference", "vs previous", "peak MiB",
                   "1st call s", "argmax agree", "rel. error"]
TRAIN_ABLATION_HEADER = ["model", "size", "step", "recipe", "img/s", "vs first", "vs previous", "peak MiB",
                         "1st call s", "% of its peak"]


def share_of_peak(result: BenchResult, model: str, size: str, seconds_per_image: float, flop_factor: int,
                  precision: str) -> str:
    """The achieved arithmetic rate over the matrix-product rate of `precision` (fp32's where it was not timed)."""
    gflop = result.gflop.get(f"{model} {size}")
    peak = result.matmul.get(precision) or result.matmul.get("fp32")
    if gflop is None or not peak:
        return "–"
    return f"{100 * gflop * flop_factor / seconds_per_image / peak:.1f}%"


def main_cells(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    rows = result.rows
    anchored = any(r.anchor is not None for r in rows)
    header = MAIN_HEADER + (ANCHOR_HEADER if anchored else []) + (PEAK_HEADER if result.matmul else [])
    cells = []
    for r in rows:
        row = [r.model, r.size, r.workload, r.unit, _figure(r.reference, r.unit), _figure(r.fast, r.unit),
               f"{r.speedup:.2f}×", _mib(r.reference), _mib(r.fast), _first(r.reference), _first(r.fast), *_agree(r)]
        if anchored:
            row += ["–", "–", "–"] if r.anchor is None else [
                _figure(r.anchor, r.unit), f"{r.anchor.median / r.fast.median:.2f}×", _mib(r.anchor)]
        if result.matmul:
            row += [share_of_peak(result, r.model, r.size, r.reference.per_item, r.flop_factor, "fp32"),
                    share_of_peak(result, r.model, r.size, r.fast.per_item, r.flop_factor, r.fast_precision)]
        cells.append(row)
    return header, cells


def ablation_cells(rows: list[AblationRow]) -> list[list[str]]:
    cells = []
    for i, r in enumerate(rows):
        first, previous = rows[0].measurement.median, rows[max(i - 1, 0)].measurement.median
        cells.append([r.model, r.size, r.name, r.recipe, _figure(r.measurement, "s/img"),
                      f"{first / r.measurement.median:.2f}×", f"{previous / r.measurement.median:.2f}×",
                      _mib(r.measurement), _first(r.measurement), *_agree(r)])
    return cells


def train_ablation_cells(result: BenchResult) -> list[list[str]]:
    rows = result.train_ablation
    cells = []
    for i, r in enumerate(rows):
        first, previous = rows[0].measurement.median, rows[max(i - 1, 0)].measurement.median
        m = r.measurement
        cells.append([r.model, r.size, r.name, r.recipe, _figure(m, "img/s"), f"{first / m.median:.2f}×",
                      f"{previous / m.median:.2f}×", _mib(m), _first(m),
                      share_of_peak(result, r.model, r.size, m.per_item, TRAINING_FLOP_FACTOR, r.precision)])
    return cells


def text_table(header: list[str], cells: list[list[str]]) -> str:
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def recipes_line(fast: Recipe, fast_train: Recipe, anchor: Recipe | None = None) -> str:
    line = (f"reference: eager fp32 NCHW as the official code runs (on GPUs PyTorch's default TF32 convolutions); "
            f"fast (inference): {fast.describe()}; fast (training): {fast_train.describe()}")
    return line + (f"; anchor: {anchor.describe()}" if anchor is not None else "")


def roofline_lines(result: BenchResult) -> list[str]:
    """The machine's matrix-product rates and each model's GFLOP per forward pass (a training step counts three)."""
    lines = []
    if result.matmul:
        lines.append("matrix products on this machine (best of several sizes): "
                     + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result.matmul.items()))
    lines += [f"{key}: {gflop:.1f} GFLOP per forward pass" for key, gflop in result.gflop.items()]
    return lines


def sections(result: BenchResult, table: Callable[[list[str], list[list[str]]], str]) -> list[str]:
    parts = []
    if result.rows:
        parts.append(table(*main_cells(result)))
    if result.ablation:
        parts.append("Ablation, inference at batch 1 (each step against the reference and the step before):")
        parts.append(table(ABLATION_HEADER, ablation_cells(result.ablation)))
    if result.train_ablation:
        parts.append("Ablation, the training step (each variant against the first and the one before):")
        parts.append(table(TRAIN_ABLATION_HEADER, train_ablation_cells(result)))
    return parts


def format_text(result: BenchResult, header_line: str) -> str:
    return "\n\n".join([header_line, *roofline_lines(result), *sections(result, text_table)])


def format_markdown(result: BenchResult, command: str, device: torch.device, recipes: str) -> str:
    parts = [f"Command: `{command}`", f"Machine: {machine(device)}", f"Recipes: {recipes}"]
    parts += [f"Arithmetic: {line}" for line in roofline_lines(result)]
    return "\n\n".join(parts + sections(result, markdown_table)) + "\n"
