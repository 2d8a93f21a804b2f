"""The module the exporters trace: the model's logits at input size, plus the label map when asked; with
`image_input`, a graph that takes images as decoders give them (uint8 N×H×W×3 RGB) and normalises them itself."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from pspnet.classes import DatasetInfo
from pspnet.data.imageops import normalize
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet

INPUT_NAME = "input"  # normalised float N×3×H×W, RGB: (rgb / 255 - mean) / std; or, with image_input, uint8 N×H×W×3
LOGITS_NAME = "logits"  # float N×C×H×W, upsampled to the input size inside the graph
LABELS_NAME = "labels"  # int64 N×H×W, argmax over classes (only with argmax=True)
TRACE_SIZE = (97, 129)  # the example input's H×W; its 1/8 map (13×17) is divisible by none of the bins but 1


def as_exported(model: nn.Module, pyramid_at_bins: bool = True) -> nn.Module:
    """`model` in eval mode as every exporter writes it: with the head's convolution taking the pyramid at its bins
    (`pyramid_at_bins`, `pspnet.model.pyramid_conv`: the same function to rounding, 68 of PSPNet-50's 324 GFLOP at
    473×473 fewer; False: the concatenation, to compare them). A shallow copy: the caller's model keeps its
    setting."""
    model = model.eval()
    if not hasattr(model, "pyramid_at_bins"):
        return model
    network = copy.copy(model)
    network.pyramid_at_bins = pyramid_at_bins
    return network


class ExportGraph(nn.Module):
    """`model` (eval mode; as the exporters prepare it, `as_exported`) returning `logits`, or `(logits, labels)` with
    `argmax=True`; with `image_input`, taking uint8 N×H×W×3 RGB images and normalising them with the model's mean
    and std first (`normalize`)."""

    def __init__(self, model: PSPNet | nn.Module, argmax: bool, image_input: bool = False) -> None:
        super().__init__()
        self.model = model
        self.argmax = argmax
        self.image_input = image_input

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.image_input:
            x = normalize(x.permute(0, 3, 1, 2), self.model.info.mean, self.model.info.std)
        logits = self.model(x)
        if self.argmax:
            return logits, logits.argmax(dim=1)
        return logits


def output_names(argmax: bool) -> list[str]:
    return [LOGITS_NAME, LABELS_NAME] if argmax else [LOGITS_NAME]


def example_input(model: PSPNet, size: tuple[int, int], image_input: bool = False) -> torch.Tensor:
    """A random 1×3×H×W input (1×H×W×3 uint8 with `image_input`) to trace with, on the model's device. Shapes are
    recorded symbolically, so any valid size gives the same graph; an odd, non-square one keeps a coincidence of
    sizes from being baked in."""
    device = next(model.parameters()).device
    if image_input:
        return torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, device=device)
    return torch.randn(1, 3, *size, device=device)


def graph_input(x: torch.Tensor, info: DatasetInfo, images: bool) -> torch.Tensor:
    """What an exported graph is given for the protocol's normalised batch `x`: `x` in float32, or for a graph that
    takes `images`, `x` as those images (`as_images`)."""
    return as_images(x, info.mean, info.std) if images else x.to(torch.float32)


def fixed_input_parts(source: str, shape: Sequence[int | None], x: torch.Tensor) -> list[torch.Tensor]:
    """`x` as the inputs a graph with fixed dimensions takes: `shape` is its N, H, W (None where dynamic). A graph
    exported for one size (--static-size) takes that height and width only (an error naming `source` otherwise);
    one exported for batch 1 is given the batch image by image."""
    fixed_n, fixed_h, fixed_w = shape
    if (fixed_h, fixed_w) != (None, None) and (fixed_h, fixed_w) != tuple(x.shape[2:]):
        raise PSPNetError(f"{source}: exported for {fixed_h}×{fixed_w} inputs (--static-size), but the test protocol "
                          f"gives it {x.shape[2]}×{x.shape[3]}; run it in windows of that size (--mode slide "
                          f"--crop-size {fixed_h} {fixed_w}; in Python settings={{'mode': 'slide', 'crop_size': "
                          f"({fixed_h}, {fixed_w})}}), or export without --static-size")
    if fixed_n == 1 and x.shape[0] > 1:
        return list(x.split(1))
    return [x]


def as_images(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A normalised float N×3×H×W batch as the uint8 N×H×W×3 RGB images an `image_input` graph takes: rounded to
    whole levels, which the protocol's windows are unless it resized the image (then within half a level)."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    rgb = ((x * s + m) * 255).round().clamp(0, 255).to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).contiguous()


@contextmanager
def torchscript_quietly() -> Iterator[None]:
    """Silence the warnings tracing always raises here: `check_input`'s shape test becomes a constant (harmless: the
    traced graph needs N×3×H×W input anyway), and torch ≥ 2.9 announces that tracing and the TorchScript-based ONNX
    exporter are deprecated (they still work; see pspnet.export.onnx for why we use them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        yield
