"""The arithmetic bound: how many floating-point operations a forward pass costs (counted on the meta device,
nothing computed) and how fast this machine multiplies large fp32 matrices. Their ratio is roughly the fastest
an fp32 forward pass can be here, whatever the recipe."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pspnet.bench.timing import synchronize


def forward_gflop(model: nn.Module, height: int, width: int) -> float:
    """GFLOP (multiply and add counted apart) of one eval-mode forward pass at height × width (convolutions and
    matrix products; the pointwise rest is negligible in count, not always in time)."""
    meta = copy.deepcopy(model).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 3) -> float:
    """The best of `repeats` fp32 n×n matrix products, in GFLOP/s: a practical peak of this machine."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
