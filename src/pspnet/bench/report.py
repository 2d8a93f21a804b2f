"""The bench's tables (plain text for the terminal, Markdown for BENCHMARKS.md) and the machine description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from pspnet.bench.suite import AblationRow, BenchResult, Row
from pspnet.bench.timing import Measurement
from pspnet.engine.recipe import Recipe

MIB = 1024 * 1024


def machine(device: torch.device) -> str:
    """One line: the processor (or GPU), its vector capability, threads, torch version."""
    if device.type == "cuda":
        hw = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        hw = f"{_cpu_model()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, " \
             f"vector capability {torch.backends.cpu.get_cpu_capability()}"
    return f"{hw}; torch {torch.__version__}; Python {platform.python_version()}"


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
ABLATION_HEADER = ["model", "size", "step", "recipe", "s/img", "vs reference", "vs previous", "peak MiB",
                   "1st call s", "argmax agree", "rel. error"]


def main_cells(rows: list[Row]) -> list[list[str]]:
    return [[r.model, r.size, r.workload, r.unit, _figure(r.reference, r.unit), _figure(r.fast, r.unit),
             f"{r.speedup:.2f}×", _mib(r.reference), _mib(r.fast), _first(r.reference), _first(r.fast),
             *_agree(r)] for r in rows]


def ablation_cells(rows: list[AblationRow]) -> list[list[str]]:
    cells = []
    for i, r in enumerate(rows):
        first, previous = rows[0].measurement.median, rows[max(i - 1, 0)].measurement.median
        cells.append([r.model, r.size, r.name, r.recipe.describe(), _figure(r.measurement, "s/img"),
                      f"{first / r.measurement.median:.2f}×", f"{previous / r.measurement.median:.2f}×",
                      _mib(r.measurement), _first(r.measurement), *_agree(r)])
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


def recipes_line(fast: Recipe, fast_train: Recipe) -> str:
    return f"reference: eager fp32 NCHW; fast (inference): {fast.describe()}; fast (training): {fast_train.describe()}"


def roofline_lines(result: BenchResult) -> list[str]:
    """Per model and size: its GFLOP per forward pass and, against this machine's matrix-product speed, the
    shortest fp32 forward pass possible here."""
    lines = []
    if result.matmul_gflops is not None:
        lines.append(f"fp32 matrix product on this machine: {result.matmul_gflops:.0f} GFLOP/s")
    for key, gflop in result.gflop.items():
        bound = f", at least {gflop / result.matmul_gflops:.2f} s per fp32 forward here" \
            if result.matmul_gflops else ""
        lines.append(f"{key}: {gflop:.1f} GFLOP per forward pass{bound}")
    return lines


def format_text(result: BenchResult, header_line: str) -> str:
    parts = [header_line, *roofline_lines(result)]
    if result.rows:
        parts.append(text_table(MAIN_HEADER, main_cells(result.rows)))
    if result.ablation:
        parts.append("ablation, inference at batch 1 (each step against the reference and the step before):")
        parts.append(text_table(ABLATION_HEADER, ablation_cells(result.ablation)))
    return "\n\n".join(parts)


def format_markdown(result: BenchResult, command: str, device: torch.device, recipes: str) -> str:
    parts = [f"Command: `{command}`", f"Machine: {machine(device)}", f"Recipes: {recipes}"]
    parts += [f"Arithmetic: {line}" for line in roofline_lines(result)]
    if result.rows:
        parts.append(markdown_table(MAIN_HEADER, main_cells(result.rows)))
    if result.ablation:
        parts.append(markdown_table(ABLATION_HEADER, ablation_cells(result.ablation)))
    return "\n\n".join(parts) + "\n"
