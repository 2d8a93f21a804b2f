"""Adaptive average pooling as two small matrix products: exact, and exportable for any input size.

`F.adaptive_avg_pool2d` exports to ONNX only when the input size is known and divisible by the output size (the
classic PSPNet export failure). Here bin i along an axis of length L covers [floor(i·L/b), ceil((i+1)·L/b)), the
same bins as PyTorch's kernel, and pooling is P_h · X · P_wᵀ, where P averages each bin's rows. P is built from
`arange(L)` comparisons, so a traced or exported graph computes it from the runtime size.
"""

from __future__ import annotations

import torch


def bin_averaging_matrix(length: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The bins×length matrix whose row i averages positions floor(i·L/b) ≤ p < ceil((i+1)·L/b)."""
    i = torch.arange(bins, device=device).unsqueeze(1)
    start = torch.div(i * length, bins, rounding_mode="floor")
    end = torch.div((i + 1) * length + bins - 1, bins, rounding_mode="floor")
    p = torch.arange(length, device=device).unsqueeze(0)
    inside = (p >= start) & (p < end)
    return inside.to(dtype) / (end - start).to(dtype)


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """What `F.adaptive_avg_pool2d(x, bins)` computes for a float N×C×H×W tensor, with only exportable ops."""
    rows = bin_averaging_matrix(x.shape[-2], bins, x.dtype, x.device)
    cols = bin_averaging_matrix(x.shape[-1], bins, x.dtype, x.device)
    # Each product has the 2-D matrix on the right, so torch runs it as one large GEMM over all N·C·rows: as fast as
    # F.adaptive_avg_pool2d. (rows @ x would broadcast into N·C tiny matrix products, several times slower.)
    y = torch.matmul(x, cols.transpose(0, 1))  # N×C×H×b
    return torch.matmul(y.transpose(-1, -2), rows.transpose(0, 1)).transpose(-1, -2)  # N×C×b×b
