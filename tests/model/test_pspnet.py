import pytest
import torch

from pspnet import ModelConfig, PSPNet, PSPNetError
from pspnet.model.resnet import DilatedResNet, stage_plan


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pspnet50_has_the_official_parameter_count():
    model = PSPNet(150, backbone="resnet50")
    assert count(model) == 49_180_908
    assert count(model) - count(model.aux_head) == 46_782_550
    assert len(model.state_dict()) == 370


def test_pspnet101_has_the_official_parameter_count():
    model = PSPNet(150, backbone="resnet101")
    assert count(model) == 68_173_036
    assert len(model.state_dict()) == 676


@pytest.mark.parametrize("size", [(97, 129), (65, 65), (33, 45), (64, 64), (17, 90)])
def test_eval_logits_have_the_input_size_for_any_size(size):
    model = PSPNet(5, backbone="resnet18").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


def test_training_returns_main_and_aux_logits_at_input_size():
    model = PSPNet(4, backbone="resnet18").train()
    logits, aux = model(torch.randn(2, 3, 41, 57))
    assert logits.shape == aux.shape == (2, 4, 41, 57)


def test_training_without_aux_head_returns_none_for_aux():
    model = PSPNet(4, backbone="resnet18", aux=False).train()
    logits, aux = model(torch.randn(2, 3, 33, 33))
    assert logits.shape == (2, 4, 33, 33) and aux is None
    assert model.aux_head is None


def test_training_with_batch_size_one_works_and_backpropagates():
    model = PSPNet(3, backbone="resnet18").train()
    logits, aux = model(torch.randn(1, 3, 49, 49))
    (logits.mean() + 0.4 * aux.mean()).backward()
    assert model.ppm.branches[0].conv.weight.grad is not None


def test_batch_size_one_leaves_the_pooled_bin_running_stats_alone():
    model = PSPNet(3, backbone="resnet18").train()
    before = model.ppm.branches[0].norm.running_mean.clone()
    model(torch.randn(1, 3, 49, 49))
    assert torch.equal(model.ppm.branches[0].norm.running_mean, before)
    assert not torch.equal(model.ppm.branches[1].norm.running_mean, before)


def test_group_norm_model_trains_with_batch_one():
    model = PSPNet(3, backbone="resnet18", norm="group").train()
    logits, _ = model(torch.randn(1, 3, 33, 33))
    assert isinstance(model.ppm.branches[0].norm, torch.nn.GroupNorm)
    assert logits.shape == (1, 3, 33, 33)


def test_syncbatch_norm_runs_without_a_process_group():
    model = PSPNet(3, backbone="resnet18", norm="syncbatch").eval()
    assert isinstance(model.head.norm, torch.nn.SyncBatchNorm)
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)


def test_align_corners_is_a_model_setting():
    x = torch.randn(1, 3, 37, 45)
    a = PSPNet(3, backbone="resnet18", align_corners=True).eval()
    b = PSPNet(3, backbone="resnet18", align_corners=False).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize("output_stride,expected", [(8, 5), (16, 3)])
def test_output_stride_sets_the_feature_resolution(output_stride, expected):
    backbone = DilatedResNet("resnet18", output_stride=output_stride).eval()
    c3, c4 = backbone(torch.randn(1, 3, 40, 40))
    assert c4.shape[-1] == expected and c3.shape[-1] == expected


def test_official_dilation_dilates_every_block_including_the_first():
    plan = stage_plan((3, 4, 6, 3), 8, "official")
    assert plan == [(1, [1, 1, 1]), (2, [1, 1, 1, 1]), (1, [2] * 6), (1, [4] * 3)]
    backbone = DilatedResNet("resnet50")
    assert backbone.layer3[0].conv2.dilation == (2, 2) and backbone.layer4[0].conv2.dilation == (4, 4)
    assert backbone.layer3[0].conv2.stride == (1, 1) and backbone.layer3[0].downsample[0].stride == (1, 1)


def test_contracted_dilation_keeps_the_previous_dilation_in_the_first_block():
    assert stage_plan((3, 4, 6, 3), 8, "contracted")[2:] == [(1, [1, 2, 2, 2, 2, 2]), (1, [2, 4, 4])]
    assert stage_plan((3, 4, 6, 3), 16, "contracted")[2:] == [(2, [1] * 6), (1, [1, 2, 2])]
    assert stage_plan((3, 4, 6, 3), 16, "official")[2:] == [(2, [1] * 6), (1, [2, 2, 2])]


def test_deep_stem_is_default_and_classic_stem_is_an_option():
    assert PSPNet(2, backbone="resnet18").backbone.stem.conv1.kernel_size == (3, 3)
    classic = PSPNet(2, backbone="resnet18", deep_stem=False)
    assert classic.backbone.stem.conv1.kernel_size == (7, 7)
    assert classic.eval()(torch.randn(1, 3, 35, 35)).shape == (1, 2, 35, 35)


def test_pyramid_branches_reduce_to_in_channels_over_bin_count():
    model = PSPNet(2, backbone="resnet50", bins=(1, 2, 4))
    assert [b.bins for b in model.ppm.branches] == [1, 2, 4]
    assert model.ppm.branches[0].conv.out_channels == 2048 // 3
    assert model.head.conv.in_channels == 2048 + 3 * (2048 // 3)


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.randn(3, 33, 33), "N×3×H×W"),
        (torch.randn(1, 1, 33, 33), "N×3×H×W"),
        (torch.zeros(1, 3, 33, 33, dtype=torch.uint8), "float"),
    ],
)
def test_bad_input_tensors_give_a_clear_error(x, message):
    model = PSPNet(2, backbone="resnet18").eval()
    with pytest.raises(PSPNetError, match=message):
        model(x)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"backbone": "resnet42"}, "unknown backbone 'resnet42'; expected one of resnet18"),
        ({"output_stride": 4}, "output_stride"),
        ({"norm": "layer"}, "unknown norm"),
        ({"dilation": "wide"}, "unknown dilation"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_give_a_clear_error(settings, message):
    with pytest.raises(PSPNetError, match=message):
        PSPNet(2, **settings)


def test_model_config_round_trips_through_a_dict():
    config = ModelConfig(num_classes=7, backbone="resnet34", bins=(1, 3), norm="group")
    assert ModelConfig.from_dict(config.to_dict()) == config
