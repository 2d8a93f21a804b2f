"""Activation checkpointing: a module's forward whose activations are not kept for the backward pass but computed
again there (`torch.utils.checkpoint`, non-reentrant), trading about one more forward for the memory of every
activation inside the module.

The recomputation must not count twice: BatchNorm in training mode updates its running statistics at every forward,
so after the recomputed forward each BatchNorm's running statistics (and batch count) are put back as the original
forward left them. Randomness (dropout) is replayed as PyTorch's checkpoint does by default. Under `torch.compile`
(which takes no custom context) the compiled graph applies the statistics' update once by itself (tested; on an H100
the compiled fast training step with it ran at 0.86× the speed for 4.9 GB less memory, BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def _statistics_untouched(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers inside `module` end with the running statistics (and batch count) they had before: the
    recomputed forward runs them as the original did (the same operations, so the same tensors are saved), then
    their buffers are put back."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved, strict=True):
                for b, before in zip(m.buffers(), buffers, strict=True):
                    b.copy_(before)


def recomputed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)`, its inner activations recomputed in the backward pass instead of kept."""

    def contexts() -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
        return nullcontext(), _statistics_untouched(module)

    if torch.compiler.is_compiling():  # the compiled graph applies the statistics' update once (functionalised)
        return checkpoint(module, x, use_reentrant=False)
    return checkpoint(module, x, use_reentrant=False, context_fn=contexts)
