"""The head's 3×3 convolution over the pyramid with the pooled branches convolved at their bins: the same function
as convolving the concatenation, with about half the arithmetic of the head.

The head convolves `cat([x, up(p_1), …, up(p_k)])`, where each `p_i` is a branch's b×b map and `up` the bilinear
upsampling to x's size. Convolution is linear in its input channels, so it is the convolution of `x` with its
channels' weights plus, per branch, the convolution of `up(p_i)` with the branch's. Upsampling is linear and
separable (`up(p) = A·p·Bᵀ`, `pspnet.model.upsample`) and each tap of a stride-1 convolution reads a shifted
copy of its input, so a branch's term is `A'·Q·B'ᵀ`: Q holds every tap's weights applied to `p` at b×b
(O × k·b × k·b), and A' (B') stacks the rows (columns) of A (B) shifted by each tap's offset, zero outside the
map. That costs O·R·k²·b² + O·k·b·(k·b + H)·W per branch instead of the O·R·k²·H·W of convolving the upsampled
map (O outputs, R channels per branch, k×k taps). For PSPNet-50 at 473×473 the head's convolution reads 4096
channels at 60×60, half of them upsampled bins: convolving those at their bins takes out 68 of the network's 324
GFLOP. In exact arithmetic the result is identical; in floating point it differs by rounding (~1e-6 of the largest
activation), as BatchNorm folding does. An execution choice (`Recipe.pyramid_at_bins`), not a weight: the
checkpoint is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pspnet.model.upsample import bilinear_matrix


def shifted_interpolation(bins: Sequence[int], size: int, out_size: int, kernel: int, dilation: int, padding: int,
                          align_corners: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """For each b in `bins`, in order, the out_size × (kernel·b) block whose row o, column (t, j) is the weight of bin
    j in the bilinear upsampling (b → size, `bilinear_matrix`) at position o + t·dilation − padding: what tap t of a
    stride-1 convolution reads at output position o, zero where that falls outside the map (the convolution's zero
    padding). Every branch's matrix at once: an exported graph builds them from the runtime size in a few nodes, not
    a chain per branch (ONNX Runtime pays a fixed cost per node)."""
    a = bilinear_matrix(list(bins), size, align_corners, device, dtype)  # size × Σb, the branches side by side
    at = (torch.arange(out_size, device=device)[:, None]
          + torch.arange(kernel, device=device)[None, :] * dilation - padding)  # out_size × kernel
    inside = ((at >= 0) & (at < size)).to(dtype)
    shifted = a[at.clamp(0, size - 1)] * inside[..., None]  # out_size × kernel × Σb
    # Columns tap-major over all bins → branch by branch, each (tap, j).
    total, starts = sum(bins), [sum(bins[:i]) for i in range(len(bins))]
    order = [t * total + start + j for start, b in zip(starts, bins, strict=True) for t in range(kernel)
             for j in range(b)]
    return shifted.reshape(out_size, kernel * total)[:, torch.tensor(order, device=device)]


def convolvable_at_bins(conv: nn.Module) -> bool:
    """Whether `pyramid_conv` computes `conv`: a plain stride-1 convolution with zero padding given in numbers."""
    return (isinstance(conv, nn.Conv2d) and conv.stride == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def pyramid_conv(conv: nn.Conv2d, x: torch.Tensor, pooled: Sequence[torch.Tensor], align_corners: bool, *,
                 channels: Sequence[int], bins: Sequence[int]) -> torch.Tensor:
    """`conv(torch.cat([x, *(F.interpolate(p, x.shape[-2:], mode="bilinear", align_corners=align_corners) for p in
    pooled)], 1))` with each p (N×R×b×b) convolved at b×b (see the module's docstring). `channels`: x's channels and
    each p's, `bins`: each p's b, as numbers (in an exported graph the weights' split is then a constant, not a
    slice at every run). `conv` must satisfy `convolvable_at_bins`; under autocast the products run in its
    precision, as the convolution does."""
    if len(channels) != len(pooled) + 1 or len(bins) != len(pooled) or sum(channels) != conv.in_channels:
        raise ValueError(f"pyramid_conv: channels {list(channels)} and bins {list(bins)} for {len(pooled)} pooled maps "
                         f"and a convolution of {conv.in_channels} input channels")
    # Slices at fixed offsets: the ONNX exporter folds them into initializers (a Split it leaves in the graph, and
    # ONNX Runtime's int8 quantiser then cannot quantise a convolution whose weight is no initializer).
    starts = [sum(channels[:i]) for i in range(len(channels))]
    weights = [conv.weight[:, start:start + size] for start, size in zip(starts, channels, strict=True)]
    out = F.conv2d(x, weights[0], conv.bias, 1, conv.padding, conv.dilation)
    if not pooled:
        return out
    dtype = out.dtype
    n, o = out.shape[0], conv.out_channels
    (h, w), (out_h, out_w) = x.shape[-2:], out.shape[-2:]
    (kh, kw), (dh, dw), (ph, pw) = conv.kernel_size, conv.dilation, conv.padding
    rows = shifted_interpolation(bins, h, out_h, kh, dh, ph, align_corners, x.device, dtype)  # out_h × Σkh·b
    cols = shifted_interpolation(bins, w, out_w, kw, dw, pw, align_corners, x.device, dtype)  # out_w × Σkw·b
    spread_cols, start = [], 0
    for p, branch, b in zip(pooled, weights[1:], bins, strict=True):
        # Every tap's weights applied at each bin: per output channel (kh·kw × R) · (R × N·b·b), the weights read
        # in place (transposed, not copied: a copy of them cost the CamVid model's head more than it saved).
        taps = torch.matmul(branch.to(dtype).reshape(o, branch.shape[1], kh * kw).transpose(1, 2),
                            p.to(dtype).transpose(0, 1).reshape(branch.shape[1], -1))  # O×kh·kw×N·b·b
        taps = taps.reshape(o, kh, kw, -1, b, b).permute(3, 0, 1, 4, 2, 5)  # N×O×kh×b×kw×b
        # The 2-D matrix on the right: one GEMM over all N·O·k·b rows (on the left it would be N·O small ones).
        spread_cols.append(torch.matmul(taps.reshape(n, o, kh * b, kw * b), cols[:, start:start + kw * b].t()))
        start += kw * b
    # Every branch's rows at once: (N×O×out_w×Σk·b) · (Σk·b × out_h), transposed back to N×O×out_h×out_w.
    term = torch.matmul(torch.cat(spread_cols, -2).transpose(-1, -2), rows.t()).transpose(-1, -2)
    return out + term
