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
from pspnet.bench.timing import Measurement
from pspnet.bench.workloads import (
    Agreement,
    agreement,
    normalized_batch,
    synthetic_images,
    synthetic_labels,
    time_inference,
    time_protocol,
    time_training,
)
from pspnet.data.info import DatasetInfo
from pspnet.engine.fast import REFERENCE, Recipe, inference_forward
from pspnet.engine.inference import Forward, InferenceSettings
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
        fast = inference_forward(model, config.fast, config.device)
        for size in config.sizes:
            if config.roofline:
                result.gflop[f"{model_name(model)} {size}×{size}"] = forward_gflop(model, size, size)
            if config.ablation:
                result.ablation.extend(ablation_rows(config, model, reference, size, progress))
            result.rows.extend(size_rows(config, model, reference, fast, size, progress))
        if config.whole_size is not None:
            result.rows.append(whole_image_row(config, backbone, progress))
    return result


def size_rows(config: BenchConfig, model: nn.Module, reference: Forward, fast: Forward, size: int,
              progress: Progress) -> list[Row]:
    """Every workload of `config` at one size, reference and fast recipe in turn."""
    info: DatasetInfo = model.info  # type: ignore[assignment]
    name, label = model_name(model), f"{size}×{size}"
    reps, warm, dev = config.repeats, config.warmup, config.device
    jobs: list[tuple[str, str, Callable[[Forward], tuple[Measurement, torch.Tensor]]]] = []
    if "infer1" in config.workloads:
        x1 = normalized_batch(synthetic_images(1, size, size, config.seed), info.mean, info.std)
        jobs.append(("inference, batch 1", "s/img", partial(_infer, x=x1, config=config)))
    if "inferN" in config.workloads:
        xn = normalized_batch(synthetic_images(config.batch_size, size, size, config.seed), info.mean, info.std)
        jobs.append((f"inference, batch {config.batch_size}", "img/s", partial(_infer, x=xn, config=config)))
    if "eval" in config.workloads:
        images, settings = protocol_inputs(size, config.batch_size, config.seed)
        jobs.append((f"eval protocol ({settings_label(settings, images)})", "img/s",
                     partial(time_protocol, images=images, settings=settings, mean=info.mean, std=info.std,
                             device=dev, repeats=reps, warmup=warm)))
    rows = []
    for workload, unit, run in jobs:
        progress(f"{name} {label} {workload}: reference")
        ref_m, ref_out = run(reference)
        progress(f"{name} {label} {workload}: fast")
        fast_m, fast_out = run(fast)
        rows.append(Row(name, label, workload, unit, ref_m, fast_m, agreement(ref_out, fast_out)))
        progress(f"{name} {label} {workload}: {rows[-1].speedup:.2f}× the reference")
    if "train" in config.workloads:
        rows.append(training_row(config, model, name, label, size, progress))
    return rows


def _infer(forward: Forward, x: torch.Tensor, config: BenchConfig) -> tuple[Measurement, torch.Tensor]:
    return time_inference(forward, x, config.device, config.repeats, config.warmup)


def ablation_rows(config: BenchConfig, model: nn.Module, reference: Forward, size: int, progress: Progress
                  ) -> list[AblationRow]:
    """Inference at batch 1 for each (name, recipe) of `config.ablation`, compared with the first one's logits."""
    info: DatasetInfo = model.info  # type: ignore[assignment]
    name, label = model_name(model), f"{size}×{size}"
    x = normalized_batch(synthetic_images(1, size, size, config.seed), info.mean, info.std)
    rows: list[AblationRow] = []
    base: torch.Tensor | None = None
    calibration = [normalized_batch(synthetic_images(1, size, size, config.seed + 10 + i), info.mean, info.std)
                   for i in range(2)]  # int8 only; other images than the measured one
    for i, (step, recipe) in enumerate(config.ablation):
        forward = (reference if recipe == REFERENCE
                   else inference_forward(model, recipe, config.device, calibration if recipe.int8 else ()))
        progress(f"{name} {label} ablation {i + 1}/{len(config.ablation)}: {step}")
        m, out = time_inference(forward, x, config.device, config.repeats, config.warmup)
        base = out if base is None else base
        rows.append(AblationRow(name, label, step, recipe, m, agreement(base, out)))
        progress(f"{name} {label} ablation {step}: {m.per_item:.3f} s/img")
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
    images = normalized_batch(synthetic_images(n, size, size, config.seed + 2), info.mean, info.std)
    labels = synthetic_labels(n, size, size, info.num_classes, config.seed + 3)
    train_model = copy.deepcopy(model).train()
    progress(f"{name} {label} training: reference")
    ref_m, ref_out = time_training(train_model, REFERENCE, images, labels, config.device, config.repeats,
                                   config.warmup, config.seed)
    progress(f"{name} {label} training: fast")
    fast_m, fast_out = time_training(train_model, config.fast_train, images, labels, config.device, config.repeats,
                                     config.warmup, config.seed)
    return Row(name, label, f"training step, batch {n}", "img/s", ref_m, fast_m, agreement(ref_out, fast_out))


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
        m, out = time_protocol(forward, image, settings, info.mean, info.std, config.device, 1, 0)
        measurements.append(m)
        outputs.append(out)
        del forward
    return Row(name, f"{h}×{w}", f"whole image, {info.num_classes} classes", "s/img", measurements[0],
               measurements[1], agreement(outputs[0], outputs[1]))
