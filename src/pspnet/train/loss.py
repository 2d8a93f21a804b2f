"""The training loss: cross-entropy of the full-resolution logits, plus aux_weight × that of the auxiliary head."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, aux: torch.Tensor | None, labels: torch.Tensor, ignore_index: int,
                      aux_weight: float, class_weights: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, main, aux) losses in fp32; `aux` None (no aux head) counts as a zero auxiliary loss.

    With `class_weights`, each pixel's loss is weighted by its class and the mean is over the weights
    (PyTorch's weighted cross-entropy).
    """
    main = F.cross_entropy(logits.float(), labels, weight=class_weights, ignore_index=ignore_index)
    aux_loss = (
        F.cross_entropy(aux.float(), labels, weight=class_weights, ignore_index=ignore_index) if aux is not None
        else torch.zeros((), device=logits.device)
    )
    return main + aux_weight * aux_loss, main, aux_loss
