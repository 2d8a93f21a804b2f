"""The final upsampling as matrix products is F.interpolate's bilinear function, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from pspnet import PSPNet
from pspnet.engine.recipe import Recipe, inference_forward, training_model
from pspnet.model.upsample import resize_by_matmul


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("sizes", [(60, 60, 473, 473), (7, 9, 50, 61), (23, 30, 180, 240), (8, 8, 3, 5), (1, 1, 4, 4)])
def test_resize_by_matmul_is_bilinear_interpolation(sizes, align_corners):
    h, w, out_h, out_w = sizes
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    expected = F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=align_corners)
    got = resize_by_matmul(x, (out_h, out_w), align_corners)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad(expected, x, g)
    (grad_got,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-5, atol=1e-5)


def test_the_recipe_switch_keeps_the_logits_and_leaves_the_callers_model_alone():
    torch.manual_seed(0)
    model = PSPNet(5, backbone="resnet18", output_stride=16).eval()
    x = torch.randn(1, 3, 45, 61)
    reference = inference_forward(model, Recipe(), "cpu")(x)
    switched = inference_forward(model, Recipe(matmul_upsample=True), "cpu")
    torch.testing.assert_close(switched(x), reference, rtol=1e-4, atol=1e-4)
    assert switched.model.upsample_by_matmul and not model.upsample_by_matmul
    trained = training_model(model, Recipe(matmul_upsample=True), "cpu")
    assert trained.upsample_by_matmul and "upsample as matmuls" in Recipe(matmul_upsample=True).describe()
