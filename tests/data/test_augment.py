import pytest
import torch

from pspnet.classes import DatasetInfo
from pspnet.data.augment import TrainAugment, ValAugment, gaussian_blur
from pspnet.data.config import DataConfig
from pspnet.data.imageops import resize_bilinear

PALETTE = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], dtype=torch.uint8)
INFO = DatasetInfo.generic(5)


def coloured_sample(h: int, w: int, g: torch.Generator, block: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blocks of classes 0..4 (a few ignore blocks) and an image whose colour is each pixel's class."""
    blocks = torch.randint(0, 6, (h // block + 1, w // block + 1), generator=g)
    blocks[blocks == 5] = 255
    label = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].to(torch.uint8)
    image = PALETTE[label.long().clamp(max=4)].permute(2, 0, 1).contiguous()
    image[:, label == 255] = 128
    return image, label


def decoded_classes(x: torch.Tensor) -> torch.Tensor:
    """The class whose colour is nearest to each (de-normalised) pixel."""
    mean = torch.tensor(INFO.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(INFO.std).view(1, 3, 1, 1) * 255
    rgb = x * std + mean
    return ((rgb[:, None] - PALETTE.float().view(1, 5, 3, 1, 1)) ** 2).sum(2).argmin(1)


def batch(g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    samples = [coloured_sample(60, 90, g), coloured_sample(120, 70, g), coloured_sample(40, 200, g)]
    return [s[0] for s in samples], [s[1] for s in samples]


@pytest.mark.parametrize("setting", ["scale", "rotate", "blur", "flip", "crop", "all"])
def test_every_transform_keeps_image_and_label_aligned(setting):
    only = {"scale": dict(scale_range=(0.5, 2.0)), "rotate": dict(rotate_p=1.0), "blur": dict(blur=1.0),
            "flip": dict(flip=1.0), "crop": {}, "all": dict(scale_range=(0.5, 2.0), rotate_p=1.0, blur=1.0, flip=0.5)}
    off = dict(scale_range=(1.0, 1.0), rotate_p=0.0, blur=0.0, flip=0.0)
    cfg = DataConfig(num_classes=5, crop_size=(64, 80), **{**off, **only[setting]})
    g = torch.Generator().manual_seed(1)
    images, labels = batch(g)
    for _ in range(3):
        x, y = TrainAugment(cfg, INFO)(images, labels, g)
        known = y != 255
        agree = (decoded_classes(x)[known] == y[known]).float().mean()
        assert agree > 0.95, f"{setting}: image and label agree on only {agree:.1%} of pixels"


def test_labels_hold_only_original_values_and_ignore():
    cfg = DataConfig(num_classes=5, crop_size=(97, 101), rotate_p=1.0)
    g = torch.Generator().manual_seed(2)
    images, labels = batch(g)
    original = set(torch.cat([lb.flatten() for lb in labels]).tolist())
    for _ in range(5):
        x, y = TrainAugment(cfg, INFO)(images, labels, g)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert set(y.unique().tolist()) <= original | {255}


def test_padding_is_mean_in_the_image_and_ignore_in_the_label():
    cfg = DataConfig(num_classes=5, crop_size=(100, 100))
    image = torch.full((3, 20, 30), 7, dtype=torch.uint8)
    label = torch.zeros(20, 30, dtype=torch.uint8)
    x, y = ValAugment(cfg, INFO)([image], [label])
    assert (y == 255).sum() == 100 * 100 - 20 * 30
    assert x[0][:, y[0] == 255].abs().max() < 1e-5  # the mean normalises to 0
    assert (y[0, 40:60, 35:65] == 0).all()  # centred


def test_same_seed_same_batch_different_seed_different_batch():
    cfg = DataConfig(num_classes=5, crop_size=(48, 48))
    images, labels = batch(torch.Generator().manual_seed(3))
    runs = [TrainAugment(cfg, INFO)(images, labels, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_a_global_batch_split_over_ranks_gets_the_same_draws():
    cfg = DataConfig(num_classes=5, crop_size=(48, 48), rotate_p=1.0)
    images, labels = batch(torch.Generator().manual_seed(6))
    whole = TrainAugment(cfg, INFO)(images, labels, torch.Generator().manual_seed(3))
    rank0 = TrainAugment(cfg, INFO)(images[:2], labels[:2], torch.Generator().manual_seed(3), rows=[0, 1])
    rank1 = TrainAugment(cfg, INFO)(images[2:], labels[2:], torch.Generator().manual_seed(3), rows=[2])
    # equal up to float rounding (the padded stack has another size)
    assert torch.allclose(torch.cat([rank0[0], rank1[0]]), whole[0], atol=1e-4)
    assert torch.equal(torch.cat([rank0[1], rank1[1]]), whole[1])


def test_validation_is_deterministic_and_uses_no_generator():
    cfg = DataConfig(num_classes=5, crop_size=(48, 48))
    images, labels = batch(torch.Generator().manual_seed(4))
    a = ValAugment(cfg, INFO)(images, labels)
    b = ValAugment(cfg, INFO)(images, labels, torch.Generator().manual_seed(99))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_scaling_alone_matches_the_one_bilinear_resize():
    # scale 2 exactly, crop = the whole scaled image: the warp must equal imageops.resize_bilinear (OpenCV linear)
    cfg = DataConfig(num_classes=5, crop_size=(40, 60), scale_range=(2.0, 2.0), rotate_p=0.0, blur=0.0, flip=0.0)
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    x, _ = TrainAugment(cfg, INFO)([image], [torch.zeros(20, 30, dtype=torch.uint8)], torch.Generator())
    expected = ValAugment(DataConfig(num_classes=5, crop_size=(40, 60)), INFO)(
        [resize_bilinear(image[None].float(), (40, 60))[0].round().to(torch.uint8)], [torch.zeros(40, 60)])[0]
    # only the rounding of `expected` to uint8 differs: at most half a grey level
    assert (x - expected).abs().max() <= 0.5 / (min(INFO.std) * 255) + 1e-5


def test_gaussian_blur_keeps_flat_images_and_sums_to_one():
    flat = torch.full((1, 3, 9, 9), 100.0)
    assert torch.allclose(gaussian_blur(flat), flat)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    out = gaussian_blur(impulse)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6) and out[0, 0, 4, 4] == out.max()
