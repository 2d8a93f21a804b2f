"""The arithmetic yardstick: how many floating-point operations a forward pass costs (counted on the meta device,
nothing computed) and how fast this machine multiplies large matrices, in fp32 (TF32 off on GPUs) and, where the
hardware has it, bf16. A recipe's achieved rate (its GFLOP per image × images per second) over the matrix-product
rate of its precision is the share of the machine's arithmetic it uses.

The matrix-product rate is the best of several sizes: one size alone can miss the peak (a 2048² fp32 product ran
at two thirds of what oneDNN's convolutions reached on an AVX-512 CPU), so the share is a yardstick, not a bound,
and it may pass 100% where convolution kernels beat the library's GEMM."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pspnet.bench.timing import synchronize
from pspnet.device import NATIVE_BF16, cpu_features

TRAINING_FLOP_FACTOR = 3  # forward + backward (gradients of inputs and of weights): three forward passes' worth


def forward_gflop(model: nn.Module, height: int, width: int) -> float:
    """GFLOP (multiply and add counted apart) of one eval-mode forward pass at height × width (convolutions and
    matrix products; the pointwise rest is negligible in count, not always in time)."""
    meta = copy.deepcopy(model).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, 3, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] | None = None,
                  repeats: int = 3) -> float:
    """The best GFLOP/s of n×n matrix products over `sizes` (default: 1024–4096 on a CPU, 4096–8192 on a GPU)."""
    if sizes is None:
        sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048, 3072)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    try:
        best = 0.0
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            torch.mm(a, b)
            synchronize(device)
            for _ in range(repeats):
                start = time.perf_counter()
                torch.mm(a, b)
                synchronize(device)
                best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
            del a, b
        return best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def matmul_rates(device: torch.device) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s}; bf16 only on GPUs and on CPUs with bf16 units (AVX-512 BF16 or AMX)."""
    rates = {"fp32": matmul_gflops(device)}
    if device.type == "cuda" or cpu_features() & NATIVE_BF16:
        rates["bf16"] = matmul_gflops(device, torch.bfloat16)
    return rates
