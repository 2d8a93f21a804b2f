"""`pspnet bench`: the reference and the fast recipe measured side by side on the same model and inputs.

For each backbone and size: inference latency at batch 1, throughput at batch N, the evaluation protocol (single
scale, flip, sliding window) and a training step, each with both recipes, their ratio and their agreement; then
optionally whole-image inference of a large image (peak memory) and the ablations, one switch at a time: inference at
batch 1, and the training step. An optional third column, the anchor (e.g. bf16 + channels_last eager on a GPU, the
best that needs no compiler), is timed in the same turns.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pspnet.bench.roofline import TRAINING_FLOP_FACTOR, forward_gflop, matmul_rates
from pspnet.bench.timing import Measurement, measure, measure_interleaved
from pspnet.bench.workloads import (
    Agreement,
    Work,
    agreement,
    inference_work,
    normalized_batch,
    protocol_work,
    synthetic_images,
    synthetic_labels,
    training_work,
)
from pspnet.classes import DatasetInfo
from pspnet.engine.inference import Forward, InferenceSettings
from pspnet.engine.recipe import OFFICIAL, Recipe, inference_forward
from pspnet.model.pspnet import PSPNet

WORKLOADS = ("infer1", "inferN", "eval", "train")
DEPTH_NAMES = {"resnet18": "18", "resnet34": "34", "resnet50": "50", "resnet101": "101", "resnet152": "152"}


@dataclass(frozen=True)
class TrainVariant:
    """One step of the training ablation: a recipe and the training-only levers (`training_work`'s)."""

    name: str
    recipe: Recipe
    compile_loss: bool = False
    fused_sgd: bool = False

    def describe(self) -> str:
        extras = (["loss compiled"] if self.compile_loss else []) + (["fused SGD"] if self.fused_sgd else [])
        return ", ".join([self.recipe.describe(), *extras])


@dataclass
class BenchConfig:
    """What to measure. Sizes are square crops (473, 713, or smaller ones on a CPU)."""

    device: torch.device
    fast: Recipe
    fast_train: Recipe
    backbones: tuple[str, ...] = ("resnet50",)
    sizes: tuple[int, ...] = (473,)
    num_classes: int = 150
    checkpoint: Path | None = None
    workloads: tuple[str, ...] = WORKLOADS
    batch_size: int = 8
    train_batch: int = 2
    repeats: int = 3
    warmup: int = 1
    whole_size: tuple[int, int] | None = None  # e.g. (1024, 2048): whole-image inference, one pass per recipe
    whole_classes: int = 19
    ablation: tuple[tuple[str, Recipe], ...] = ()  # (name, recipe) measured at batch 1, one row each
    train_ablation: tuple[TrainVariant, ...] = ()  # training steps at train_batch, one row each
    anchor: Recipe | None = None  # a third column timed with the other two (inference and training alike)
    model_settings: dict[str, object] = field(default_factory=dict)  # extra PSPNet keywords (tiny smoke models)
    seed: int = 0
    roofline: bool = True  # count the forward pass's GFLOP and time a large matrix product
    backend: str = "torch"  # what runs the "fast" column: torch (the fast recipe) or openvino (f32, or bf16)
    openvino_ir: Path | None = None  # with backend openvino: this IR (e.g. int8 from `pspnet quantize`) runs "fast"


@dataclass
class Row:
    """One workload measured with both recipes."""

    model: str
    size: str
    workload: str
    unit: str  # "s/img" (lower is better) or "img/s" (higher is better)
    reference: Measurement
    fast: Measurement
    agreement: Agreement | None
    anchor: Measurement | None = None
    flop_factor: int = 1  # GFLOP of one image = forward GFLOP × this (3 for a training step)
    fast_precision: str = "fp32"  # whose matrix-product rate the fast column is compared with

    @property
    def speedup(self) -> float:
        return self.reference.median / self.fast.median


@dataclass
class AblationRow:
    model: str
    size: str
    name: str
    recipe: str  # described
    measurement: Measurement
    agreement: Agreement
    training: bool = False  # a training step (images per second) rather than inference at batch 1
    precision: str = "fp32"


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    ablation: list[AblationRow] = field(default_factory=list)
    train_ablation: list[AblationRow] = field(default_factory=list)
    gflop: dict[str, float] = field(default_factory=dict)  # "PSPNet-50 473×473" → GFLOP of one forward pass
    matmul: dict[str, float] = field(default_factory=dict)  # "fp32" / "bf16" → this machine's GFLOP/s


Progress = Callable[[str], None]


def build_model(config: BenchConfig, backbone: str, num_classes: int) -> nn.Module:
    if config.checkpoint is not None:
        from pspnet.checkpoint import load

        return load(config.checkpoint, map_location="cpu").eval()
    torch.manual_seed(config.seed)
    return PSPNet(num_classes, backbone=backbone, **config.model_settings).eval()  # type: ignore[arg-type]


def model_name(model: nn.Module) -> str:
    backbone = getattr(getattr(model, "config", None), "backbone", "?")
    return f"PSPNet-{DEPTH_NAMES.get(backbone, backbone)}"


def run_bench(config: BenchConfig, progress: Progress = lambda _: None) -> BenchResult:
    result = BenchResult()
    if config.roofline:
        result.matmul = matmul_rates(config.device)
        progress("matrix products: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result.matmul.items()))
    backbones = ("checkpoint",) if config.checkpoint is not None else config.backbones
    for backbone in backbones:
        model = build_model(config, backbone, config.num_classes)
        reference = inference_forward(model, OFFICIAL, config.device)  # as the official code runs
        fast = fast_forward(config, model)
        for size in config.sizes:
            if config.roofline:
                result.gflop[f"{model_name(model)} {size}×{size}"] = forward_gflop(model, size, size)
            # The main table first, then the ablations: a run cut short keeps what matters most.
            result.rows.extend(size_rows(config, model, reference, fast, size, progress))
            if config.train_ablation:
                result.train_ablation.extend(training_ablation_rows(config, model, size, progress))
            if config.ablation:
                result.ablation.extend(ablation_rows(config, model, reference, size, progress))
        if config.whole_size is not None:
            result.rows.append(whole_image_row(config, backbone, progress))
    return result


def fast_forward(config: BenchConfig, model: nn.Module) -> Forward:
    """The "fast" column's engine: the fast recipe in PyTorch, or OpenVINO (the recipe's bf16 selects its bf16)."""
    if config.backend == "openvino":
        from pspnet.export.openvino import OpenVinoModel

        precision = "bf16" if config.fast.precision == "bf16" else "f32"
        # Not through the conversion cache: the bench's random models would push a user's graphs out of it.
        return OpenVinoModel(config.openvino_ir if config.openvino_ir is not None else model, precision, cache=False)
    return inference_forward(model, config.fast, config.device)


def size_rows(config: BenchConfig, model: nn.Module, reference: Forward, fast: Forward, size: int,
              progress: Progress) -> list[Row]:
    """Every workload of `config` at one size, the reference and the fast recipe timed in turns."""
    info: DatasetInfo = model.info  # type: ignore[assignment]
    name, label = model_name(model), f"{size}×{size}"
    dev = config.device
    jobs: list[tuple[str, str, int, Callable[[Forward], Work]]] = []
    if "infer1" in config.workloads:
        x1 = normalized_batch(synthetic_images(1, size, size, config.seed), info.mean, info.std)
        jobs.append(("inference, batch 1", "s/img", 1, partial(inference_work, batch=x1, device=dev)))
    if "inferN" in config.workloads:
        xn = normalized_batch(synthetic_images(config.batch_size, size, size, config.seed), info.mean, info.std)
        jobs.append((f"inference, batch {config.batch_size}", "img/s", config.batch_size,
                     partial(inference_work, batch=xn, device=dev)))
    if "eval" in config.workloads:
        images, settings = protocol_inputs(size, config.batch_size, config.seed)
        jobs.append((f"eval protocol ({settings_label(settings, images)})", "img/s", len(images),
                     partial(protocol_work, images=images, settings=settings, mean=info.mean, std=info.std,
                             device=dev)))
    anchor = inference_forward(model, config.anchor, dev) if config.anchor is not None else None
    rows = []
    for workload, unit, items, make in jobs:
        progress(f"{name} {label} {workload}: reference, fast{', anchor' if anchor else ''} in turns")
        forwards = [reference, fast] + ([anchor] if anchor is not None else [])
        measurements, outputs = measure_interleaved([make(f) for f in forwards], dev, config.repeats,
                                                    config.warmup, items)
        rows.append(Row(name, label, workload, unit, measurements[0], measurements[1],
                        agreement(outputs[0], outputs[1]), measurements[2] if anchor is not None else None,
                        fast_precision=config.fast.precision))
        progress(f"{name} {label} {workload}: {row_summary(rows[-1])}")
    if "train" in config.workloads and config.backend == "torch":  # OpenVINO is an inference engine
        rows.append(training_row(config, model, name, label, size, progress))
        progress(f"{name} {label} {rows[-1].workload}: {row_summary(rows[-1])}")
    return rows


def row_summary(row: Row) -> str:
    """One progress line's figures: each column's median and peak memory, the speed-up (kept if the run is cut)."""
    def figure(m: Measurement) -> str:
        peak = "" if m.peak_bytes is None else f", {m.peak_bytes / 2**20:.0f} MiB"
        return (f"{m.per_item:.4f} s/img" if row.unit == "s/img" else f"{m.rate:.2f} img/s") + peak
    anchor = "" if row.anchor is None else f"; anchor {figure(row.anchor)}"
    return f"reference {figure(row.reference)}; fast {figure(row.fast)}{anchor}; {row.speedup:.2f}× the reference"


def ablation_rows(config: BenchConfig, model: nn.Module, reference: Forward, size: int, progress: Progress
                  ) -> list[AblationRow]:
    """Inference at batch 1 for each (name, recipe) of `config.ablation`, timed in turns, compared with the first
    one's logits."""
    info: DatasetInfo = model.info  # type: ignore[assignment]
    name, label = model_name(model), f"{size}×{size}"
    x = normalized_batch(synthetic_images(1, size, size, config.seed), info.mean, info.std)
    calibration = [normalized_batch(synthetic_images(1, size, size, config.seed + 10 + i), info.mean, info.std)
                   for i in range(2)]  # int8 only; other images than the measured one
    works = []
    for step, recipe in config.ablation:
        progress(f"{name} {label} ablation: preparing {step}")
        forward = (reference if recipe == OFFICIAL
                   else inference_forward(model, recipe, config.device, calibration if recipe.int8 else ()))
        works.append(inference_work(forward, x, config.device))
    progress(f"{name} {label} ablation: {len(works)} recipes in turns")
    measurements, outputs = measure_interleaved(works, config.device, config.repeats, config.warmup)
    rows = [AblationRow(name, label, step, recipe.describe(), m, agreement(outputs[0], out),
                        precision=recipe.precision)
            for (step, recipe), m, out in zip(config.ablation, measurements, outputs, strict=True)]
    for row in rows:
        progress(f"{name} {label} ablation {row.name}: {row.measurement.per_item:.3f} s/img")
    return rows


def protocol_inputs(size: int, batch_size: int, seed: int) -> tuple[list[torch.Tensor], InferenceSettings]:
    """Images of size × 4/3·size (long side = base size), crop `size`: two windows each, with flips four network
    inputs per image, so `batch_size / 4` images fill one network batch."""
    width = round(size * 4 / 3)
    count = max(batch_size // 4, 1)
    settings = InferenceSettings(base_size=width, crop_size=(size, size), flip=True, batch_size=batch_size)
    return synthetic_images(count, size, width, seed + 1), settings


def settings_label(settings: InferenceSettings, images: list[torch.Tensor]) -> str:
    h, w = images[0].shape[1:]
    return f"{len(images)} img {h}×{w}, crop {settings.crop_size[0]}, flip, batch {settings.batch_size}"


def training_batch(config: BenchConfig, model: nn.Module, size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`train_batch` synthetic uint8 images and label maps of size × size."""
    info: DatasetInfo = model.info  # type: ignore[assignment]
    n = config.train_batch
    images = synthetic_images(n, size, size, config.seed + 2)
    labels = list(synthetic_labels(n, size, size, info.num_classes, config.seed + 3).to(torch.uint8))
    return images, labels


def training_row(config: BenchConfig, model: nn.Module, name: str, label: str, size: int, progress: Progress) -> Row:
    images, labels = training_batch(config, model, size)
    train_model = copy.deepcopy(model).train()
    recipes = [OFFICIAL, config.fast_train] + ([config.anchor] if config.anchor is not None else [])
    works, firsts = zip(*(training_work(train_model, r, images, labels, config.device, config.seed) for r in recipes),
                        strict=True)
    progress(f"{name} {label} training: reference, fast{', anchor' if config.anchor else ''} in turns")
    measurements, _ = measure_interleaved(list(works), config.device, config.repeats, config.warmup, len(images))
    return Row(name, label, f"training step, batch {len(images)}", "img/s", measurements[0], measurements[1],
               agreement(firsts[0][0], firsts[1][0]), measurements[2] if config.anchor is not None else None,
               flop_factor=TRAINING_FLOP_FACTOR, fast_precision=config.fast_train.precision)


def training_ablation_rows(config: BenchConfig, model: nn.Module, size: int, progress: Progress
                           ) -> list[AblationRow]:
    """The training step for each variant of `config.train_ablation`, timed in turns; agreement of the first
    step's logits with the first variant's (dropout masks differ once compiled, so this is reported, not checked)."""
    name, label = model_name(model), f"{size}×{size}"
    images, labels = training_batch(config, model, size)
    train_model = copy.deepcopy(model).train()
    works, firsts = [], []
    for variant in config.train_ablation:
        progress(f"{name} {label} training ablation: preparing {variant.name}")
        work, first = training_work(train_model, variant.recipe, images, labels, config.device, config.seed,
                                    compile_loss=variant.compile_loss, fused_sgd=variant.fused_sgd)
        works.append(work)
        firsts.append(first)
    progress(f"{name} {label} training ablation: {len(works)} variants in turns")
    measurements, _ = measure_interleaved(works, config.device, config.repeats, config.warmup, len(images))
    rows = [AblationRow(name, label, v.name, v.describe(), m, agreement(firsts[0][0], first[0]), training=True,
                        precision=v.recipe.precision)
            for v, m, first in zip(config.train_ablation, measurements, firsts, strict=True)]
    for row in rows:
        peak = row.measurement.peak_bytes
        progress(f"{name} {label} training ablation {row.name}: {row.measurement.rate:.2f} img/s"
                 + ("" if peak is None else f", {peak / 2**20:.0f} MiB"))
    return rows


def whole_image_row(config: BenchConfig, backbone: str, progress: Progress) -> Row:
    """One image of `whole_size` segmented in one piece (protocol mode "whole", no flip), once per recipe; the
    figure that matters is the peak memory. The fast recipe is not compiled here: a graph for one image size
    costs more to build than it saves on one image."""
    assert config.whole_size is not None
    h, w = config.whole_size
    model = build_model(config, backbone, config.whole_classes)
    info: DatasetInfo = model.info  # type: ignore[assignment]
    name = model_name(model)
    image = synthetic_images(1, h, w, config.seed + 4)
    settings = InferenceSettings(base_size=None, mode="whole", flip=False, batch_size=1)
    outputs, measurements = [], []
    for recipe in (OFFICIAL, replace(config.fast, compile=False)):
        progress(f"{name} whole image {h}×{w}: {recipe.describe()}")
        forward = inference_forward(model, recipe, config.device)
        m, out = measure(protocol_work(forward, image, settings, info.mean, info.std, config.device),
                         config.device, repeats=1, warmup=0)
        measurements.append(m)
        outputs.append(out)
        del forward
    return Row(name, f"{h}×{w}", f"whole image, {info.num_classes} classes", "s/img", measurements[0],
               measurements[1], agreement(outputs[0], outputs[1]))
