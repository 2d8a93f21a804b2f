"""State dicts: read out of a checkpoint file's content, and loaded strictly with an error that lists what does not
match."""


from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from pspnet.errors import PSPNetError

M = TypeVar("M", bound=nn.Module)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or fail with the list of missing, unexpected and mis-shaped keys."""
    check_state(model, state, source)
    model.load_state_dict(state, strict=True)


def built_holding(build: Callable[[], M], state: dict[str, torch.Tensor], source: str) -> M:
    """The module `build` makes, holding `state` (checked as `load_state_strict` checks it). It is built on the meta
    device, then given copies of the tensors of `state` in its own dtypes: no time goes to drawing random weights
    that are replaced at once (PSPNet-101 loads in half the time: BENCHMARKS.md), and the global random number
    generator is left as it was. (Copies, not the tensors themselves: a safetensors file's tensors share one buffer
    at offsets that are not 64-byte aligned, and oneDNN's kernels then round differently, 1e-6 off the saved
    model's outputs.)"""
    with torch.device("meta"):
        module = build()
    own = check_state(module, state, source)
    module.load_state_dict({k: v.to(own[k].dtype, copy=True) for k, v in state.items()}, strict=True, assign=True)
    return module


def check_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """`model`'s own state dict, once `state` has been found to hold exactly its keys and shapes; else an error that
    lists what does not match."""
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
    return own


def tensor_state(obj: Any, source: str, what: str = "a state dict") -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: the dict itself or the one under 'state_dict' (the usual training
    checkpoint layout), with DataParallel/DDP `module.` prefixes removed; anything else is an error naming `source`."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PSPNetError(f"{source}: not {what} (expected a dict of tensors, or one under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def rename_strictly(state: dict[str, torch.Tensor], rename: Callable[[str], str | None], source: str,
                    what: str) -> dict[str, torch.Tensor]:
    """`state` under our key names; a key that `rename` does not know (None) is an error naming it, never dropped."""
    renamed: dict[str, torch.Tensor] = {}
    foreign = []
    for k, v in state.items():
        new = rename(k)
        if new is None:
            foreign.append(k)
        else:
            renamed[new] = v
    if foreign:
        raise PSPNetError(f"{source}: keys that are not part of {what}: {', '.join(sorted(foreign)[:10])}")
    return renamed
