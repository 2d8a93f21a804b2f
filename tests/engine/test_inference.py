"""The test protocol: window positions, padding, flip, scales, and batching that does not change the result."""

import math

import pytest
import torch
import torch.nn.functional as F

import pspnet
from pspnet.engine.inference import InferenceSettings, infer_probabilities, segment, window_positions, window_starts
from pspnet.errors import PSPNetError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def model() -> pspnet.PSPNet:
    torch.manual_seed(0)
    return pspnet.PSPNet(4, backbone="resnet18").eval()


def official_one_at_a_time(net, image: torch.Tensor, s: InferenceSettings) -> torch.Tensor:
    """The official test.py loops, transcribed: one window (and its flip) per forward call."""
    h, w = image.shape[1:]
    total = 0
    for scale in s.scales:
        long = round(scale * s.base_size)
        nh, nw = (long, round(long / h * w)) if h > w else (round(long / w * h), long)
        x = F.interpolate(image[None].float(), (nh, nw), mode="bilinear", align_corners=False).round().clamp(0, 255)
        x = (x - torch.tensor(MEAN).view(3, 1, 1) * 255) / (torch.tensor(STD).view(3, 1, 1) * 255)
        ch, cw = s.crop_size
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        H, W = x.shape[2:]
        sh, sw = math.ceil(ch * 2 / 3), math.ceil(cw * 2 / 3)
        probs = torch.zeros(1, 4, H, W)
        count = torch.zeros(H, W)
        for ih in range(math.ceil((H - ch) / sh) + 1):
            for iw in range(math.ceil((W - cw) / sw) + 1):
                eh, ew = min(ih * sh + ch, H), min(iw * sw + cw, W)
                crop = x[:, :, eh - ch:eh, ew - cw:ew]
                out = net(torch.cat([crop, crop.flip(3)])).softmax(1)
                probs[:, :, eh - ch:eh, ew - cw:ew] += (out[:1] + out[1:].flip(3)) / 2
                count[eh - ch:eh, ew - cw:ew] += 1
        probs = (probs / count)[:, :, ph // 2:ph // 2 + nh, pw // 2:pw // 2 + nw]
        total = total + F.interpolate(probs, (h, w), mode="bilinear", align_corners=False)
    return (total / len(s.scales))[0]


def test_window_starts_cover_the_length_and_end_at_the_border() -> None:
    assert window_starts(33, 33, 22) == [0]
    assert window_starts(45, 33, 22) == [0, 12]
    assert window_starts(100, 33, 22) == [0, 22, 44, 66, 67]


def test_windows_of_an_image_smaller_than_the_crop_are_one_padded_window() -> None:
    assert window_positions(33, 33, (33, 33)) == [(0, 0)]


def test_windows_of_an_image_larger_than_the_crop_slide_by_two_thirds() -> None:
    assert window_positions(60, 45, (33, 33)) == [(0, 0), (0, 12), (22, 0), (22, 12), (27, 0), (27, 12)]


def test_protocol_matches_the_official_loop(model) -> None:
    image = torch.randint(0, 256, (3, 27, 45), dtype=torch.uint8)  # shorter than the crop: padded
    s = InferenceSettings(base_size=50, crop_size=(33, 33), scales=(0.75, 1.25), batch_size=5)
    ours = infer_probabilities(model, [image], s, MEAN, STD)[0]
    with torch.inference_mode():
        ref = official_one_at_a_time(model, image, s)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_batched_equals_one_window_at_a_time(model) -> None:
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in [(33, 45), (20, 50)]]
    base = dict(base_size=None, crop_size=(33, 33), scales=(1.0, 1.25))
    one = infer_probabilities(model, images, InferenceSettings(**base, batch_size=1), MEAN, STD)
    many = infer_probabilities(model, images, InferenceSettings(**base, batch_size=16), MEAN, STD)
    for a, b in zip(one, many, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert torch.equal(a.argmax(0), b.argmax(0))


def test_output_is_at_input_size_and_probabilities_sum_to_one(model) -> None:
    image = torch.randint(0, 256, (3, 21, 38), dtype=torch.uint8)
    p = infer_probabilities(model, [image], InferenceSettings(base_size=60, crop_size=(33, 33)), MEAN, STD)[0]
    assert p.shape == (4, 21, 38)
    torch.testing.assert_close(p.sum(0), torch.ones(21, 38))


def test_whole_mode_runs_the_resized_image_in_one_piece() -> None:
    calls = []

    def net(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return torch.zeros(x.shape[0], 3, *x.shape[2:])

    image = torch.zeros(3, 10, 20, dtype=torch.uint8)
    labels = segment(net, [image], InferenceSettings(base_size=40, mode="whole", flip=True), MEAN, STD)
    assert calls == [(2, 3, 20, 40)]
    assert labels[0].shape == (10, 20)


def test_flip_averages_the_mirrored_prediction() -> None:
    def net(x: torch.Tensor) -> torch.Tensor:  # class 1 where the input's left half is, class 0 elsewhere
        w = x.shape[3]
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 1, :, : w // 2] = 10.0
        out[:, 0, :, w // 2:] = 10.0
        return out

    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    s = InferenceSettings(base_size=None, crop_size=(8, 8), flip=True)
    p = infer_probabilities(net, [image], s, MEAN, STD)[0]
    torch.testing.assert_close(p[1], torch.full((8, 8), 0.5), atol=1e-4, rtol=0)


def test_a_network_that_changes_the_size_is_an_error() -> None:
    s = InferenceSettings(base_size=None, crop_size=(8, 8))
    with pytest.raises(PSPNetError, match="expected N×C×8×8"):
        segment(lambda x: torch.zeros(x.shape[0], 2, 1, 1), [torch.zeros(3, 8, 8, dtype=torch.uint8)], s, MEAN, STD)


def test_bad_settings_are_errors() -> None:
    with pytest.raises(PSPNetError, match="mode"):
        InferenceSettings(mode="tiles")
    with pytest.raises(PSPNetError, match="scales"):
        InferenceSettings(scales=())


def test_dataset_presets_follow_the_official_settings() -> None:
    ms = InferenceSettings.for_dataset("cityscapes", "ms")
    assert (ms.base_size, ms.crop_size) == (2048, (713, 713))
    assert ms.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert InferenceSettings.for_dataset("ade20k", crop_size=(65, 65)).crop_size == (65, 65)
