"""int8 post-training quantisation for OpenVINO with NNCF, calibrated on the user's own images.

The calibration inputs are exactly what the test protocol feeds the network (`network_inputs`: the resize, padding,
windows and mirror images of `InferenceSettings`), so the int8 ranges are those of the inputs the model will see.
Some images are held back from calibration; on them the int8 and the f32 model are run through the same protocol
and their label maps compared pixel by pixel: the agreement that `pspnet quantize` reports and records in the IR.
Needs `pip install 'pspnet[openvino]'` (OpenVINO and NNCF).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pspnet.classes import DatasetInfo
from pspnet.engine.inference import InferenceSettings, network_inputs, segment
from pspnet.errors import PSPNetError
from pspnet.export.openvino import OpenVinoModel, attach_metadata, graph_metadata, require_openvino

INSTALL_HINT = "pip install 'pspnet[openvino]'"
# Left in f32: the resizing and the pyramid's pooling (matrix products). Quantised, their inputs get 8-bit ranges,
# the classifier's logits among them: on PSPNet-50 (random weights, near ties) int8 then agreed with f32 on 97.35% of
# the held-back pixels instead of 99.10%. In f32 they take 12% of its int8 call (BENCHMARKS.md, session 33).
F32_OPS = ("Interpolate", "MatMul")


def require_nncf() -> Any:
    require_openvino()
    try:
        import nncf
    except ImportError:
        raise PSPNetError(f"int8 quantisation needs NNCF: {INSTALL_HINT}") from None
    nncf.set_log_level(logging.WARNING)  # its INFO lines repeat what `pspnet quantize` prints
    return nncf


@dataclass
class Agreement:
    """int8 against f32 on the held-back images, through the protocol: the share of pixels with the same label,
    over all of them and for the worst image."""

    images: int
    pixels: int
    same: float
    worst_image: float


@dataclass
class Quantized:
    graph: Any  # the int8 openvino.Model, metadata attached
    record: dict[str, Any]  # what `pspnet quantize` prints and stores in the IR (rt_info pspnet/quantization)
    agreement: Agreement


def calibration_inputs(images: Sequence[torch.Tensor], settings: InferenceSettings, info: DatasetInfo
                       ) -> list[np.ndarray]:
    """The protocol's network inputs for `images`, each a 1×3×h×w float32 array."""
    return [x[None].numpy().astype(np.float32) for x in network_inputs(images, settings, info.mean, info.std)]


def quantize(f32: OpenVinoModel, calibration: Sequence[torch.Tensor], held_back: Sequence[torch.Tensor],
             settings: InferenceSettings, source: dict[str, Any]) -> Quantized:
    """`f32` (a PSPNet's f32 graph: converted from a checkpoint, or an exported .onnx or IR) quantised to int8 on the
    protocol inputs of `calibration` (uint8 3×H×W images), with its agreement with the f32 graph on `held_back`.
    `source` (file, hash, calibration set) joins the record."""
    nncf = require_nncf()
    ov = require_openvino()
    if not calibration:
        raise PSPNetError("no calibration images")
    info = f32.info
    # As the graph takes them: images for an --image-input graph, one window at a time for a --static-size one.
    inputs = [given for x in network_inputs(calibration, settings, info.mean, info.std)
              for given in f32.graph_inputs(x[None])]
    int8_graph = nncf.quantize(f32.graph, nncf.Dataset(inputs), subset_size=len(inputs),
                               ignored_scope=nncf.IgnoredScope(types=list(F32_OPS), validate=False))
    attach_metadata(int8_graph, graph_metadata(f32.graph))  # the classes, palette, normalisation, kept
    agreement = compare(f32, OpenVinoModel(int8_graph), held_back, settings, info)
    record = {
        **source,
        "calibration_images": len(calibration),
        "calibration_inputs": len(inputs),
        "held_back_images": len(held_back),
        "agreement": asdict(agreement),
        "protocol": asdict(settings),
        "nncf": nncf.__version__,
        "openvino": ov.__version__,
    }
    int8_graph.set_rt_info(json.dumps(record), ["pspnet", "quantization"])
    return Quantized(int8_graph, record, agreement)


def compare(reference: Any, other: Any, images: Sequence[torch.Tensor], settings: InferenceSettings,
            info: DatasetInfo) -> Agreement:
    """Label maps of `other` against `reference` (Forward callables) on `images`, both through the protocol."""
    if not images:
        return Agreement(0, 0, float("nan"), float("nan"))
    ref = segment(reference, images, settings, info.mean, info.std)
    out = segment(other, images, settings, info.mean, info.std)
    counts = [(int((a == b).sum()), a.numel()) for a, b in zip(ref, out, strict=True)]
    pixels = sum(n for _, n in counts)
    return Agreement(len(images), pixels, sum(s for s, _ in counts) / pixels, min(s / n for s, n in counts))
