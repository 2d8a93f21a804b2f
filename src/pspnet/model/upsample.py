"""Bilinear resizing as two matrix products: the same function as `F.interpolate(mode="bilinear")`, executed on
matrix units.

PSPNet's last step upsamples C-class logits from 1/8 resolution to the input size. `F.interpolate` does it with a
gather forward and, in training, a scatter-add backward (atomics into the 1/8-resolution gradient): on an H100 that
backward took 47% of the fast training step's device time (BENCHMARKS.md, the GPU profile). Bilinear resizing is
separable and linear, out = A_h · x · A_wᵀ with A_h (H_out × H_in) and A_w (W_out × W_in) holding two non-zero
weights per row, so it is two batched matrix products, and so is its backward (A_hᵀ · g · A_w): dense GEMMs in
whatever precision autocast gives them. An execution choice (`Recipe.matmul_upsample`), like folding BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def bilinear_matrix(in_size: int | Sequence[int], out_size: int, align_corners: bool,
                    device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The out_size × in_size matrix of 1-D linear interpolation with PyTorch's source-index rule: row o holds the
    hat function 1 − |src(o) − i| around the source position, clamped to [0, in_size − 1] (so the edge rows weigh
    the edge pixel alone). Built with plain tensor ops on `device`: traceable by torch.compile, no host round trip.
    With several input sizes (a list of numbers), their matrices side by side, out_size × Σ in_size, computed at once
    (`pspnet.model.pyramid_conv`: a few graph nodes for all the pyramid's bins)."""
    exact = torch.float64 if dtype == torch.float64 else torch.float32
    dst = torch.arange(out_size, device=device, dtype=exact)[:, None]
    if isinstance(in_size, (list, tuple)):  # each column's input size, and its position in that input
        sizes: Any = torch.cat([torch.full((n,), n, device=device, dtype=exact) for n in in_size])
        taps = torch.cat([torch.arange(n, device=device, dtype=exact) for n in in_size])
    else:
        sizes, taps = in_size, torch.arange(in_size, device=device, dtype=exact)
    if align_corners:
        # out_size 1: every output at source 0. Written without a Python branch on the size, which a traced graph
        # (ONNX, TorchScript) would freeze at its example's size: 0/0 = NaN for a side of one pixel at run time.
        src = dst * ((sizes - 1) / (out_size - 1 + (out_size == 1)))
    else:
        src = (dst + 0.5) * (sizes / out_size) - 0.5
    src = src.clamp_min(0)
    src = torch.minimum(src, sizes - 1) if isinstance(sizes, torch.Tensor) else src.clamp_max(sizes - 1)
    return (1 - (src - taps).abs()).clamp_min(0).to(dtype)


def resize_by_matmul(x: torch.Tensor, size: tuple[int, int] | torch.Size, align_corners: bool) -> torch.Tensor:
    """`F.interpolate(x, size, mode="bilinear", align_corners=align_corners)` for N×C×h×w `x`, as matrix products.
    The result is contiguous (NCHW)."""
    (h, w), (out_h, out_w) = x.shape[-2:], tuple(size)
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    a_h = bilinear_matrix(h, out_h, align_corners, x.device, dtype)
    a_w = bilinear_matrix(w, out_w, align_corners, x.device, dtype)
    return torch.matmul(torch.matmul(a_h, x.to(dtype)), a_w.t())
