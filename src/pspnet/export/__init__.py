"""Deployment: export a PSPNet to ONNX or TorchScript with its metadata, and run an ONNX file with ONNX Runtime.

    from pspnet.export import export_onnx, export_torchscript, OnnxRuntimeModel
    export_onnx(pspnet.load("model.safetensors"), "model.onnx")         # dynamic batch, height and width
    model = OnnxRuntimeModel("model.onnx"); logits = model(x)           # x: normalised float N×3×H×W
"""

from pspnet.export.graph import INPUT_NAME, LABELS_NAME, LOGITS_NAME
from pspnet.export.metadata import info_from_metadata, model_metadata
from pspnet.export.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, export_onnx, read_onnx_metadata
from pspnet.export.onnx_runtime import OnnxRuntimeModel
from pspnet.export.torchscript import TorchScriptModel, export_torchscript

__all__ = [
    "INPUT_NAME", "LOGITS_NAME", "LABELS_NAME", "DEFAULT_OPSET", "MIN_OPSET", "MAX_OPSET",
    "export_onnx", "read_onnx_metadata", "export_torchscript", "TorchScriptModel", "OnnxRuntimeModel",
    "model_metadata", "info_from_metadata",
]
