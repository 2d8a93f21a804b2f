"""A training run's settings: model, data, the recipe and the validation protocol, from one YAML file."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet.checkpoint import read_metadata
from pspnet.configfile import apply_overrides, from_dict, load_yaml, origin_of
from pspnet.data.config import DataConfig, check_root_here
from pspnet.data.datasets import dataset_info
from pspnet.engine.inference import DATASET_SETTINGS, InferenceSettings
from pspnet.engine.recipe import Recipe
from pspnet.errors import PSPNetError
from pspnet.files import ImageNotModel
from pspnet.model.config import ModelConfig
from pspnet.run_folder import run_model
from pspnet.train.class_weights import check_class_weights
from pspnet.train.init_weights import follow_init

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainSettings:
    """The official recipe by default: SGD 0.9 / 1e-4, lr 0.01 (×10 on the new layers), poly 0.9, batch 16, aux 0.4."""

    out_dir: Path = Path("runs/pspnet")
    epochs: int = 0  # the run's length in epochs, or
    iterations: int = 0  # in optimiser steps (wins when both are set)
    batch_size: int = 16  # global: over all processes and accumulation steps
    accumulate: int = 1  # gradient accumulation steps per optimiser step
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    power: float = 0.9
    aux_weight: float = 0.4
    # per-class cross-entropy weights: null (the paper), "median_frequency" or "sqrt_median_frequency" (computed from
    # the train labels, pspnet.train.class_weights), or a list of one weight per class
    class_weights: str | list[float] | None = None
    # "bf16": autocast on CUDA and CPU; "auto": bf16 on CPUs with fast bf16 units, else fp32 (training_precision)
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    matmul_upsample: bool = False  # the full-resolution upsampling as matrix products (pspnet.model.upsample)
    # the head's convolution takes the pyramid's branches at their bins, before upsampling (pspnet.model.pyramid_conv)
    pyramid_at_bins: bool = False
    # the backbone keeps only each block's input and recomputes the rest in the backward pass: less memory (bigger
    # crops or batches per GPU), about one more backbone forward of compute (pspnet.model.recompute)
    activation_checkpointing: bool = False
    # the fastest training recipe measured for the device (engine.recipe.fast_recipe): on GPUs bf16 + channels_last +
    # compile + matmul_upsample; on CPUs pyramid_at_bins and what precision "auto" picks. Instead of the switches above.
    fast: bool = False
    sync_bn: bool = True  # SyncBatchNorm across GPUs under DDP (PyTorch's SyncBN is CUDA-only)
    imagenet: str | None = None  # backbone init: a local .pth, a URL, or "torchvision"
    # start from these weights: any file or published name pspnet.load reads; the architecture follows them, the
    # classifiers start afresh for another class count (pspnet.train.init_weights)
    init: str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500  # iterations between training checkpoints
    keep_last: int = 3
    val_every: int = 0  # iterations between validations; 0: only at the end; -1: never
    val_images: int = 0  # validate on the first N val images only (0: all)
    val_samples: int = 4  # TensorBoard's image | ground truth | prediction rows at each validation (0: none)
    log_every: int = 10
    check_data: bool = True  # check every image/label pair before training
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.precision not in PRECISIONS:
            raise PSPNetError(f"train.precision = {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.val_samples < 0:
            raise PSPNetError(f"train.val_samples = {self.val_samples}; expected 0 or more")
        for name in ("batch_size", "accumulate", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise PSPNetError(f"train.{name} = {getattr(self, name)}; expected 1 or more")
        for name in ("epochs", "iterations"):
            if getattr(self, name) < 0:
                raise PSPNetError(f"train.{name} = {getattr(self, name)}; expected 0 or more")
        if not 0 < self.lr < math.inf:
            raise PSPNetError(f"train.lr = {self.lr}; expected a positive learning rate")
        for name, fits, expected in (  # NaN fails every comparison: refused too
                ("head_lr_mult", 0 < self.head_lr_mult < math.inf, "a positive multiplier of the lr"),
                ("momentum", 0 <= self.momentum < 1, "0 ≤ momentum < 1"),
                ("weight_decay", 0 <= self.weight_decay < math.inf, "0 or more"),
                ("power", 0 <= self.power < math.inf, "0 or more (0: a constant lr)"),
                ("aux_weight", 0 <= self.aux_weight < math.inf, "0 or more")):
            if not fits:
                raise PSPNetError(f"train.{name} = {getattr(self, name)}; expected {expected}")
        if self.val_every < -1:
            raise PSPNetError(f"train.val_every = {self.val_every}; expected iterations between validations, 0 (only "
                              "at the end) or -1 (never)")
        if self.val_images < 0:
            raise PSPNetError(f"train.val_images = {self.val_images}; expected 0 (all) or a number of val images")
        if self.init and self.imagenet:
            raise PSPNetError(f"train.init = {self.init} replaces every weight train.imagenet = {self.imagenet} would "
                              "set; set one of them")
        if self.fast and (chosen := [name for name, on in (
                ("precision", self.precision != "auto"), ("channels_last", self.channels_last),
                ("compile", self.compile), ("matmul_upsample", self.matmul_upsample),
                ("pyramid_at_bins", self.pyramid_at_bins)) if on]):
            raise PSPNetError(f"train.fast picks the precision, channels_last, compile, matmul_upsample and "
                              f"pyramid_at_bins for the device; set either train.fast or "
                              f"train.{', train.'.join(chosen)}, not both")

    def recipe(self, precision: str | None = None) -> Recipe:
        """How the training steps execute: the same `Recipe` that `pspnet bench` times. `precision`: the resolved
        train.precision (`engine.recipe.training_precision`), needed when it is "auto"."""
        precision = precision or self.precision
        if precision == "auto":
            raise ValueError("train.precision 'auto' must be resolved for a device first (training_precision)")
        return Recipe(precision=precision, channels_last=self.channels_last, compile=self.compile,
                      matmul_upsample=self.matmul_upsample, pyramid_at_bins=self.pyramid_at_bins,
                      activation_checkpointing=self.activation_checkpointing)


@dataclass
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    train: TrainSettings = field(default_factory=TrainSettings)
    val: InferenceSettings = field(default_factory=InferenceSettings)  # the protocol of periodic validation


def validation_defaults(data: DataConfig) -> dict[str, Any]:
    """The `val:` sizes a config leaves out: a published dataset's official protocol; for your own data (lists,
    folders), each image at its own size in windows of the training crop."""
    if data.dataset in DATASET_SETTINGS:
        base, crop = DATASET_SETTINGS[data.dataset]
        return {"base_size": base, "crop_size": list(crop)}
    return {"base_size": None, "crop_size": list(data.crop_size)}


def load_train_config(path: str | Path | Mapping[str, Any] | None, overrides: list[str] | None = None,
                      resuming: bool = False) -> TrainConfig:
    """YAML (or the same settings as a mapping) + `key=value` overrides → TrainConfig; `model.num_classes` defaults
    to the dataset's class count. `resuming`: for a run that continues from its checkpoint, which holds the weights
    train.init gave it: when those can no longer be read (deleted, or named relative to another folder), the model
    settings the run took from them are those its config.yaml recorded."""
    origins: dict[str, str] = {}
    if isinstance(path, Mapping):
        raw: dict[str, Any] = copy.deepcopy(dict(path))
        source = "config"
    else:
        raw = load_yaml(path, origins) if path is not None else {}
        source = str(path) if path is not None else "command line"
    raw = apply_overrides(raw, overrides or [], origins=origins)
    if "data" not in raw:
        raise PSPNetError(f"{source}: no data section; expected data.dataset and data.root at least")
    model = raw.setdefault("model", {})
    explicit = {key: origin_of(f"model.{key}", origins, source) for key in model} if isinstance(model, dict) else {}
    data = from_dict(DataConfig, raw["data"], source, "data.", origins)
    if path is not None and not isinstance(path, Mapping):
        check_root_here(data, Path(path), raw["train"].get("out_dir") if isinstance(raw.get("train"), dict) else None,
                        training=True)
    if isinstance(model, dict) and "num_classes" not in model:
        model["num_classes"] = dataset_info(data).num_classes
    if isinstance(val := raw.setdefault("val", {}), dict):
        for key, value in validation_defaults(data).items():
            val.setdefault(key, value)
    cfg = from_dict(TrainConfig, raw, source, origins=origins)
    if cfg.train.init:  # the architecture follows the weights the run starts from
        try:
            # A training run's folder: the model every command takes from it (the best, else the final, else the
            # latest checkpoint), recorded as that file.
            if found := run_model(Path(cfg.train.init)):
                cfg.train.init = str(found[0])
            weights = ModelConfig.from_dict(read_metadata(cfg.train.init)["model"], cfg.train.init)
        except PSPNetError as e:
            recorded = recorded_model(cfg.train.out_dir) if resuming else None
            if recorded is None:
                why = (f"{e.path}: an image, not a model's weights (a .safetensors or .pth file, a training run's "
                       "folder or a published model's name)" if isinstance(e, ImageNotModel) else e)
                raise PSPNetError(f"{origin_of('train.init', origins, source)}: train.init: {why}") from None
            weights = recorded
        cfg.model = follow_init(cfg.model, explicit, weights, cfg.train.init)
    info = dataset_info(cfg.data)
    if cfg.model.num_classes != info.num_classes:
        names = ", ".join(info.classes[:5]) + (", …" if info.num_classes > 5 else "")
        raise PSPNetError(f"{origin_of('model.num_classes', origins, source)}: model.num_classes = "
                          f"{cfg.model.num_classes}, but the data ({cfg.data.dataset}) has {info.num_classes} classes "
                          f"({names}); leave model.num_classes out to take the data's")
    try:
        check_class_weights(cfg.train.class_weights, cfg.model.num_classes)
    except PSPNetError as e:
        raise PSPNetError(f"{origin_of('train.class_weights', origins, source)}: {e}") from None
    return cfg


def recorded_model(out_dir: Path) -> ModelConfig | None:
    """The model settings a run in `out_dir` started with (its config.yaml; None when it has none to read)."""
    import yaml

    saved = out_dir / "config.yaml"
    try:
        return ModelConfig.from_dict(yaml.safe_load(saved.read_text())["model"], str(saved))
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError, PSPNetError):
        return None
