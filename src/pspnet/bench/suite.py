"""`pspnet bench`: the reference and the fast recipe measured side by side on the same model and inputs.

For each backbone and size: inference latency at batch 1, throughput at batch N, the evaluation protocol (single
scale, flip, sliding window) and a training step, each with both recipes, their ratio and their agreement; then
optionally whole-image inference of a large image (peak memory) and the ablation: one switch at a time at batch 1.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pspnet.bench.roofline import forward_gflop, matmul_gflops
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
from pspnet.engine.recipe import REFERENCE, Recipe, inference_forward
from pspnet.model.pspnet import PSPNet

WORKLOADS = ("infer1", "inferN", "eval", "train")
DEPTH_NAMES = {"resnet18": "18", "resnet34": "34", "resnet50": "50", "resnet101": "101", "resnet152": "152"}


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
    model_settings: dict[str, object] = field(default_factory=dict)  # extra PSPNet keywords (tiny smoke models)
    seed: int = 0
    roofline: bool = True  # count the forward pass's GFLOP and time a large matrix product
    backend: str = "torch"  # what runs the "fast" column: torch (the fast recipe) or openvino (f32, or bf16)


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

    @property
    def speedup(self) -> float:
        return self.reference.median / self.fast.median


@dataclass
class AblationRow:
    model: str
    size: str
    name: str
    recipe: Recipe
    measurement: Measurement
    agreement: Agreement


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    ablation: list[AblationRow] = field(default_factory=list)
    gflop: dict[str, float] = field(default_factory=dict)  # "PSPNet-50 473×473" → GFLOP of one forward pass
    matmul_gflops: float | None = None  # this machine's fp32 matrix-product speed


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
        result.matmul_gflops = matmul_gflops(config.device)
        progress(f"fp32 matrix product: {result.matmul_gflops:.0f} GFLOP/s")
    backbones = ("checkpoint",) if config.checkpoint is not None else config.backbones
    for backbone in backbones:
        model = build_model(config, backbone, config.num_classes)
        reference = inference_forward(model, REFERENCE, config.device)
        fast = fast_forward(config, model)
        for size in config.sizes:
            if config.roofline:
                result.gflop[f"{model_name(model)} {size}×{size}"] = forward_gflop(model, size, size)
            if config.ablation:
                result.ablation.extend(ablation_rows(config, model, reference, size, progress))
            result.rows.extend(size_rows(config, model, reference, fast, size, progress))
        if config.whole_size is not None:
            result.rows.append(whole_image_row(config, backbone, progress))
    return result


def fast_forward(config: BenchConfig, model: nn.Module) -> Forward:
    """The "fast" column's engine: the fast recipe in PyTorch, or OpenVINO (the recipe's bf16 selects its bf16)."""
    if config.backend == "openvino":
        from pspnet.export.openvino import OpenVinoModel

        return OpenVinoModel(model, "bf16" if config.fast.precision == "bf16" else "f32")
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
    rows = []
    for workload, unit, items, make in jobs:
        progress(f"{name} {label} {workload}: reference and fast in turns")
        (ref_m, fast_m), (ref_out, fast_out) = measure_interleaved(
            [make(reference), make(fast)], dev, config.repeats, config.warmup, items)
        rows.append(Row(name, label, workload, unit, ref_m, fast_m, agreement(ref_out, fast_out)))
        progress(f"{name} {label} {workload}: {rows[-1].speedup:.2f}× the reference")
    if "train" in config.workloads and config.backend == "torch":  # OpenVINO is an inference engine
        rows.append(training_row(config, model, name, label, size, progress))
    return rows


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
        forward = (reference if recipe == REFERENCE
                   else inference_forward(model, recipe, config.device, calibration if recipe.int8 else ()))
        works.append(inference_work(forward, x, config.device))
    progress(f"{name} {label} ablation: {len(works)} recipes in turns")
    measurements, outputs = measure_interleaved(works, config.device, config.repeats, config.warmup)
    rows = [AblationRow(name, label, step, recipe, m, agreement(outputs[0], out))
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


def training_row(config: BenchConfig, model: nn.Module, name: str, label: str, size: int, progress: Progress) -> Row:
    info: DatasetInfo = model.info  # type: ignore[assignment]
    n = config.train_batch
    images = synthetic_images(n, size, size, config.seed + 2)
    labels = list(synthetic_labels(n, size, size, info.num_classes, config.seed + 3).to(torch.uint8))
    train_model = copy.deepcopy(model).train()
    ref_work, ref_first = training_work(train_model, REFERENCE, images, labels, config.device, config.seed)
    fast_work, fast_first = training_work(train_model, config.fast_train, images, labels, config.device, config.seed)
    progress(f"{name} {label} training: reference and fast in turns")
    (ref_m, fast_m), _ = measure_interleaved([ref_work, fast_work], config.device, config.repeats, config.warmup, n)
    return Row(name, label, f"training step, batch {n}", "img/s", ref_m, fast_m,
               agreement(ref_first[0], fast_first[0]))


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
    for recipe in (REFERENCE, replace(config.fast, compile=False)):
        progress(f"{name} whole image {h}×{w}: {recipe.describe()}")
        forward = inference_forward(model, recipe, config.device)
        m, out = measure(protocol_work(forward, image, settings, info.mean, info.std, config.device),
                         config.device, repeats=1, warmup=0)
        measurements.append(m)
        outputs.append(out)
        del forward
    return Row(name, f"{h}×{w}", f"whole image, {info.num_classes} classes", "s/img", measurements[0],
               measurements[1], agreement(outputs[0], outputs[1]))
