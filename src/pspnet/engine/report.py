"""`eval --report DIR`: a per-class IoU bar chart, a confusion-matrix heatmap and sample grids, with an index.html."""

from __future__ import annotations

import html
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pspnet.classes import Color
from pspnet.engine.evaluate import Sample
from pspnet.engine.legend import key_entries
from pspnet.engine.metrics import Scores
from pspnet.engine.predict import colorize
from pspnet.errors import PSPNetError
from pspnet.files import shown, write_atomically, write_text_atomically


def require_matplotlib() -> None:
    """Before an evaluation whose report needs it: its absence said first, not after the network ran."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PSPNetError("--report needs matplotlib: pip install 'pspnet[report]'")


def _pyplot():  # noqa: ANN202 - matplotlib is optional
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


REPORT_FILES = ("iou.png", "confusion.png", "samples.png", "worst.png", "index.html")


def write_report(out_dir: Path, scores: Scores, matrix: torch.Tensor, class_names: Sequence[str],
                 palette: Sequence[Color], samples: Sequence[Sample], title: str = "pspnet eval",
                 worst: Sequence[Sample] = ()) -> Path:
    """Write iou.png, confusion.png, samples.png (images spread over the set), worst.png (the lowest per-image
    mIoU) and index.html into `out_dir`; returns the index.html path."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    _iou_chart(plt, out_dir / "iou.png", scores, class_names, palette)
    _confusion(plt, out_dir / "confusion.png", matrix, class_names)
    figures = [("Per-class IoU", "iou.png"), ("Confusion matrix (rows: ground truth, normalised per row)",
                                               "confusion.png")]
    if samples:
        _samples(plt, out_dir / "samples.png", samples, palette, class_names)
        figures.append(("Samples spread over the set: image | ground truth | prediction", "samples.png"))
    if worst:
        _samples(plt, out_dir / "worst.png", worst, palette, class_names)
        figures.append(("The lowest per-image mIoU: image | ground truth | prediction", "worst.png"))
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{_pct(i)}</td><td>{_pct(a)}</td></tr>"
                   for n, i, a in zip(class_names, scores.iou, scores.acc, strict=True))
    body = "".join(f"<h2>{html.escape(t)}</h2><img src='{f}' style='max-width:100%'>" for t, f in figures)
    index = out_dir / "index.html"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>mIoU {_pct(scores.miou)} · mAcc {_pct(scores.macc)} · "
        f"allAcc {_pct(scores.allacc)}</p>{body}<h2>Per-class scores</h2>"
        f"<table border='1' cellpadding='3'><tr><th>class</th><th>IoU %</th><th>Acc %</th></tr>{rows}</table>"
        "</body></html>\n")
    write_text_atomically(index, page)
    return index


def _save(plt, fig, path: Path) -> None:  # noqa: ANN001
    """The figure as a PNG, written whole or not at all (a full disk leaves no picture cut short, and says which)."""
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.2f}"


def _iou_chart(plt, path: Path, scores: Scores, names: Sequence[str], palette: Sequence[Color]) -> None:  # noqa: ANN001
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n + 2), 4.5))
    values = [0.0 if math.isnan(v) else 100 * v for v in scores.iou]
    colors = [tuple(c / 255 for c in palette[i]) for i in range(n)]
    ax.bar(range(n), values, color=colors, edgecolor="black", linewidth=0.5)
    if not math.isnan(scores.miou):
        ax.axhline(100 * scores.miou, color="red", linestyle="--", label=f"mIoU {100 * scores.miou:.2f}")
        ax.legend(loc="upper right")
    ax.set_xticks(range(n), names, rotation=60 if n > 8 else 0, ha="right" if n > 8 else "center", fontsize=8)
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.set_title("Per-class IoU (n/a classes drawn as 0)" if any(math.isnan(v) for v in scores.iou)
                 else "Per-class IoU")
    fig.tight_layout()
    _save(plt, fig, path)


def _confusion(plt, path: Path, matrix: torch.Tensor, names: Sequence[str]) -> None:  # noqa: ANN001
    m = matrix.double().cpu().numpy()
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = len(names)
    size = max(5.0, 0.3 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = n <= 60
    if ticks:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    if n <= 25:
        for r in range(n):
            for c in range(n):
                if norm[r, c] >= 0.005:
                    ax.text(c, r, f"{norm[r, c]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[r, c] > 0.5 else "black")
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    fig.tight_layout()
    _save(plt, fig, path)


LEGEND_COLUMNS = 6
PANEL = 2.9  # inches: the width of each picture of the sample grid (three to a row, 9 inches in all)
MARGIN, TITLE, KEY_ROW = 0.1, 0.25, 0.2  # inches: around and between the pictures, above each, per row of the key


def _samples(plt, path: Path, samples: Sequence[Sample], palette: Sequence[Color],  # noqa: ANN001
             names: Sequence[str]) -> None:
    """A row per sample (image, ground truth, prediction), each row as tall as its pictures, the key right under."""
    from matplotlib.patches import Patch

    entries = key_entries([m for s in samples for m in (s.label, s.pred)], names, palette)
    key = KEY_ROW * math.ceil(len(entries) / LEGEND_COLUMNS) + 0.15 if entries else 0.0
    rows = [PANEL * s.image.shape[0] / s.image.shape[1] for s in samples]  # each picture's height
    width = 3 * PANEL + 4 * MARGIN
    height = sum(rows) + len(samples) * (TITLE + MARGIN) + MARGIN + key
    fig = plt.figure(figsize=(width, height))
    top = height - MARGIN
    for s, h in zip(samples, rows, strict=True):
        top -= TITLE + h
        for col, (img, title) in enumerate(zip((s.image, colorize(s.label, palette), colorize(s.pred, palette)),
                                               (f"{shown(s.name)} · mIoU {_pct(s.miou)}", "ground truth", "prediction"),
                                               strict=True)):
            ax = fig.add_axes(((MARGIN + col * (PANEL + MARGIN)) / width, top / height, PANEL / width, h / height))
            ax.imshow(img, interpolation="nearest", aspect="auto")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        top -= MARGIN
    handles = [Patch(facecolor=np.asarray(color) / 255, edgecolor="black", linewidth=0.3, label=name)
               for name, color in entries]
    if handles:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, key / height),
                   ncol=min(LEGEND_COLUMNS, len(handles)), fontsize=8, frameon=False)
    _save(plt, fig, path)


def sample_grid(samples: Sequence[Sample], palette: Sequence[Color]) -> np.ndarray:
    """One H×W×3 uint8 picture: a row per sample of its image, ground truth and prediction in the dataset's colours
    (ignored pixels black), rows padded to the widest."""
    rows = [np.concatenate([s.image, colorize(s.label, palette), colorize(s.pred, palette)], axis=1) for s in samples]
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows], axis=0)
