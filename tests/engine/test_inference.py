"""The test protocol: window positions, padding, flip, scales, and batching that does not change the result."""

import copy
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pspnet
from pspnet.engine.inference import (
    InferenceSettings,
    infer_probabilities,
    keep_ratio_size,
    segment,
    segment_with_confidence,
    window_positions,
    window_starts,
)
from pspnet.errors import PSPNetError

sys.path.insert(0, str(Path(__file__).parent))
from official_protocol import official_probabilities  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def model() -> pspnet.PSPNet:
    torch.manual_seed(0)
    return pspnet.PSPNet(4, backbone="resnet18").eval()


def test_window_starts_cover_the_length_and_end_at_the_border() -> None:
    assert window_starts(33, 33, 22) == [0]
    assert window_starts(45, 33, 22) == [0, 12]
    assert window_starts(100, 33, 22) == [0, 22, 44, 66, 67]


def test_windows_of_an_image_smaller_than_the_crop_are_one_padded_window() -> None:
    assert window_positions(33, 33, (33, 33)) == [(0, 0)]


def test_windows_of_an_image_larger_than_the_crop_slide_by_two_thirds() -> None:
    assert window_positions(60, 45, (33, 33)) == [(0, 0), (0, 12), (22, 0), (22, 12), (27, 0), (27, 12)]


@pytest.fixture(scope="module")
def sharp_model() -> pspnet.PSPNet:
    """A random PSPNet whose classifier weights are scaled up, so that its class map reacts to small input changes
    (rounding the resized image to integers moves several of its pixels to another class)."""
    torch.manual_seed(0)
    net = pspnet.PSPNet(4, backbone="resnet18").eval()
    with torch.no_grad():
        net.head.classifier.weight.mul_(100.0)
    return net


def test_protocol_matches_an_independent_opencv_implementation_of_the_official_one_on_every_pixel(sharp_model
                                                                                                    ) -> None:
    """Scales below and above 1 (resized as float32: no rounding before normalising), windows sliding over the image
    and padded beyond it, flips: probabilities to float rounding, the class map exactly."""
    model = sharp_model
    g = torch.Generator().manual_seed(1)
    smooth = F.interpolate(torch.rand(1, 3, 6, 9, generator=g) * 255, (45, 70), mode="bilinear")[0]
    image = (smooth + torch.randn(3, 45, 70, generator=g) * 20).round().clamp(0, 255).to(torch.uint8)
    s = InferenceSettings(base_size=70, crop_size=(33, 33), scales=(0.5, 0.75, 1.25), batch_size=5)
    ours = infer_probabilities(model, [image], s, MEAN, STD)[0]
    official = official_probabilities(model, image.permute(1, 2, 0).numpy(), 4, s.base_size, s.crop_size, s.scales,
                                      MEAN, STD)
    official = torch.from_numpy(official).permute(2, 0, 1).float()
    torch.testing.assert_close(ours, official, atol=1e-6, rtol=0)
    assert torch.equal(ours.argmax(0), official.argmax(0))


def test_batched_equals_one_window_at_a_time(model) -> None:
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in [(33, 45), (20, 50)]]
    base = dict(base_size=None, crop_size=(33, 33), scales=(1.0, 1.25))
    one = infer_probabilities(model, images, InferenceSettings(**base, batch_size=1), MEAN, STD)
    many = infer_probabilities(model, images, InferenceSettings(**base, batch_size=16), MEAN, STD)
    for a, b in zip(one, many, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert torch.equal(a.argmax(0), b.argmax(0))


def test_images_of_many_sizes_in_one_call_equal_each_image_alone(model) -> None:
    """Whole-image batches of different shapes share one softmax buffer (a small batch after a large one, a large one
    after a small one): every image's probabilities are those it gets alone."""
    sizes = [(40, 52), (17, 23), (40, 52), (29, 61)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
              for i, (h, w) in enumerate(sizes)]
    settings = InferenceSettings(base_size=None, mode="whole", batch_size=2)
    together = infer_probabilities(model, images, settings, MEAN, STD)
    for image, p in zip(images, together, strict=True):
        torch.testing.assert_close(p, infer_probabilities(model, [image], settings, MEAN, STD)[0], atol=1e-6, rtol=0)


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


@pytest.mark.parametrize("size, settings", [
    ((4, 2000), InferenceSettings(base_size=240, mode="whole")),  # a banner: its short side rounds to 0 at 240
    ((4, 2000), InferenceSettings(base_size=240, crop_size=(33, 33))),
    ((30, 30), InferenceSettings(base_size=None, crop_size=(33, 33), scales=(0.01,))),
    ((1, 1500), InferenceSettings(base_size=512, crop_size=(33, 33), short_side=10, flip=False)),
])
def test_a_side_that_scales_below_one_pixel_is_one_pixel(model, size, settings) -> None:
    calls = []

    def net(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[2:]))
        return model(x)

    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    labels = segment(net, [image], settings, MEAN, STD)[0]
    assert labels.shape == size
    assert calls and all(min(shape) >= 1 for shape in calls)


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


def test_labels_are_the_argmax_and_ties_go_to_the_lowest_class() -> None:
    torch.manual_seed(0)
    scores = torch.randn(1, 5, 9, 11)
    scores[0, :, 0, :] = 0.0  # a row where every class ties
    scores[0, 3, 1, :] = scores[0, 1, 1, :] = 100.0  # a row where classes 1 and 3 tie at the top

    def net(x: torch.Tensor) -> torch.Tensor:
        return scores.expand(x.shape[0], -1, -1, -1)

    s = InferenceSettings(base_size=None, crop_size=(9, 11), flip=False)
    labels = segment(net, [torch.zeros(3, 9, 11, dtype=torch.uint8)], s, MEAN, STD)[0]
    assert torch.equal(labels, scores[0].argmax(dim=0))
    assert labels[0].eq(0).all() and labels[1].eq(1).all()


def test_a_network_that_changes_the_size_is_an_error() -> None:
    s = InferenceSettings(base_size=None, crop_size=(8, 8))
    with pytest.raises(PSPNetError, match="expected N×C×8×8"):
        segment(lambda x: torch.zeros(x.shape[0], 2, 1, 1), [torch.zeros(3, 8, 8, dtype=torch.uint8)], s, MEAN, STD)


def test_bad_settings_are_errors() -> None:
    with pytest.raises(PSPNetError, match="mode"):
        InferenceSettings(mode="tiles")
    with pytest.raises(PSPNetError, match="scales"):
        InferenceSettings(scales=())
    for scale in (float("nan"), float("inf"), 0.0):  # NaN passed a `min(scales) <= 0` check, then crashed
        with pytest.raises(PSPNetError, match="expected one or more positive numbers"):
            InferenceSettings(scales=(1.0, scale))


def test_dataset_presets_follow_the_official_settings() -> None:
    ms = InferenceSettings.for_dataset("cityscapes", "ms")
    assert (ms.base_size, ms.crop_size) == (2048, (713, 713))
    assert ms.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert InferenceSettings.for_dataset("ade20k", crop_size=(65, 65)).crop_size == (65, 65)


def test_the_mmseg_preset_matches_an_independent_implementation_of_mmsegs_test(sharp_model) -> None:
    """Keep-ratio rescale into (long, short), the whole image, logits resized back: every pixel's class."""
    from mmseg_protocol import mmseg_labels

    g = torch.Generator().manual_seed(2)
    smooth = F.interpolate(torch.rand(1, 3, 6, 9, generator=g) * 255, (45, 70), mode="bilinear")[0]
    image = (smooth + torch.randn(3, 45, 70, generator=g) * 20).round().clamp(0, 255).to(torch.uint8)
    s = InferenceSettings(base_size=80, short_side=40, mode="whole", flip=False, average="logits")
    ours = segment(sharp_model, [image], s, MEAN, STD)[0]
    reference = torch.from_numpy(mmseg_labels(sharp_model, image.permute(1, 2, 0).numpy(), 80, 40, MEAN, STD))
    assert ours.shape == (45, 70)
    assert (ours == reference).float().mean() >= 0.999  # resize kernels' float rounding may tip a tied pixel



def test_logits_are_resized_not_probabilities_as_mmseg_does() -> None:
    """Two regions whose interpolated logits favour a third class that neither region's probabilities do: resizing
    logits (mmseg) shows it along the border, resizing probabilities (the official protocol) never does."""
    from mmseg_protocol import mmseg_labels

    def forward(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        logits = torch.empty(n, 3, h, w)
        logits[:, :, :, : w // 2] = torch.tensor([2.0, 0.0, -10.0])[:, None, None]
        logits[:, :, :, w // 2:] = torch.tensor([-10.0, 0.0, 2.5])[:, None, None]
        return logits

    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    s = InferenceSettings(base_size=30, short_side=20, mode="whole", flip=False, average="logits")
    by_logits = segment(forward, [image], s, MEAN, STD)[0]
    by_probs = segment(forward, [image], replace(s, average="probs"), MEAN, STD)[0]
    assert (by_logits == 1).any() and not (by_probs == 1).any()
    reference = mmseg_labels(lambda x: forward(x), image.permute(1, 2, 0).numpy(), 30, 20, MEAN, STD)
    assert (by_logits.numpy() == reference).all()


@pytest.mark.parametrize("average", ["probs", "logits"])
def test_confidence_is_the_predicted_class_probability_of_what_the_protocol_averaged(model, average) -> None:
    """Averaged probabilities: their maximum; averaged logits (the mmseg presets): the maximum of their softmax."""
    torch.manual_seed(1)
    image = torch.randint(0, 256, (3, 37, 50), dtype=torch.uint8)
    s = InferenceSettings(base_size=None, crop_size=(24, 24), average=average)
    forward = model.eval()
    averaged = infer_probabilities(forward, [image], s, MEAN, STD)[0]
    labels, confidence = segment_with_confidence(forward, [image], s, MEAN, STD)[0]
    assert torch.equal(labels, segment(forward, [image], s, MEAN, STD)[0])
    probs = averaged if average == "probs" else averaged.softmax(dim=0)
    torch.testing.assert_close(confidence, probs.max(dim=0).values)
    assert confidence.shape == (37, 50) and 1 / 4 <= confidence.min() and confidence.max() <= 1 + 1e-6


def test_the_mmseg_preset_holds_mmsegs_settings_per_dataset() -> None:
    ade = InferenceSettings.for_dataset("ade20k", "mmseg")
    assert (ade.base_size, ade.short_side, ade.mode, ade.flip, ade.average) == (2048, 512, "whole", False, "logits")
    assert InferenceSettings.for_dataset("cityscapes", "mmseg").short_side == 1024
    assert keep_ratio_size(512, 683, 2048, 512) == (512, 683) and keep_ratio_size(300, 2000, 2048, 512) == (307, 2048)
    with pytest.raises(PSPNetError, match="camvid"):
        InferenceSettings.for_dataset("camvid", "mmseg")


def test_a_forward_that_fuses_the_softmax_gives_the_probabilities_the_protocol_averages(model) -> None:
    """A compiled recipe computes the softmax in the network's graph; the protocol then averages what that returns,
    and uses its own softmax for logits averaging (mmsegmentation's way) or when the forward does not fuse it."""

    class Fused:
        def __init__(self, fused: bool) -> None:
            self.fused_softmax, self.calls = fused, []

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            self.calls.append("logits")
            return model(x)

        def probabilities(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
            self.calls.append(f"probabilities of {len(x)}{' and their mirrors' if mirrored else ''}")
            if not mirrored:
                return torch.softmax(model(x), dim=1)
            p = torch.softmax(model(torch.cat([x, x.flip(-1)])), dim=1)
            return p[:len(x)] + p[len(x):].flip(-1)

    images = [torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8)]
    settings = InferenceSettings(base_size=None, crop_size=(33, 33), batch_size=4)
    expected = infer_probabilities(model, images, settings, MEAN, STD)[0]
    fused, unfused = Fused(True), Fused(False)
    torch.testing.assert_close(infer_probabilities(fused, images, settings, MEAN, STD)[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(infer_probabilities(unfused, images, settings, MEAN, STD)[0], expected, atol=1e-6,
                               rtol=0)
    # 4 windows (2×2 of 33×33 in 40×52) and their mirrors: 8 network inputs, two batches of 4, mirrors in the graph.
    assert fused.calls == ["probabilities of 2 and their mirrors"] * 2 and set(unfused.calls) == {"logits"}
    for batch_size, calls in ((3, ["probabilities of 1 and their mirrors"] * 4), (1, ["probabilities of 1"] * 8)):
        fused.calls.clear()  # an odd batch holds whole pairs only; a batch of 1 has the protocol flip
        got = infer_probabilities(fused, images, replace(settings, batch_size=batch_size), MEAN, STD)[0]
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        assert fused.calls == calls
    fused.calls.clear()
    no_flip = replace(settings, flip=False)
    torch.testing.assert_close(infer_probabilities(fused, images, no_flip, MEAN, STD)[0],
                               infer_probabilities(model, images, no_flip, MEAN, STD)[0], atol=1e-6, rtol=0)
    assert fused.calls == ["probabilities of 4"]
    fused.calls.clear()
    infer_probabilities(fused, images, replace(settings, average="logits"), MEAN, STD)
    assert set(fused.calls) == {"logits"}


def test_a_compiled_recipe_fuses_the_softmax_into_the_graph_and_keeps_the_protocols_answer(model) -> None:
    from pspnet.engine.recipe import Recipe, inference_forward

    compiled = inference_forward(model, Recipe(fold_bn=True, compile=True), "cpu")
    assert compiled.fused_softmax and not inference_forward(model, Recipe(fold_bn=True), "cpu").fused_softmax
    images = [torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8)]
    settings = InferenceSettings(base_size=None, crop_size=(33, 33), batch_size=4)
    torch.testing.assert_close(infer_probabilities(compiled, images, settings, MEAN, STD)[0],
                               infer_probabilities(model, images, settings, MEAN, STD)[0], atol=1e-5, rtol=0)


def test_settings_given_as_users_write_them_are_read_or_one_line_errors(model) -> None:
    """A number for the crop or the scales is read as the command line reads it; a mapping changes the model's own
    protocol; anything else is a PSPNetError naming the setting (TypeError, AttributeError, or flip='no' taken for
    True before)."""
    assert InferenceSettings(crop_size=64).crop_size == (64, 64) and InferenceSettings(scales=0.5).scales == (0.5,)
    assert InferenceSettings(base_size=0).base_size is None  # as --base-size 0 (refused before)
    for bad, words in (({"crop_size": (1, 2, 3)}, "crop size (1, 2, 3): expected (height, width) or one number"),
                       ({"scales": "x"}, "scales 'x': expected one or more positive numbers"),
                       ({"flip": "no"}, "flip 'no': expected True or False"),
                       ({"base_size": 1.5}, "base size 1.5: expected a whole number")):
        with pytest.raises(PSPNetError, match=f"^{re.escape(words)}$"):
            InferenceSettings(**bad)
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8)
    mapping = pspnet.predict(model, image, settings={"base_size": None, "crop_size": 33, "flip": False})
    given = pspnet.predict(model, image, settings=InferenceSettings(base_size=None, crop_size=(33, 33), flip=False))
    assert (mapping == given).all()
    for settings, words in (({"scale": [1]}, "settings: unknown 'scale'; expected some of base_size, crop_size"),
                            (5, "settings: got int; expected pspnet.InferenceSettings or a mapping")):
        with pytest.raises(PSPNetError, match=f"^{re.escape(words)}"):
            pspnet.predict(model, image, settings=settings)


def test_the_api_names_a_device_it_cannot_use_and_runs_a_half_precision_model_in_fp32(model) -> None:
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8)
    with pytest.raises(PSPNetError, match="^unknown device 'foo'; expected auto, cpu, cuda or cuda:N$"):
        pspnet.predict(model, image, device="foo")
    if not torch.cuda.is_available():  # an AssertionError from torch before
        with pytest.raises(PSPNetError, match="^device 'cuda' asked for, but this machine has no usable CUDA GPU; "
                                              "use device='cpu'$"):
            pspnet.predict(model, image, device="cuda")
    settings = InferenceSettings(base_size=None, crop_size=(33, 33), flip=False)
    half = copy.deepcopy(model).half()  # a RuntimeError (input and bias types differ) before
    labels = pspnet.predict(half, image, settings=settings)
    assert next(half.parameters()).dtype == torch.float16  # the caller's model is left as it was
    assert (labels == pspnet.predict(copy.deepcopy(half).float(), image, settings=settings)).all()
