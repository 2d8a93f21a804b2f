import pytest
import torch

from pspnet import PSPNet
from pspnet.train.schedule import parameter_groups, poly_factor, set_poly_lr


def test_poly_decay_follows_the_official_formula():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100, 0.9) == 0.0


def test_new_layers_get_ten_times_the_backbone_lr():
    model = PSPNet(3, backbone="resnet18")
    groups = parameter_groups(model, lr=0.01, head_lr_mult=10)
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[0]["params"]} == backbone
    others = {id(p) for p in model.parameters()} - backbone
    assert {id(p) for p in groups[1]["params"]} == others
    assert {id(p) for p in model.aux_head.parameters()} <= others and {id(p) for p in model.ppm.parameters()} <= others


def test_set_poly_lr_scales_every_group_from_its_base():
    model = PSPNet(3, backbone="resnet18", aux=False)
    opt = torch.optim.SGD(parameter_groups(model, 0.01, 10), lr=0.01, momentum=0.9, weight_decay=1e-4)
    set_poly_lr(opt, 25, 100, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.75**0.9)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * 0.75**0.9)
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in opt.param_groups)
