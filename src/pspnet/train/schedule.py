"""Parameter groups (×10 lr on the new layers) and the poly learning-rate decay, as the official recipe."""

from __future__ import annotations

import torch
from torch import nn

from pspnet.model.pspnet import PSPNet


def parameter_groups(model: PSPNet, lr: float, head_lr_mult: float) -> list[dict]:
    """Backbone at `lr`; pyramid pooling, head and auxiliary head at `lr × head_lr_mult` (0.01 and 0.1 officially)."""
    new_layers: list[nn.Module] = [model.ppm, model.head] + ([model.aux_head] if model.aux_head is not None else [])
    return [
        {"params": list(model.backbone.parameters()), "lr": lr, "base_lr": lr, "name": "backbone"},
        {"params": [p for m in new_layers for p in m.parameters()], "lr": lr * head_lr_mult,
         "base_lr": lr * head_lr_mult, "name": "head"},
    ]


def poly_factor(iteration: int, max_iter: int, power: float) -> float:
    """(1 − iteration / max_iter)^power, the factor applied to the base lr before step `iteration` (0-based)."""
    return (1.0 - min(iteration, max_iter) / max_iter) ** power


def set_poly_lr(optimizer: torch.optim.Optimizer, iteration: int, max_iter: int, power: float) -> float:
    factor = poly_factor(iteration, max_iter, power)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
