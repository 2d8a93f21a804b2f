"""Export a PSPNet to ONNX: dynamic batch, height and width; metadata in `metadata_props`.

We use PyTorch's TorchScript-based exporter (`dynamo=False`): it needs no package beyond `onnx`, exports a
PSPNet-18 in seconds, and our pyramid pooling (`pspnet.model.adaptive_pool`) traces into size-generic ops. The
torch.export-based exporter gives the same graph numbers too, but needs `onnxscript` and is ~10× slower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pspnet.errors import PSPNetError
from pspnet.export.graph import (
    INPUT_NAME,
    TRACE_SIZE,
    ExportGraph,
    as_exported,
    example_input,
    output_names,
    torchscript_quietly,
)
from pspnet.export.metadata import model_metadata
from pspnet.files import write_atomically
from pspnet.model.pspnet import PSPNet

MIN_OPSET = 11  # Resize with align_corners and Range (the pooling matrices) arrive in opset 11
# ... but opset 11's Clip takes no int64: with dynamic sizes, ONNX Runtime and OpenVINO refuse the graph it gives
MIN_DYNAMIC_OPSET = 12
MAX_OPSET = 20  # the highest the TorchScript-based exporter writes
DEFAULT_OPSET = 17


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise PSPNetError("ONNX files (export, info) need the onnx package: pip install 'pspnet[export]'") from None
    return onnx


def check_opset(opset: int, static: bool = False) -> None:
    """`static`: the graph takes a fixed size (--static-size)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PSPNetError(f"ONNX opset {opset} is not supported; expected {MIN_DYNAMIC_OPSET} to {MAX_OPSET} "
                          f"(default {DEFAULT_OPSET}; {MIN_OPSET} with --static-size)")
    if opset < MIN_DYNAMIC_OPSET and not static:
        raise PSPNetError(f"ONNX opset {opset} writes a graph of any input size that ONNX Runtime and OpenVINO cannot "
                          f"load; expected {MIN_DYNAMIC_OPSET} to {MAX_OPSET}, or {opset} with --static-size H W")


def export_onnx(
    model: PSPNet,
    path: str | Path,
    *,
    argmax: bool = False,
    opset: int = DEFAULT_OPSET,
    static_size: tuple[int, int] | None = None,
    image_input: bool = False,
) -> Path:
    """Write `model` as an ONNX graph: input `input` (normalised float N×3×H×W; with `image_input` uint8 N×H×W×3
    RGB, normalised inside), output `logits` (N×C×H×W) and, with `argmax`, `labels` (int64 N×H×W). Batch, height
    and width are dynamic unless `static_size` = (H, W) fixes them (batch 1). The file carries class names,
    palette, mean/std, the model settings and the input's kind as metadata."""
    onnx = require_onnx()
    check_opset(opset, static=static_size is not None)
    path = Path(path)
    outputs = output_names(argmax)
    dynamic_axes = None
    if static_size is None:
        image_axes = {0: "batch", 2: "height", 3: "width"}  # N×·×H×W: the input and the logits
        dynamic_axes = {INPUT_NAME: {0: "batch", 1: "height", 2: "width"} if image_input else image_axes,
                        outputs[0]: image_axes}
        if argmax:
            dynamic_axes[outputs[1]] = {0: "batch", 1: "height", 2: "width"}  # labels N×H×W
    x = example_input(model, static_size or TRACE_SIZE, image_input)
    was_training = model.training
    graph = ExportGraph(as_exported(model), argmax, image_input).eval()

    def write(tmp: str) -> None:
        with torchscript_quietly(), torch.no_grad():
            torch.onnx.export(graph, (x,), tmp, input_names=[INPUT_NAME], output_names=outputs,
                              opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False)
        proto = onnx.load(tmp)
        # The exporter names the logits' class axis symbolically ("Resizelogits_dim_1"): the class count, so that
        # the output's shape can be read from the graph
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = model.config.num_classes
        for key, value in model_metadata(model, outputs, image_input, static_size).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)

    try:
        write_atomically(path, write)
    finally:
        model.train(was_training)
    return path


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file, as a dict (the weights are not loaded)."""
    onnx = require_onnx()
    from google.protobuf.message import DecodeError  # protobuf comes with onnx

    if not Path(path).is_file():
        raise PSPNetError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as e:
        raise PSPNetError(f"{path}: not an ONNX file ({type(e).__name__}: {e})") from None
    return {p.key: p.value for p in proto.metadata_props}
