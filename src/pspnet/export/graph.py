"""The module that both exporters trace: the model's logits at input size, plus the label map when asked."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pspnet.model.pspnet import PSPNet

INPUT_NAME = "input"  # normalised float N×3×H×W, RGB: (rgb / 255 - mean) / std
LOGITS_NAME = "logits"  # float N×C×H×W, upsampled to the input size inside the graph
LABELS_NAME = "labels"  # int64 N×H×W, argmax over classes (only with argmax=True)
TRACE_SIZE = (97, 129)  # the example input's H×W; its 1/8 map (13×17) is divisible by none of the bins but 1


class ExportGraph(nn.Module):
    """`model` in eval mode returning `logits`, or `(logits, labels)` with `argmax=True`."""

    def __init__(self, model: PSPNet, argmax: bool) -> None:
        super().__init__()
        self.model = model
        self.argmax = argmax

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        if self.argmax:
            return logits, logits.argmax(dim=1)
        return logits


def output_names(argmax: bool) -> list[str]:
    return [LOGITS_NAME, LABELS_NAME] if argmax else [LOGITS_NAME]


def example_input(model: PSPNet, size: tuple[int, int]) -> torch.Tensor:
    """A random 1×3×H×W input to trace with, on the model's device. Shapes are recorded symbolically, so any valid
    size gives the same graph; an odd, non-square one keeps a coincidence of sizes from being baked in."""
    device = next(model.parameters()).device
    return torch.randn(1, 3, *size, device=device)


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
