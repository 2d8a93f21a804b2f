"""Evaluation over a whole split: the test protocol on every image, one confusion matrix, the scores.

Unreadable samples are reported and skipped, never fatal: the caller gets their messages in `failures`.
Under torchrun every process evaluates its own shard of the split (each image exactly once) and the confusion
matrices are summed, so every process ends with the same scores.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from pspnet.classes import IGNORE_INDEX, DatasetInfo
from pspnet.data.check import absent_classes
from pspnet.data.imageops import read_label
from pspnet.data.lists import spread_evenly
from pspnet.data.loader import leave_stop_signals_to_the_main_process
from pspnet.distributed import Distributed, all_reduce_sum, gather_lists, join, processes_of, shard_indices
from pspnet.engine.inference import Forward, InferenceSettings, fill_batches, segment_and_confidence
from pspnet.engine.metrics import ConfusionMatrix, ImageScore, Scores, UnscoredValues, image_score
from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar


@dataclass
class Sample:
    """One evaluated image kept for the report: RGB H×W×3, ground truth and prediction H×W, its own mIoU."""

    name: str
    image: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    miou: float = float("nan")


@dataclass
class Evaluation:
    scores: Scores
    matrix: torch.Tensor  # C×C, rows ground truth, columns prediction
    images: int  # how many were scored
    samples: list[Sample] = field(default_factory=list)  # spread evenly over the images (the report's grid)
    worst: list[Sample] = field(default_factory=list)  # the lowest per-image mIoU, worst first
    failures: list[str] = field(default_factory=list)
    per_image: list[ImageScore] = field(default_factory=list)  # every scored image's own scores, in split order
    ignored: int = 0  # ground-truth pixels of the ignore index, skipped
    unscored: list[int] = field(default_factory=list)  # ground-truth values of skipped images: no class, not ignored
    unscored_beside_ignored: bool = False  # ... in images that hold the ignore index too
    interrupted: bool = False  # `stop` said so before every image was scored: the scores are a part's

    def absent_classes_note(self, names: Sequence[str], ignore_index: int, hint: bool, override: bool = False
                            ) -> str | None:
        """A note when classes appear in no ground truth, with the likely cause when pixels were ignored (`hint`:
        labels that `data.label_values` could recode, e.g. masks saved 0/255; `override`: named as a command-line
        override): a perfect-looking score may then count the background alone."""
        if not 0 <= ignore_index < 1 << 16:
            return None
        counts = np.zeros(max(len(names), ignore_index + 1), dtype=np.int64)
        counts[: len(names)] = self.matrix.sum(dim=1).numpy()
        counts[ignore_index] += self.ignored
        return absent_classes(counts, names, ignore_index, "ground-truth", hint, override)


T = TypeVar("T")


class _Guarded(Dataset):
    """Items of `dataset`, with a PSPNetError turned into {"error": message} so one bad file stops nothing."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Tensors as numpy arrays: a worker's arrays come through the loader's pipe, where its tensors came as file
        descriptors from a thread of the main process, which printed a traceback when a SIGTERM to the process group
        stopped a worker in the middle of a transfer (`as_tensors` turns them back)."""
        try:
            item = self.dataset[i]
        except PSPNetError as e:
            return {"error": str(e)}
        return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in item.items()}


def as_tensors(item: dict[str, Any]) -> dict[str, Any]:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}


def _unchanged(item: T) -> T:  # the loader's collate: the item as the worker made it
    return item


def _with_gaps(group: list[dict[str, Any]], preds: Sequence[T]) -> list[T | None]:
    """The predictions of a group's readable items, None in the places of its unreadable ones."""
    found = iter(preds)
    return [None if "error" in item else next(found) for item in group]


def evaluate(forward: Forward, dataset: Any, settings: InferenceSettings, info: DatasetInfo,
             device: torch.device | str = "cpu", ignore_index: int = IGNORE_INDEX, workers: int = 0,
             num_samples: int = 0,
             on_prediction: Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor | None], None] | None = None,
             progress: bool = True, processes: Distributed | None = None, confidence: bool = False,
             stop: Callable[[], bool] | None = None) -> Evaluation:
    """Score `forward` on every item of `dataset` ({"image": uint8 3×H×W, "label": H×W, "name": str}).

    `on_prediction(name, image, pred, confidence)` is called for each image this process evaluates (e.g. to save
    PNGs; `confidence`: the predicted classes' probabilities H×W with `confidence`, else None). For the
    report, `num_samples` images spread evenly over the set are kept, and the `num_samples` with the lowest
    per-image mIoU. With `processes` (under torchrun) this process evaluates
    its shard only; the matrix, the image count, the failures and the report's images (those one process would keep,
    as many as the process asking for most wants) are then those of the whole split, on every process. Every process
    must call it (it ends with collective calls).
    `stop()`, asked before each group of images, ends the loop early when true (a training run asked to stop while
    it validates): the result is then marked `interrupted` on the processes that stopped.
    """
    cm = ConfusionMatrix(info.num_classes, ignore_index, device)
    result = Evaluation(cm.compute(), cm.matrix, 0)
    whole = len(dataset)
    positions = range(whole)  # each item's place in the whole split
    shared = processes is not None and processes.enabled
    if shared:
        positions = shard_indices(whole, processes)
        dataset = Subset(dataset, positions)
        # The report's images are chosen over the whole split, so every process keeps its candidates, however many
        # the process that writes the report asked for.
        num_samples = max(gather_lists([num_samples], processes))
    per_image: list[tuple[int, ImageScore]] = []
    # A scheduler's SIGTERM to the process group killed the workers, and the loader's complaint about that came
    # after the command's own "interrupted" (a traceback of 100 lines): the main process decides, as in training.
    loader = DataLoader(_Guarded(dataset), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_unchanged, worker_init_fn=leave_stop_signals_to_the_main_process)
    picks = set(spread_evenly(whole, num_samples))  # places in the whole split
    kept: list[tuple[int, Sample]] = []
    worst: list[tuple[float, int, Sample]] = []  # a max-heap on (mIoU, place) (negated), the num_samples lowest
    position = -1
    bar = progress_bar(total=len(dataset), desc="eval", unit="img", disable=not progress, leave=False)
    items = (as_tensors(item) for item in loader)
    for group in fill_batches(items, settings, lambda item: None if "error" in item else item["image"].shape[1:]):
        if stop is not None and stop():
            result.interrupted = True
            break
        good = [item for item in group if "error" not in item]
        result.failures.extend(item["error"] for item in group if "error" in item)
        found = segment_and_confidence(forward, [item["image"] for item in good], settings, info.mean, info.std,
                                       device, confidence)
        for item, pair in zip(group, _with_gaps(group, found), strict=True):
            position += 1
            if pair is None:
                continue
            pred, certainty = pair
            label = item["label"]
            try:
                counts = cm.update(pred, label, source=item.get("label_path", item["name"]))  # ground truth named
            except PSPNetError as e:
                result.failures.append(str(e))
                if isinstance(e, UnscoredValues):
                    result.unscored = sorted({*result.unscored, *e.values})
                    result.unscored_beside_ignored |= e.ignored
                continue
            result.images += 1
            if on_prediction is not None:
                on_prediction(item["name"], item["image"], pred, certainty)
            score = image_score(item["name"], counts)
            per_image.append((positions[position], score))
            if not num_samples:
                continue
            miou, place = score.miou, positions[position]
            picked = place in picks
            ranks = not math.isnan(miou) and (len(worst) < num_samples or -worst[0][0] >= miou)
            if picked or ranks:  # only the images a grid keeps are copied out
                sample = Sample(item["name"], item["image"].permute(1, 2, 0).numpy(), label.numpy().astype(np.uint8),
                                pred.cpu().numpy().astype(np.uint8), miou)
                if picked:
                    kept.append((place, sample))
                if ranks:
                    heapq.heappush(worst, (-miou, -place, sample))  # of equal ones, the first places kept
                    if len(worst) > num_samples:
                        heapq.heappop(worst)
        bar.update(len(group))
    bar.close()
    lowest = [(-miou, -place, sample) for miou, place, sample in worst]  # (mIoU, place, sample)
    if shared and num_samples:  # the lowest of all processes' candidates, then only those images sent
        chosen = set(sorted(gather_lists([entry[:2] for entry in lowest], processes))[:num_samples])
        lowest = gather_lists([entry for entry in lowest if entry[:2] in chosen], processes)
        kept = gather_lists(kept, processes)
    result.worst = [sample for *_, sample in sorted(lowest, key=lambda entry: entry[:2])]
    result.samples = [sample for _, sample in sorted(kept, key=lambda entry: entry[0])]
    if shared:
        all_reduce_sum(cm.matrix, processes)
        totals = all_reduce_sum(torch.tensor([result.images, cm.ignored], device=cm.matrix.device), processes)
        result.images, cm.ignored = (int(v) for v in totals.tolist())
        result.failures = gather_lists(result.failures, processes)
        result.unscored = sorted(set(gather_lists(result.unscored, processes)))
        result.unscored_beside_ignored = any(gather_lists([result.unscored_beside_ignored], processes))
        per_image = gather_lists(per_image, processes)
    result.per_image = [score for _, score in sorted(per_image, key=lambda entry: entry[0])]
    result.scores = cm.compute()
    result.matrix = cm.matrix.cpu()
    result.ignored = cm.ignored
    return result


FIRST_LABELS = 3  # read before an evaluation: where none of them reads, nothing is evaluated


def first_label_failures(dataset: Any, num_classes: int, ignore_index: int) -> list[PSPNetError]:
    """The first `FIRST_LABELS` pairs of `dataset` read as the evaluation reads them, before it runs: their errors
    where every one fails (ground truth in colours, a void value of its own: `UnscoredValues`), else none. An
    evaluation would otherwise run the network on each image and then skip it, to score nothing."""
    failures: list[PSPNetError] = []
    for i in range(min(FIRST_LABELS, len(dataset))):
        try:  # the label alone: a corrupt image is that image's problem, said when the evaluation reaches it
            label = torch.from_numpy(read_label(dataset.pairs[i].label, dataset.label_coding))
            ConfusionMatrix(num_classes, ignore_index).update(torch.zeros_like(label), label,
                                                              str(dataset.pairs[i].label))
        except PSPNetError as e:
            failures.append(e)
            continue
        return []
    return failures


def evaluate_folders(model: torch.nn.Module, images: str | Path, labels: str | Path,
                     settings: InferenceSettings | Mapping[str, Any] | None = None,
                     device: torch.device | str | None = None,
                     ignore_index: int = IGNORE_INDEX, label_suffix: str = ".png",
                     label_values: Sequence[int | Sequence[int]] | None = None,
                     ignore_values: Sequence[int] = (), shard: bool = False) -> Evaluation:
    """`pspnet.evaluate`: a model (`pspnet.load`'s, or any PSPNet with its `info`) scored on the images of a folder
    against the labels (class indices, `ignore_index` skipped) of another, by the test protocol the model was
    validated with in training, else its dataset's (`InferenceSettings.for_model`), unless `settings` says
    otherwise, fp32 with BatchNorm folded, on `device` (default: where the weights are). As `pspnet eval --images
    --labels` does; an image that cannot be scored raises PSPNetError naming it.
    `label_values`: the value of each class in the labels (as `data.label_values`, e.g. [0, 255] for masks; default:
    those the model was trained with, where it records them, else the class indices); a class that appears in no
    label is a warning (a 0/255 mask read as indices would score the background alone). `ignore_values`: the values
    of unlabelled pixels besides `ignore_index` (as `data.ignore_values`, e.g. [11] for SegNet's CamVid void),
    with `label_values` or, without them, beside the class indices.
    `shard=True` in a script of many processes (under torchrun, or in a process group the script started): each
    process scores its share of the images and every process returns the whole folder's result, as `pspnet eval`
    under torchrun does; every process must call it. A process group started for the call is left at its end; one
    the script started stays. In one process it changes nothing.

        result = pspnet.evaluate(model, "val/images", "val/labels")
        result.scores.miou, result.scores.iou       # and result.per_image, result.matrix
    """
    from pspnet.data.datasets import SegmentationDataset
    from pspnet.data.label_values import LabelValues, beside_indices, no_class_note, parse_values, shown_values
    from pspnet.data.lists import pair_folders
    from pspnet.engine.label_formats import trained_label_coding
    from pspnet.engine.recipe import api_forward

    forward, device = api_forward(model, device)
    info: DatasetInfo = model.info  # type: ignore[assignment]
    settings = InferenceSettings.of(settings, info)
    ignored = tuple(v for (v,) in parse_values(list(ignore_values), "ignore_values", merged=False))
    if label_values is None and not ignored:  # as the model's training read its labels (a 0/255 mask model: those)
        coding = trained_label_coding(info, ignore_index)
    elif label_values is None:  # class indices, and other values of unlabelled pixels
        indices, ignored_too = beside_indices(info.num_classes, ignored, ignore_index)
        coding = LabelValues(tuple((i,) for i in indices), tuple(ignored_too), ignore_index,
                             "the class indices nor ignore_values")
    else:
        coding = LabelValues(parse_values(label_values, "label_values"), ignored, ignore_index,
                             "label_values nor ignore_values")
    dataset = SegmentationDataset(pair_folders(Path(images), Path(labels), label_suffix), info, "eval",
                                  f"{images} + {labels}", coding)
    if len(dataset) == 0:
        raise PSPNetError(f"{images}: no images to evaluate")

    def failed(messages: Sequence[str], unscored: Sequence[int]) -> PSPNetError:
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        if not unscored:
            return PSPNetError(f"{messages[0]}{more}")
        where = messages[0].split("ground-truth value", 1)[0].removesuffix(": ")  # the label's path: the note says
        # what its own words said, and how to ignore the values
        note = no_class_note(unscored, info.num_classes, ignore_index, what="ground-truth",
                             ignoring=f"ignore_values=[{shown_values(unscored)}]")
        return PSPNetError(f"{where}{more}: {note}")

    if first := first_label_failures(dataset, info.num_classes, ignore_index):  # before the network runs
        raise failed([str(e) for e in first], sorted({v for e in first if isinstance(e, UnscoredValues)
                                                      for v in e.values}))
    place = partial(join, torch.device(device), "call pspnet.evaluate(shard=True)")
    with processes_of(place) if shard else nullcontext(None) as processes:
        result = evaluate(forward, dataset, settings, info, device, ignore_index=ignore_index, progress=False,
                          processes=processes)
    if result.failures:  # every process's, on every process
        raise failed(result.failures, result.unscored)
    first = processes is None or processes.is_main
    if first and (note := result.absent_classes_note(info.classes, ignore_index, hint=False)):
        if result.ignored and coding is None:
            note += (f"; {result.ignored} pixels are {ignore_index}, the ignore index: if {ignore_index} marks a class "
                     f"(a mask saved as 0/{ignore_index}), pass label_values=[0, {ignore_index}]")
        warnings.warn(f"{labels}: {note}", stacklevel=2)
    return result


def format_table(scores: Scores, class_names: list[str]) -> str:
    """The per-class table and the summary line, as printed by `pspnet eval` and `pspnet score`."""
    width = max([len(n) for n in class_names] + [5])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
    for name, iou, acc in zip(class_names, scores.iou, scores.acc, strict=True):
        lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
    lines.append(f"mIoU {_pct(scores.miou).strip()}  mAcc {_pct(scores.macc).strip()}  "
                 f"allAcc {_pct(scores.allacc).strip()}")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return f"{'n/a':>6}" if v != v else f"{100 * v:6.2f}"
