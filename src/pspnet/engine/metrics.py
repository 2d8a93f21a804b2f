"""The one scoring implementation: a confusion matrix accumulated over a whole split, and the scores read from it.

Used by `pspnet eval`, `pspnet score` and the trainer's periodic validation. Rows are ground truth, columns are
predictions; pixels whose ground truth is the ignore index are skipped.

Classes absent from both prediction and ground truth (union 0) have an undefined IoU: it is NaN and left out of
mIoU. Likewise a class absent from the ground truth has an undefined accuracy (NaN, left out of mAcc). The official
code instead divides by `U + 1e-10`, giving such classes 0 and counting them in the mean; on a split where every
class occurs in the ground truth both rules give the same numbers. See docs/evaluation.md.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import torch

from pspnet.classes import IGNORE_INDEX
from pspnet.errors import PSPNetError


class UnscoredValues(PSPNetError):
    """Ground truth holding values that are neither a class nor the ignore index (`values`, sorted); `ignored`:
    it holds the ignore index too."""

    def __init__(self, message: str, values: list[int], ignored: bool) -> None:
        super().__init__(message)
        self.values, self.ignored = values, ignored


@dataclass
class Scores:
    """Dataset-level scores. Per-class lists hold NaN where a class is undefined (see the module docstring)."""

    miou: float
    macc: float
    allacc: float
    iou: list[float]
    acc: list[float]
    intersection: list[int]
    union: list[int]
    target: list[int]

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready: `mIoU`, `mAcc`, `allAcc`, per-class `IoU` and `Acc` lists (NaN → null)."""
        out: dict[str, Any] = {
            "mIoU": _json_float(self.miou),
            "mAcc": _json_float(self.macc),
            "allAcc": _json_float(self.allacc),
            "IoU": [_json_float(v) for v in self.iou],
            "Acc": [_json_float(v) for v in self.acc],
            "intersection": self.intersection,
            "union": self.union,
            "target": self.target,
        }
        if class_names is not None:
            out["classes"] = list(class_names)
        return out


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else v


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def scores_from_matrix(matrix: torch.Tensor) -> Scores:
    """Scores from a C×C confusion matrix (rows ground truth, columns prediction)."""
    m = matrix.detach().to("cpu", torch.float64)
    intersection = m.diagonal()
    target = m.sum(dim=1)
    predicted = m.sum(dim=0)
    union = target + predicted - intersection
    iou = [float(i / u) if u > 0 else float("nan") for i, u in zip(intersection.tolist(), union.tolist(), strict=True)]
    acc = [float(i / t) if t > 0 else float("nan") for i, t in zip(intersection.tolist(), target.tolist(), strict=True)]
    total = float(target.sum())
    allacc = float(intersection.sum()) / total if total > 0 else float("nan")
    return Scores(
        miou=_nanmean(iou),
        macc=_nanmean(acc),
        allacc=allacc,
        iou=iou,
        acc=acc,
        intersection=[int(v) for v in intersection.tolist()],
        union=[int(v) for v in union.tolist()],
        target=[int(v) for v in target.tolist()],
    )


@dataclass(frozen=True)
class ImageScore:
    """One image's own scores, from its own confusion matrix: its mIoU (over the classes in its ground truth or
    prediction), pixel accuracy, labelled pixels, and its largest confusion (ground-truth class, predicted class,
    pixels; None when every pixel is right)."""

    name: str
    miou: float
    allacc: float
    pixels: int
    confused: tuple[int, int, int] | None


def image_score(name: str, counts: torch.Tensor) -> ImageScore:
    """The `ImageScore` of an image whose C×C confusion matrix is `counts`."""
    counts = counts.detach().to("cpu", torch.int64)  # one copy off the device for both readings
    scores = scores_from_matrix(counts)
    wrong = counts.clone()
    wrong.fill_diagonal_(0)
    worst = int(wrong.argmax())
    gt, pred = divmod(worst, wrong.shape[1])
    confused = (gt, pred, int(wrong[gt, pred])) if wrong[gt, pred] > 0 else None
    return ImageScore(name, scores.miou, scores.allacc, sum(scores.target), confused)


def per_image_csv(scores: list[ImageScore], class_names: list[str]) -> str:
    """CSV text, one row per image, the lowest mIoU first (images without labelled pixels last): name, mIoU, pixel
    accuracy, labelled pixels, and the largest confusion (`truth -> predicted`, and its share of the pixels)."""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["name", "mIoU", "allAcc", "labelled_pixels", "most_confused", "confused_share"])
    for s in sorted(scores, key=lambda s: (math.isnan(s.miou), s.miou, s.name)):
        confused = ("", "") if s.confused is None else (
            f"{class_names[s.confused[0]]} -> {class_names[s.confused[1]]}", f"{s.confused[2] / s.pixels:.4f}")
        rows.writerow([s.name, "" if math.isnan(s.miou) else f"{s.miou:.4f}",
                       "" if math.isnan(s.allacc) else f"{s.allacc:.4f}", s.pixels, *confused])
    return out.getvalue()


class ConfusionMatrix:
    """Accumulates a C×C int64 confusion matrix on any device with one `bincount` per update.

        cm = ConfusionMatrix(num_classes=19)
        for pred, label in batches:
            cm.update(pred, label)       # integer tensors of equal shape; label == ignore_index is skipped
        scores = cm.compute()
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device: torch.device | str = "cpu"):
        if num_classes < 1:
            raise PSPNetError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.ignored = 0  # ground-truth pixels skipped as the ignore index

    def reset(self) -> None:
        self.matrix.zero_()
        self.ignored = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor, source: str = "") -> torch.Tensor:
        """Add one prediction/ground-truth pair (or a batch) of class-index maps of the same shape.

        Ground-truth values other than 0..C-1 and the ignore index, or predictions outside 0..C-1 on counted
        pixels, raise PSPNetError (prefixed with `source`, e.g. a file name, when given). Returns the C×C counts
        this pair added (its own confusion matrix).
        """
        where = f"{source}: " if source else ""
        if pred.shape != target.shape:
            raise PSPNetError(f"{where}prediction of size {tuple(pred.shape)} and ground truth of size "
                              f"{tuple(target.shape)} differ; expected equal sizes")
        c = self.num_classes
        target = target.to(self.matrix.device, torch.int64).reshape(-1)
        pred = pred.to(self.matrix.device, torch.int64).reshape(-1)
        keep = target != self.ignore_index
        every = target.numel()
        target, pred = target[keep], pred[keep]
        if target.numel() == 0:
            self.ignored += every
            return torch.zeros_like(self.matrix)
        # One reduction for both range checks keeps GPU synchronisation to a single point.
        both = torch.cat([target, pred])
        lo, hi = torch.stack([both.min(), both.max()]).tolist()
        if lo < 0 or hi >= c:
            bad_t = target[(target < 0) | (target >= c)]
            if bad_t.numel():
                raise UnscoredValues(f"{where}ground-truth value {int(bad_t[0])} is not a class index 0..{c - 1} "
                                     f"nor the ignore index {self.ignore_index}", sorted(set(bad_t.tolist())),
                                     ignored=bool(target.numel() < every))
            bad_p = pred[(pred < 0) | (pred >= c)]
            raise PSPNetError(f"{where}predicted value {int(bad_p[0])} is not a class index 0..{c - 1}")
        counts = torch.bincount(target * c + pred, minlength=c * c).view(c, c)
        self.matrix += counts
        self.ignored += every - target.numel()
        return counts

    def compute(self) -> Scores:
        return scores_from_matrix(self.matrix)
