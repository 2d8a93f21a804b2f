"""The head's convolution with the pyramid at its bins is the convolution of the upsampled concatenation: values,
gradients, BatchNorm folded, autocast, and the recipe switch that turns it on."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pspnet import PSPNet
from pspnet.engine.recipe import Recipe, inference_forward, training_model
from pspnet.model.fold import fold_batchnorm
from pspnet.model.pyramid_conv import convolvable_at_bins, pyramid_conv


def concatenated(conv: nn.Conv2d, x: torch.Tensor, pooled: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """What the published head computes: upsample every branch, concatenate, convolve."""
    up = [F.interpolate(p, x.shape[-2:], mode="bilinear", align_corners=align_corners) for p in pooled]
    return conv(torch.cat([x, *up], 1))


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(("size", "bins", "conv"), [
    ((60, 60), (1, 2, 3, 6), dict(kernel_size=3, padding=1)),  # PSPNet-50's head at 473×473
    ((13, 29), (1, 2, 3, 6), dict(kernel_size=3, padding=1, bias=True)),  # odd sizes; a folded BatchNorm's bias
    ((4, 5), (2, 6), dict(kernel_size=3, padding=1)),  # more bins than the map has pixels
    ((1, 1), (1, 2), dict(kernel_size=3, padding=1)),
    ((9, 11), (3,), dict(kernel_size=3, padding=2, dilation=2)),
    ((9, 11), (2, 3), dict(kernel_size=3, padding=0)),  # a smaller output than input
    ((8, 7), (1, 3), dict(kernel_size=(1, 5), padding=(0, 1))),
])
def test_the_branches_convolved_at_their_bins_give_the_convolution_of_the_upsampled_maps(size, bins, conv,
                                                                                         align_corners):
    torch.manual_seed(0)
    x = torch.randn(2, 6, *size, dtype=torch.float64, requires_grad=True)
    pooled = [torch.randn(2, 3, b, b, dtype=torch.float64, requires_grad=True) for b in bins]
    layer = nn.Conv2d(6 + 3 * len(bins), 5, bias=conv.pop("bias", False), **conv).double()
    expected = concatenated(layer, x, pooled, align_corners)
    got = pyramid_conv(layer, x, pooled, align_corners, channels=[6, *[3] * len(bins)], bins=bins)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(expected)
    inputs = [x, *pooled, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(expected, inputs, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_only_stride_one_convolutions_with_zero_padding_are_taken_at_the_bins():
    assert convolvable_at_bins(nn.Conv2d(8, 4, 3, padding=1))
    assert not convolvable_at_bins(nn.Conv2d(8, 4, 3, padding=1, stride=2))
    assert not convolvable_at_bins(nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"))
    assert not convolvable_at_bins(nn.Conv2d(8, 4, 3, padding="same"))
    assert not convolvable_at_bins(nn.Conv2d(8, 4, 3, padding=1, groups=2))
    with pytest.raises(ValueError, match=r"channels \[8, 4\] and bins \[2\] for 1 pooled maps and a convolution of 14"):
        pyramid_conv(nn.Conv2d(14, 4, 3, padding=1), torch.randn(1, 8, 5, 5), [torch.randn(1, 4, 2, 2)], True,
                     channels=[8, 4], bins=[2])


def randomised_statistics(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("align_corners", [True, False])
def test_a_pspnet_with_the_pyramid_at_its_bins_gives_the_same_logits_and_gradients(align_corners):
    torch.manual_seed(0)
    model = randomised_statistics(PSPNet(7, backbone="resnet18", output_stride=8, align_corners=align_corners)).eval()
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        model.pyramid_at_bins = True
        got = model(x)
        folded = fold_batchnorm(model)  # the default inference recipe folds BatchNorm: the head's conv has a bias
        folded_got = folded(x)
    scale = expected.abs().max()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(folded_got, expected, rtol=0, atol=1e-5 * scale)

    model.train()
    grads = []
    for at_bins in (False, True):
        model.pyramid_at_bins = at_bins
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        logits, aux = model(x)
        (logits.square().mean() + 0.4 * aux.square().mean()).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, reference in grads[0].items():
        torch.testing.assert_close(grads[1][name], reference, rtol=0, atol=1e-4 * reference.abs().max() + 1e-12,
                                   msg=name)


def test_under_bf16_autocast_the_products_run_in_bf16_as_the_convolution_does():
    torch.manual_seed(0)
    model = randomised_statistics(PSPNet(5, backbone="resnet18", output_stride=16)).eval()
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
        model.pyramid_at_bins = True
        got = model(x)
    assert got.dtype == expected.dtype
    agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agree > 0.97, agree
    assert (got.float() - expected.float()).abs().max() < 0.05 * expected.float().abs().max()


def test_the_recipe_switch_runs_on_a_copy_and_trains_the_model_itself():
    torch.manual_seed(0)
    model = PSPNet(5, backbone="resnet18", output_stride=16).eval()
    x = torch.randn(1, 3, 45, 61)
    recipe = Recipe(fold_bn=True, pyramid_at_bins=True)
    switched = inference_forward(model, recipe, "cpu")
    torch.testing.assert_close(switched(x), inference_forward(model, Recipe(), "cpu")(x), rtol=1e-4, atol=1e-4)
    assert switched.model.pyramid_at_bins and not model.pyramid_at_bins
    assert "pyramid at its bins" in recipe.describe()
    assert training_model(model, Recipe(pyramid_at_bins=True), "cpu").pyramid_at_bins
    assert not training_model(model, Recipe(), "cpu").pyramid_at_bins
