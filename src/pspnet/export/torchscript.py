"""Export a PSPNet to TorchScript (traced; any batch, height and width), metadata in `_extra_files`, and load it.

A traced module keeps the device it was traced on in its constants: export on the device it will run on.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from pspnet.classes import DatasetInfo
from pspnet.errors import PSPNetError
from pspnet.export.graph import (
    TRACE_SIZE,
    ExportGraph,
    as_exported,
    example_input,
    graph_input,
    output_names,
    torchscript_quietly,
)
from pspnet.export.metadata import KEYS, info_from_metadata, model_metadata, takes_images
from pspnet.files import write_atomically
from pspnet.model.pspnet import PSPNet


def export_torchscript(model: PSPNet, path: str | Path, *, argmax: bool = False, image_input: bool = False) -> Path:
    """Write `model` traced to TorchScript: normalised float N×3×H×W in (with `image_input` uint8 N×H×W×3 RGB,
    normalised inside), logits N×C×H×W out (and, with `argmax`, int64 labels N×H×W). Class names, palette,
    mean/std, settings and the input's kind travel in the archive's extra files."""
    path = Path(path)
    was_training = model.training
    graph = ExportGraph(as_exported(model), argmax, image_input).eval()
    try:
        with torchscript_quietly(), torch.no_grad():
            traced = torch.jit.trace(graph, example_input(model, TRACE_SIZE, image_input))
            extra = model_metadata(model, output_names(argmax), image_input)
            # Saved to memory, then written: on a full disk torch.jit.save's own writer fails twice, the second
            # time in a destructor, which aborts the process (torch 2.13) and leaves its temporary file behind.
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files=extra)
            write_atomically(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))
    finally:
        model.train(was_training)
    return path


class TorchScriptModel:
    """A TorchScript file written by `export_torchscript`: call it with a normalised float N×3×H×W batch to get the
    N×C×H×W logits (a graph that takes images gets them as such: `as_images`); `info` holds the class names,
    palette and mean/std."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PSPNetError(f"{self.path}: no such TorchScript file")
        extra = dict.fromkeys(KEYS, "")
        try:
            with torchscript_quietly():
                self.module = torch.jit.load(str(self.path), map_location=device, _extra_files=extra)
        except (RuntimeError, ValueError) as e:
            raise PSPNetError(f"{self.path}: not a TorchScript file ({str(e).strip().splitlines()[0]})") from None
        read = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
        self.metadata = {k: v for k, v in read.items() if v}  # an entry the archive lacks reads as ""
        self.info: DatasetInfo = info_from_metadata(self.metadata, str(self.path))
        self.takes_images = takes_images(self.metadata)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.module(graph_input(x, self.info, self.takes_images))
        return out[0] if isinstance(out, tuple) else out
