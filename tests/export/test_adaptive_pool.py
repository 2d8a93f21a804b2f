"""The pyramid module's adaptive pooling: PyTorch's numbers for every size, as ops that export for any size."""

import pytest
import torch
import torch.nn.functional as F

from pspnet.model.adaptive_pool import adaptive_avg_pool2d, bin_averaging_matrix


def test_equals_torch_adaptive_avg_pool2d_for_many_sizes_and_bins() -> None:
    for h in (*range(1, 20), 33, 60, 61):
        for w in (1, 7, 13, 17, 60):
            x = torch.randn(2, 3, h, w)
            for bins in (1, 2, 3, 6, 7):
                expected = F.adaptive_avg_pool2d(x, bins)
                assert torch.allclose(adaptive_avg_pool2d(x, bins), expected, rtol=0, atol=1e-6), (h, w, bins)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_keeps_the_dtype_and_matches_in_it(dtype) -> None:
    x = torch.randn(1, 4, 13, 17, dtype=dtype)
    out = adaptive_avg_pool2d(x, 6)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 2e-2
    assert torch.allclose(out, F.adaptive_avg_pool2d(x, 6), rtol=tol, atol=tol)


def test_gradients_equal_torch_adaptive_avg_pool2d() -> None:
    x = torch.randn(2, 3, 13, 17, requires_grad=True)
    weights = torch.randn(2, 3, 6, 6)
    (grad_ours,) = torch.autograd.grad((adaptive_avg_pool2d(x, 6) * weights).sum(), x)
    (grad_torch,) = torch.autograd.grad((F.adaptive_avg_pool2d(x, 6) * weights).sum(), x)
    assert torch.allclose(grad_ours, grad_torch, atol=1e-6)


def test_bins_overlap_where_the_length_is_not_divisible() -> None:
    # length 5 into 3 bins: [0, 2), [1, 4), [3, 5), as PyTorch's kernel
    m = bin_averaging_matrix(5, 3, torch.float32, torch.device("cpu"))
    expected = torch.tensor([[1 / 2, 1 / 2, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1 / 2, 1 / 2]])
    assert torch.allclose(m, expected)


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace. is deprecated")
def test_a_traced_graph_pools_inputs_of_other_sizes_correctly() -> None:
    traced = torch.jit.trace(lambda x: adaptive_avg_pool2d(x, 6), torch.randn(1, 2, 12, 12))
    for h, w in [(13, 17), (7, 60), (1, 5)]:
        x = torch.randn(3, 2, h, w)
        assert torch.allclose(traced(x), F.adaptive_avg_pool2d(x, 6), atol=1e-6)
