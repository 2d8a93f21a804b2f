"""Strict state-dict loading whose error lists what does not match."""

from __future__ import annotations

import torch
from torch import nn

from pspnet.errors import PSPNetError


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or fail with the list of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
            problems.append(f"{len(keys)} {title}: {shown}")
    if problems:
        raise PSPNetError(f"{source}: weights do not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
