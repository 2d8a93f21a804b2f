"""One optimiser step of the paper's recipe: the code `pspnet train` runs and `pspnet bench` times.

Augmentation on the device, forward by the execution recipe (precision, channels_last, compile), main + aux_weight ×
auxiliary cross-entropy at full resolution, backward over `accumulate` micro-batches, SGD. The randomness is a
function of (seed, rank, iteration), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from pspnet.data.augment import Augment
from pspnet.data.loader import to_device
from pspnet.distributed import Distributed, all_reduce_mean
from pspnet.engine.recipe import Recipe, autocast, cudnn_autotune
from pspnet.train.loss import segmentation_loss

Batch = dict[str, list[Any]]


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (seed, rank, iteration, ...), stable across runs and machines."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


class TrainingStep:
    """`step(stream, iteration)` runs one optimiser step on `accumulate` micro-batches from `stream` (collated
    {"image": [uint8 3×H×W], "label": [H×W]} lists, as the loader gives them) and returns the losses averaged over
    all processes. `model` is already prepared by `engine.recipe.training_model` (on the device, memory format,
    DDP, compiled); `recipe` supplies the autocast around its forward.

    `compile_loss`: run the loss through `torch.compile` too (the fast recipe's choice when it compiles): the
    upcast to fp32, log-softmax and the pixel mean become fused reductions over the full-resolution logits, where
    eager execution writes an fp32 copy and an fp32 log-probability map of them, each as large as the logits again.
    `keep_logits`: keep the last micro-batch's main logits in `self.logits` (the bench compares recipes with it).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, augment: Augment, recipe: Recipe,
                 processes: Distributed, *, micro: int, accumulate: int = 1, ignore_index: int = 255,
                 aux_weight: float = 0.4, class_weights: torch.Tensor | None = None, seed: int = 0,
                 compile_loss: bool = False, keep_logits: bool = False) -> None:
        self.model, self.optimizer, self.augment, self.recipe = model, optimizer, augment, recipe
        self.d = processes
        self.micro, self.accumulate = micro, accumulate
        self.ignore_index, self.aux_weight, self.class_weights = ignore_index, aux_weight, class_weights
        self.seed = seed
        self.memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
        self.keep_logits = keep_logits
        self.loss = torch.compile(segmentation_loss) if compile_loss else segmentation_loss
        self.logits: torch.Tensor | None = None

    def __call__(self, stream: Iterator[Batch], iteration: int) -> dict[str, float]:
        with cudnn_autotune(self.recipe):  # forward and backward convolutions alike
            return self._step(stream, iteration)

    def _step(self, stream: Iterator[Batch], iteration: int) -> dict[str, float]:
        d = self.d
        totals = torch.zeros(3, device=d.device)
        for micro_index in range(self.accumulate):
            batch = to_device(next(stream), d.device)
            generator = torch.Generator().manual_seed(mix_seed(self.seed, iteration))
            # Each sample's row in the global batch, in the sampler's order (shard index j of rank r is global
            # position j·W + r): its augmentation is then the same whatever the processes and accumulation steps.
            rows = [(micro_index * self.micro + i) * d.world_size + d.rank for i in range(len(batch["image"]))]
            images, labels = self.augment(batch["image"], batch["label"], generator, rows=rows)
            images = images.contiguous(memory_format=self.memory_format)
            # Dropout masks: a function of (seed, rank, iteration, micro-batch), drawn right before the forward, after
            # everything else that may touch the global generator (a new epoch's DataLoader iterator draws from it).
            torch.manual_seed(mix_seed(self.seed, d.rank, iteration, micro_index))
            sync = micro_index == self.accumulate - 1 or not d.enabled
            no_sync = nullcontext() if sync else self.model.no_sync()  # type: ignore[operator]
            if self.recipe.compile and self.recipe.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # a new step: CUDA graphs may reuse the last one's buffers
            with no_sync, autocast(self.recipe, d.device):
                logits, aux = self.model(images)
            loss, main, aux_loss = self.loss(logits, aux, labels, self.ignore_index, self.aux_weight,
                                             self.class_weights)
            with nullcontext() if sync else self.model.no_sync():  # type: ignore[operator]
                (loss / self.accumulate).backward()
            totals += torch.stack([loss.detach(), main.detach(), aux_loss.detach()]) / self.accumulate
            if self.keep_logits:
                self.logits = logits.detach().float().clone()  # not a CUDA graph's buffer, which the next step reuses
        totals = all_reduce_mean(totals, d)
        loss_value, main_value, aux_value = totals.tolist()
        if math.isfinite(loss_value):  # the caller stops the run; the weights stay those of the last good step
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss_value, "loss_main": main_value, "loss_aux": aux_value}
