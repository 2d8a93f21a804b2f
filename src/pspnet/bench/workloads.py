"""What `pspnet bench` times: inference at batch 1 and batch N, the evaluation protocol, the trainer's own training
step and whole-image inference of a large image, each for one execution recipe; plus the synthetic inputs they
use."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pspnet.checkpoint import unwrap
from pspnet.classes import IGNORE_INDEX
from pspnet.data.augment import TrainAugment
from pspnet.data.config import DataConfig
from pspnet.data.imageops import normalize, resize_bilinear
from pspnet.distributed import single_process
from pspnet.engine.inference import Forward, InferenceSettings, infer_probabilities
from pspnet.engine.recipe import Recipe, training_model
from pspnet.model.pspnet import AUX_WEIGHT
from pspnet.train.schedule import parameter_groups
from pspnet.train.step import TrainingStep


@dataclass
class Agreement:
    """How closely a run reproduces the reference: the share of pixels with the same argmax class, and the
    relative error ‖fast − reference‖ / ‖reference‖ of the logits (probabilities for the evaluation protocol)."""

    argmax: float
    relative_error: float


def agreement(reference: torch.Tensor, other: torch.Tensor) -> Agreement:
    """Agreement over N×C×H×W (or C×H×W) outputs, classes on dimension -3."""
    reference, other = reference.float().cpu(), other.float().cpu()
    same = (reference.argmax(dim=-3) == other.argmax(dim=-3)).float().mean().item()
    error = (torch.linalg.vector_norm(other - reference) / torch.linalg.vector_norm(reference).clamp_min(1e-12))
    return Agreement(same, error.item())


def synthetic_images(count: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    """uint8 3×H×W images of smooth random colour regions plus fine noise: something with structure to segment."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        coarse = torch.rand(1, 3, max(height // 32, 2), max(width // 32, 2), generator=g) * 255
        smooth = resize_bilinear(coarse, (height, width))[0]
        noise = torch.randn(3, height, width, generator=g) * 12
        images.append((smooth + noise).round_().clamp_(0, 255).to(torch.uint8))
    return images


def synthetic_labels(count: int, height: int, width: int, num_classes: int, seed: int) -> torch.Tensor:
    """int64 N×H×W label maps of blobs (argmax of a smooth random field), a few pixels ignored (255)."""
    g = torch.Generator().manual_seed(seed)
    field = torch.rand(count, num_classes, max(height // 16, 2), max(width // 16, 2), generator=g)
    labels = resize_bilinear(field, (height, width)).argmax(dim=1)
    labels[:, :2] = IGNORE_INDEX
    return labels


def normalized_batch(images: list[torch.Tensor], mean: tuple[float, ...] | list[float],
                     std: tuple[float, ...] | list[float]) -> torch.Tensor:
    return normalize(torch.stack(images).float(), mean, std)


Work = Callable[[], torch.Tensor]


def inference_work(forward: Forward, batch: torch.Tensor, device: torch.device) -> Work:
    """One forward pass on `batch` (N×3×h×w, normalised), returning the logits."""
    batch = batch.to(device)
    return lambda: forward(batch)


def protocol_work(forward: Forward, images: list[torch.Tensor], settings: InferenceSettings,
                  mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float],
                  device: torch.device) -> Work:
    """The whole test protocol (`infer_probabilities`) over `images`, returning their stacked probabilities."""
    return lambda: torch.stack(infer_probabilities(forward, images, settings, mean, std, device))


def training_work(model: nn.Module, recipe: Recipe, images: list[torch.Tensor], labels: list[torch.Tensor],
                  device: torch.device, seed: int, compile_loss: bool | None = None, fused_sgd: bool = False
                  ) -> tuple[Work, list[torch.Tensor]]:
    """The trainer's own optimiser step (`pspnet.train.step.TrainingStep`, as `pspnet train` runs it by `recipe`)
    on a copy of `model`: the uint8 images and labels moved to the device, the official augmentation there (random
    scale, rotation, blur, flip, crop to the image size), forward, main + 0.4 × aux cross-entropy at full
    resolution, backward, SGD with the ×10 head learning rate. Every call is iteration 0 of the same seed: the same
    augmentation and dropout masks each time. The list receives the main logits of the first step (a compiled model
    draws its dropout masks with its own generator, so its logits differ by the dropped channels).

    `compile_loss` (default: as the recipe compiles, as the trainer does) and `fused_sgd` (one fused kernel for the
    SGD update, CUDA) are levers the bench's training ablation measures one at a time."""
    net = training_model(copy.deepcopy(model), recipe, device)
    info = model.info  # type: ignore[attr-defined]
    optimizer = torch.optim.SGD(parameter_groups(unwrap(net), 1e-3, 10.0), lr=1e-3, momentum=0.9, weight_decay=1e-4,
                                **({"fused": True} if fused_sgd else {}))
    height, width = images[0].shape[1:]
    data = DataConfig(dataset="folders", num_classes=info.num_classes, crop_size=(height, width))
    step = TrainingStep(net, optimizer, TrainAugment(data, info, device), recipe, single_process(device),
                        micro=len(images), ignore_index=IGNORE_INDEX, aux_weight=AUX_WEIGHT, seed=seed,
                        compile_loss=recipe.compile if compile_loss is None else compile_loss, keep_logits=True)
    stream = itertools.repeat({"image": images, "label": labels})
    first: list[torch.Tensor] = []

    def work() -> torch.Tensor:
        loss = torch.tensor(step(stream, 0)["loss"])
        if not first and step.logits is not None:
            first.append(step.logits.cpu())
        return loss

    return work, first
