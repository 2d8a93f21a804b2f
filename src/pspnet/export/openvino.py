"""CPU inference through OpenVINO, behind the same interface as a PSPNet: `model(x)` maps a normalised float
N×3×H×W batch (any batch, height and width) to N×C×H×W logits, and `model.info` holds the class names, palette and
mean/std. The inference protocol (`pspnet.engine.inference`) takes it in place of the PyTorch model, so every
backend is scored by the same code. Needs `pip install 'pspnet[openvino]'`.

The graph comes from our model converted in memory (`openvino.convert_model`, the final upsampling written as two
matrix products: `for_openvino`), from an IR written by `pspnet export --format openvino` (`.xml` + `.bin`, the
metadata in its runtime info), or from an ONNX file written by `pspnet export --format onnx` (read by OpenVINO's ONNX
frontend, its metadata with it). `precision` is OpenVINO's inference precision: "f32" keeps the PyTorch answer (to
~1e-7); "bf16" runs natively only on CPUs with AVX-512 BF16 or AMX.

Converting takes seconds (2.2 s for the CamVid PSPNet-18, more than the network's time on a few images), so a
converted graph is kept as an IR in a cache (`$PSPNET_CACHE`, default `$XDG_CACHE_HOME/pspnet` or `~/.cache/pspnet`,
under `openvino/`; `PSPNET_CACHE=none` turns it off), named by a hash of everything the graph depends on: the weights,
the architecture and class metadata, the model code's source files, and the pspnet and OpenVINO versions. The four
graphs used last are kept; a damaged or unreadable entry is converted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pspnet.classes import DatasetInfo
from pspnet.device import MemoryFit, OutOfMemory, cores_shared, engine_threads
from pspnet.errors import PSPNetError
from pspnet.export.graph import (
    INPUT_NAME,
    LOGITS_NAME,
    ExportGraph,
    as_exported,
    example_input,
    fixed_input_parts,
    graph_input,
)
from pspnet.export.metadata import KEYS, info_from_metadata, model_metadata, takes_images

PRECISIONS = ("f32", "bf16")
TRACE_SIZE = (1, 3, 97, 129)  # the example input of the conversion; the graph keeps N, H and W dynamic
CACHE_ENV = "PSPNET_CACHE"
CACHE_OFF = ("none", "off", "0")
CACHED_GRAPHS = 4  # the graphs used last that the cache keeps
# How `convert` writes the graph (`for_openvino`): part of the cache's key, so that a change converts afresh.
CONVERSION = "final upsampling as matmuls, pyramid at its bins, tensors named input and logits"


def require_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise PSPNetError("this needs OpenVINO: pip install 'pspnet[openvino]'") from None
    return openvino


def convert(model: nn.Module, image_input: bool = False, matmul_upsample: bool = True,
            pyramid_at_bins: bool = True) -> Any:
    """An OpenVINO model of our PSPNet (eval mode) with a dynamic N×3×H×W input (with `image_input`, uint8 N×H×W×3
    RGB, normalised inside) and its metadata attached, converted as `for_openvino` prepares it; `matmul_upsample`
    False converts the final upsampling as OpenVINO's Interpolate, `pyramid_at_bins` False the head's convolution
    over the concatenation (to compare them)."""
    ov = require_openvino()
    network = for_openvino(model, matmul_upsample, pyramid_at_bins)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input check, traced as a constant
        try:
            if image_input:
                wrapped = ExportGraph(network, argmax=False, image_input=True)  # type: ignore[arg-type]
                example = example_input(model, TRACE_SIZE[2:], image_input=True)  # type: ignore[arg-type]
                graph = ov.convert_model(wrapped, example_input=example, input=[((-1, -1, -1, 3), ov.Type.u8)])
            else:
                graph = ov.convert_model(network, example_input=torch.zeros(TRACE_SIZE), input=[(-1, 3, -1, -1)])
        except Exception as e:  # Ctrl-C inside the conversion comes back wrapped in OpenVINO's error: an interruption
            if "KeyboardInterrupt" in str(e):
                raise KeyboardInterrupt from None
            raise
    # The names of the ONNX export's graph (the converter names the input after forward's argument, the output not)
    graph.inputs[0].get_tensor().set_names({INPUT_NAME})
    graph.outputs[0].get_tensor().set_names({LOGITS_NAME})
    attach_metadata(graph, model_metadata(model, [LOGITS_NAME], image_input))  # type: ignore[arg-type]
    return graph


def for_openvino(model: nn.Module, matmul_upsample: bool = True, pyramid_at_bins: bool = True) -> nn.Module:
    """`model` in eval mode as it is converted: as every exporter writes it (`as_exported`: the pyramid at its bins),
    and with the final upsampling as two matrix products (`upsample_by_matmul`, the same function to ~1e-7; a
    shallow copy, the caller's model keeps its setting).
    OpenVINO's Interpolate writes the full-resolution logits channels-last, and a reorder to the NCHW output follows:
    for PSPNet-50's 150×473×473 logits the two took 68–69 ms of a 0.45–0.52 s int8 call; the matrix products, which
    write NCHW, about 20 ms less. Their cost grows with the logits' width (the crossover near inputs ~1000 px wide,
    beyond the protocols' windows; BENCHMARKS.md, session 33)."""
    network = as_exported(model, pyramid_at_bins)
    if network is not model:  # (a PSPNet: a copy whose switches are ours)
        network.upsample_by_matmul = matmul_upsample
    return network


def cache_folder() -> Path | None:
    """Where converted graphs are kept (see the module docstring); None when the cache is turned off."""
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in CACHE_OFF:
        return None
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pspnet")
    return Path(root) / "openvino"


def graph_key(model: nn.Module) -> str:
    """A hash of everything the converted graph of `model` depends on."""
    import pspnet

    ov = require_openvino()
    h = hashlib.sha256(f"pspnet {pspnet.__version__}, openvino {ov.get_version()}, {CONVERSION}".encode())
    for source in sorted((Path(pspnet.__file__).parent / "model").glob("*.py")):  # the forward code
        h.update(source.read_bytes())
    h.update(json.dumps(model_metadata(model, [LOGITS_NAME]), sort_keys=True).encode())  # type: ignore[arg-type]
    for name, tensor in model.state_dict().items():
        h.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


def cached_convert(model: nn.Module, core: Any) -> tuple[Any, str]:
    """`convert(model)`, from the cache when it holds the graph (read by `core`, the openvino.Core that compiles
    it; else converted and put there); and where it came from, in words."""
    folder = cache_folder()
    if folder is None:
        return convert(model), "the model, converted in memory (cache off)"
    path = folder / f"{graph_key(model)}.xml"
    if path.is_file() and path.with_suffix(".bin").is_file():
        try:
            graph = core.read_model(str(path))
            if graph_metadata(graph) == model_metadata(model, [LOGITS_NAME]):  # type: ignore[arg-type]
                with contextlib.suppress(OSError):  # a read-only cache (filled in a container image) is read still
                    os.utime(path)  # used last: kept longest
                return graph, f"the model, converted earlier ({path})"
        except Exception:  # noqa: BLE001, S110  (a damaged entry: converted again below)
            pass
    graph = convert(model)
    try:
        save_ir(graph, path)
        _evict(folder)
        # Run as it was written, so that this run's answer is bit for bit that of the next runs, which read the
        # cache: the graph in memory and the graph read back gave outputs up to 4e-9 apart (with the upsampling's
        # matrix products).
        written = read_graph(path, core)
    except (OSError, PSPNetError) as e:
        print(f"warning: cannot keep the converted model in {folder} ({e}); {CACHE_ENV}=DIR for another folder, "
              f"{CACHE_ENV}=none to stop trying", file=sys.stderr)
        return graph, "the model, converted in memory"
    return written, f"the model, converted (kept in {path})"


def _evict(folder: Path) -> None:
    """Remove all but the CACHED_GRAPHS graphs used last."""
    graphs = sorted(folder.glob("*.xml"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in graphs[CACHED_GRAPHS:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".bin").unlink(missing_ok=True)


def attach_metadata(graph: Any, metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        graph.set_rt_info(value, ["pspnet", key])


def graph_metadata(graph: Any) -> dict[str, str]:
    """What `attach_metadata` put into the graph (an IR read back keeps it), or for an ONNX file read by OpenVINO,
    the `metadata_props` that `pspnet export` wrote (OpenVINO's ONNX frontend puts them under "framework")."""
    found = {}
    for key in KEYS:
        section = next((s for s in ("pspnet", "framework") if graph.has_rt_info([s, key])), None)
        if section is not None:
            found[key] = graph.get_rt_info([section, key]).astype(str)
    return found


def quantization_record(graph: Any) -> dict[str, Any] | None:
    """The record `pspnet quantize` keeps in an int8 graph (calibration set, agreement, versions); None for f32."""
    if not graph.has_rt_info(["pspnet", "quantization"]):
        return None
    return json.loads(graph.get_rt_info(["pspnet", "quantization"]).astype(str))


def read_graph(path: Path, core: Any) -> Any:
    """The `openvino.Model` of an IR (.xml, its .bin beside it) or an ONNX file (not compiled); a missing or
    unreadable file is an error naming it."""
    onnx = path.suffix.lower() == ".onnx"
    if not path.is_file():
        raise PSPNetError(f"{path}: no such {'ONNX' if onnx else 'OpenVINO IR'} file")
    with open(path, "rb") as f:
        head = f.read(512).lstrip()
    # Told apart here: given anything else, OpenVINO tries every frontend, noisily.
    if not onnx and not (head.startswith(b"<?xml") or head.startswith(b"<net")):
        raise PSPNetError(f"{path}: not an OpenVINO IR (an XML file starting with <?xml or <net, with its .bin "
                          "beside it)")
    if not onnx and not path.with_suffix(".bin").is_file():  # OpenVINO's own words name no file
        raise PSPNetError(f"{path}: its weights file {path.with_suffix('.bin')} is missing (an IR is the .xml and the "
                          ".bin beside it, of the same name)")
    try:
        return core.read_model(str(path))
    except Exception as e:  # OpenVINO's errors derive from Exception only
        # Its text runs from where it was raised ("Exception from src/…:84:") to the reason, on the last line.
        raise PSPNetError(f"{path}: OpenVINO cannot read it ({str(e).strip().splitlines()[-1]})") from None


def export_openvino(model: nn.Module, path: str | Path, image_input: bool = False) -> Path:
    """Write the IR (`path` .xml and its .bin) with the model's metadata; `image_input`: see `convert`."""
    return save_ir(convert(model, image_input), path)


def save_ir(graph: Any, path: str | Path) -> Path:
    """Write an OpenVINO model as `path` (.xml) and its .bin, weights as they are (no fp16 compression)."""
    ov = require_openvino()
    path = Path(path)
    if path.suffix != ".xml":
        raise PSPNetError(f"--out {path}: an OpenVINO IR is a .xml file (with a .bin beside it); name it *.xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    # OpenVINO writes NAME.xml and NAME.bin itself: into a temporary folder beside, then both moved into place
    # (the .bin first, so that a .xml never points at a missing or half-written .bin).
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        try:
            ov.save_model(graph, str(Path(tmp) / path.name), compress_to_fp16=False)
        except RuntimeError as e:  # its C++ stream's words ("basic_ios::clear: iostream error"): no errno to show
            free = shutil.disk_usage(tmp).free
            raise PSPNetError(f"{path}: OpenVINO could not write the IR ({str(e).splitlines()[0]}; "
                              f"{free / 2**20:.0f} MiB free there)") from None
        os.replace(Path(tmp) / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(Path(tmp) / path.name, path)
    return path


# The CPU plugin's texts when it cannot allocate a buffer (openvino 2026.4 under an address-space limit:
# "[CPU] Transpose node with name '…' can't alloc"; its memory manager's "Failed to allocate N bytes").
ALLOCATION_FAILURES = ("can't alloc", "Failed to allocate ", "Could not allocate memory")


def compile_settings(precision: str) -> dict[str, Any]:
    """The CPU plugin's settings: `precision`, and the threads of this process (`engine_threads`), unpinned where
    torchrun's processes share the cores (the plugin's defaults, a thread per core in every process pinned to the
    same cores, gave 2 processes on 2 cores 1/1.12 of the images per second: BENCHMARKS.md)."""
    settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if (threads := engine_threads()) is not None:
        settings["INFERENCE_NUM_THREADS"] = threads
    if cores_shared():
        settings["ENABLE_CPU_PINNING"] = False
    return settings


class OpenVinoModel:
    """A PSPNet (converted in memory) or an IR file, compiled for the CPU at `precision`."""

    quantization: dict[str, Any] | None = None  # an int8 IR's record of its calibration (`pspnet quantize`)
    memory_fit: MemoryFit | None = None  # set: the test protocol runs a batch that does not fit in parts

    def __init__(self, source: nn.Module | str | Path | Any, precision: str = "f32", cache: bool = True) -> None:
        """`source`: a PSPNet (converted, through the cache unless `cache` is False), an IR file, or an
        `openvino.Model` carrying our metadata."""
        ov = require_openvino()
        if precision not in PRECISIONS:
            raise PSPNetError(f"OpenVINO precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        core = ov.Core()
        if isinstance(source, nn.Module):
            if cache:
                graph, self.source = cached_convert(source, core)
            else:
                graph, self.source = convert(source), "the model, converted in memory"
        elif isinstance(source, (str, Path)):
            graph, self.source = read_graph(Path(source), core), str(source)
        else:
            graph = source
            self.source = "an OpenVINO model in memory"
        metadata = graph_metadata(graph)
        self.info: DatasetInfo = info_from_metadata(metadata, self.source)
        self.takes_images = takes_images(metadata)  # an IR exported with --image-input
        shape = [d.get_length() if d.is_static else None for d in graph.inputs[0].get_partial_shape()]
        self.input_shape = shape[:3] if self.takes_images else [shape[0], *shape[2:]]  # N, H, W; None: dynamic
        self.quantization = quantization_record(graph)
        self.precision = precision
        self._core, self.graph = core, graph  # an IR's weights are mapped from its file, not held twice
        self._compile()

    def _compile(self) -> None:
        self.compiled = self._core.compile_model(self.graph, "CPU", compile_settings(self.precision))
        self.request: Any = self.compiled.create_infer_request()

    def describe(self) -> str:
        if self.quantization is not None:  # int8 where quantised, `precision` for the rest
            return f"OpenVINO int8 ({self.precision} elsewhere)"
        return f"OpenVINO {self.precision}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalised N×3×H×W batch."""
        logits = [self._run(given).to(x.device) for given in self.graph_inputs(x)]
        return logits[0] if len(logits) == 1 else torch.cat(logits)

    def lend(self, x: torch.Tensor) -> torch.Tensor:
        """`self(x)` in the request's own output buffer, not copied out: valid until this model's next call (the
        test protocol adds each batch's logits into its sums at once: `pspnet.engine.inference.LendingForward`). The
        copy into fresh memory took 44 ms of a 0.45 s PSPNet-50 int8 call (150×473×473 logits; BENCHMARKS.md)."""
        given = self.graph_inputs(x)
        if len(given) > 1:  # a --static-size graph, run piece by piece: each piece's call reuses the buffer
            return self(x)
        return self._run(given[0], lend=True).to(x.device)

    def graph_inputs(self, x: torch.Tensor) -> list[np.ndarray]:
        """What the graph is given for a normalised N×3×H×W batch: in the pieces a graph with fixed dimensions takes
        (an ONNX file exported with --static-size), as images for a graph that takes them (--image-input)."""
        return [np.ascontiguousarray(graph_input(part, self.info, self.takes_images).detach().cpu().numpy())
                for part in fixed_input_parts(self.source, self.input_shape, x)]

    def _run(self, given: np.ndarray, lend: bool = False) -> torch.Tensor:
        """The graph's output for `given`: a copy, or with `lend` the request's own buffer (see `lend`)."""
        failure = None
        try:
            if self.request is None:  # compiled afresh after running out of memory (below)
                self._compile()
            logits = self.request.infer([given], share_outputs=lend)[0]
            if np.size(logits) == 0 < given.size:  # how one thread answered an allocation it could not make
                failure = f"it returned an empty output, of shape {tuple(np.shape(logits))}"
                del logits  # a view of the request's buffers
        except (RuntimeError, MemoryError) as e:  # std::bad_alloc arrives as MemoryError
            text = str(e).strip()
            if not isinstance(e, MemoryError) and not any(t in text for t in ALLOCATION_FAILURES):
                raise
            failure = text.splitlines()[-1] if text else "std::bad_alloc"
        if failure is not None:  # out of the except block, whose traceback holds the request
            # The CPU plugin keeps the failed shape's buffers in its compiled graph (and has crashed on the next
            # inference through it): the next call compiles the graph afresh, after this one is released.
            self.request = self.compiled = None
            raise OutOfMemory(f"OpenVINO could not allocate memory for an input of shape {tuple(given.shape)}: "
                              f"{failure}")
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))
