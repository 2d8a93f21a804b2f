"""Run an ONNX file written by `pspnet export` with ONNX Runtime, behind the same interface as a PSPNet: a
callable from a normalised float N×3×H×W batch to N×C×H×W logits, plus `info`. The inference protocol
(`pspnet.engine.inference`) takes it in place of the PyTorch model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pspnet.classes import DatasetInfo
from pspnet.device import MemoryFit, OutOfMemory, engine_threads
from pspnet.errors import PSPNetError
from pspnet.export.graph import INPUT_NAME, LOGITS_NAME, fixed_input_parts, graph_input
from pspnet.export.metadata import info_from_metadata, takes_images


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise PSPNetError("the onnxruntime backend needs onnxruntime: pip install 'pspnet[export]'") from None
    return onnxruntime


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for a torch device: CUDA first when the device is a GPU and this onnxruntime
    build has CUDA (onnxruntime-gpu), else the CPU — so `--device auto` works with the plain CPU package too."""
    if device.type == "cuda" and "CUDAExecutionProvider" in require_onnxruntime().get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(ort: Any) -> Any:
    """The threads of this process (`engine_threads`; ONNX Runtime pins its threads only when it picks their count
    itself, so a count given here leaves them unpinned), else ONNX Runtime's own choice."""
    options = ort.SessionOptions()
    if (threads := engine_threads()) is not None:
        options.intra_op_num_threads = threads
    return options


# ONNX Runtime's texts when it cannot allocate a buffer (1.32 under an address-space limit: its arena's "Failed to
# allocate memory for requested buffer of size N"; the CPU allocator's std::bad_alloc, "bad allocation").
ALLOCATION_FAILURES = ("Failed to allocate memory", "bad allocation", "bad_alloc")


class OnnxRuntimeModel:
    """An ONNX file written by `pspnet export`, run by ONNX Runtime: `model(x)` with a normalised float N×3×H×W
    tensor returns the N×C×H×W logits as a torch tensor on x's device; `model.info` holds the class names, palette
    and mean/std from the file's metadata."""

    memory_fit: MemoryFit | None = None  # set: the test protocol runs a batch that does not fit in parts

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4  # a failed run is raised with its message: no second copy in red
        if not self.path.is_file():
            raise PSPNetError(f"{self.path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(ort),
                                                providers=providers_for(torch.device(device)))
        except Exception as e:  # onnxruntime's errors (Fail, InvalidProtobuf...) derive from Exception only
            raise PSPNetError(f"{self.path}: ONNX Runtime cannot load it ({str(e).strip().splitlines()[0]})") from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info: DatasetInfo = info_from_metadata(self.metadata, str(self.path))
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs[0] != LOGITS_NAME:
            raise PSPNetError(f"{self.path}: graph inputs {inputs} and outputs {outputs}; expected input "
                              f"{INPUT_NAME!r} and first output {LOGITS_NAME!r}, as `pspnet export` writes")
        self.takes_images = takes_images(self.metadata)  # uint8 N×H×W×3 (--image-input)
        # Fixed dimensions are ints (an export with --static-size), dynamic ones names; as N, H, W.
        shape = [d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape]
        self.input_shape = shape[:3] if self.takes_images else [shape[0], *shape[2:]]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalised N×3×H×W batch (given as images to a graph that takes them: `as_images`), in the
        pieces a graph with fixed dimensions takes (`fixed_input_parts`)."""
        logits = [self._run(part) for part in fixed_input_parts(str(self.path), self.input_shape, x)]
        return logits[0] if len(logits) == 1 else torch.cat(logits)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(graph_input(x, self.info, self.takes_images).detach().cpu().numpy())
        try:
            (logits,) = self.session.run([LOGITS_NAME], {INPUT_NAME: array}, self.run_options)
        except Exception as e:  # onnxruntime's errors derive from Exception only
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if isinstance(e, MemoryError) or any(t in str(e) for t in ALLOCATION_FAILURES):
                raise OutOfMemory(f"ONNX Runtime could not allocate memory for an input of shape "
                                  f"{tuple(array.shape)}: {first}") from None
            raise PSPNetError(f"{self.path}: ONNX Runtime failed on an input of shape {tuple(array.shape)} "
                              f"({first})") from None
        return torch.from_numpy(logits).to(x.device)
