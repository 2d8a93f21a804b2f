"""Execution recipes for the network: the reference (eager fp32 NCHW, as the official code) and the fast paths.

A `Recipe` names how a PSPNet runs, never what it computes: BatchNorm folded into the preceding convolutions,
channels_last memory format, autocast to bf16/fp16, `torch.compile` (with Inductor's weight freezing in inference).
`inference_forward(model, recipe, device)` turns a model into the `Forward` callable that the test protocol
(`pspnet.engine.inference`) takes; `training_model(...)` prepares a copy for training steps.

`default_recipe` is what runs unless the user asks for more: fp32 everywhere (headline metrics are the fp32
protocol's). `fast_recipe` (`--fast`) holds the measured fast choice per device type, and `pspnet bench` measures
every switch against the reference (figures and commands in BENCHMARKS.md). The trainer runs its steps through the
same `Recipe` (`training_model`, `autocast`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pspnet.device import OPTIONS, SETTINGS_FIELDS, MemoryFit, MemorySettings, bf16_units, resolve_device
from pspnet.engine.inference import Forward
from pspnet.errors import PSPNetError
from pspnet.model.fold import fold_batchnorm

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

@dataclass(frozen=True)
class Recipe:
    """How the network is executed. `Recipe()` is the reference: eager, fp32, NCHW, BatchNorm as separate layers.

    fold_bn: fold eval-mode BatchNorm into the preceding convolution's weight and bias (inference only).
    channels_last: weights and inputs in NHWC memory order (oneDNN / cuDNN kernels without layout conversions).
    precision: "fp32", or "bf16" / "fp16" autocast (logits are returned as fp32 either way).
    compile: `torch.compile` the model (Inductor); in inference with `freezing`, which constant-folds the weights,
        prepacks them for oneDNN on the CPU and fuses BN/ReLU/adds into the convolutions.
    compile_mode: torch.compile's mode; "reduce-overhead" adds CUDA graphs for fixed-size inference on GPUs.
    int8: post-training int8 quantisation (CPU inference, `pspnet.export.quantize`; needs calibration inputs and
        compilation, serves one input shape).
    tf32: on GPUs, fp32 as PyTorch's defaults run it (cuDNN convolutions may use TF32 tensor cores): how the
        official code runs, the bench's reference. Off (the default), fp32 means fp32: TF32 is disabled while it runs.
    matmul_upsample: the final upsampling to the input size as two matrix products (`pspnet.model.upsample`): the
        same function; in training its backward is two GEMMs instead of a scatter-add (47% of the fast training
        step's device time on an H100, BENCHMARKS.md).
    pyramid_at_bins: the head's 3×3 convolution takes the pyramid's branches at their bins, before upsampling
        (`pspnet.model.pyramid_conv`): the same function, 68 of PSPNet-50's 324 GFLOP at 473×473 fewer.
    cudnn_benchmark: on GPUs, cuDNN times its convolution algorithms at each new input shape and keeps the fastest
        (`torch.backends.cudnn.benchmark`; mmsegmentation's default) instead of its heuristic choice; worth it
        for fixed sizes (training crops, sliding windows), a cost at every new size of whole-image inference.
    activation_checkpointing: in training, the backbone keeps only each residual block's input and computes the
        rest again in the backward pass (`pspnet.model.recompute`): the same gradients, less memory, more compute.
    """

    fold_bn: bool = False
    channels_last: bool = False
    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    int8: bool = False
    matmul_upsample: bool = False
    pyramid_at_bins: bool = False
    tf32: bool = False
    cudnn_benchmark: bool = False
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise PSPNetError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.compile_mode not in COMPILE_MODES:
            raise PSPNetError(f"compile mode {self.compile_mode!r}: expected one of {', '.join(COMPILE_MODES)}")
        if self.int8 and (not self.compile or self.precision != "fp32"):
            raise PSPNetError("int8 quantisation runs compiled and without autocast: use it with compile, fp32")

    def describe(self) -> str:
        parts = ["int8" if self.int8 else self.precision]
        if self.fold_bn:
            parts.append("BN folded")
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compiled" + ("" if self.compile_mode == "default" else f" ({self.compile_mode})"))
        if self.matmul_upsample:
            parts.append("upsample as matmuls")
        if self.pyramid_at_bins:
            parts.append("pyramid at its bins")
        if self.tf32:
            parts.append("PyTorch's default TF32 convolutions")
        if self.cudnn_benchmark:
            parts.append("cuDNN autotuned")
        if self.activation_checkpointing:
            parts.append("activation checkpointing")
        return ", ".join(parts) if len(parts) > 1 else f"eager {parts[0]}"


REFERENCE = Recipe()
OFFICIAL = Recipe(tf32=True)  # eager fp32 exactly as the official code runs, GPUs' default TF32 convolutions included


def default_recipe(device: torch.device | str, training: bool = False) -> Recipe:
    """What runs unless the user asks for more: fp32 on every device, so that a headline mIoU is the fp32 protocol's.
    Inference folds BatchNorm into the convolutions (the same function to ~1e-7, one pass fewer), and on CPUs the
    head's convolution takes the pyramid at its bins (the same function to ~1e-7; PSPNet-50 at 473×473 1.13–1.22× faster
    in eager fp32, OpenVINO f32 1.27×: BENCHMARKS.md; on GPUs not yet measured, so off). Training runs the eager
    reference."""
    if training:
        return REFERENCE
    return Recipe(fold_bn=True, pyramid_at_bins=torch.device(device).type == "cpu")


def training_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """`train.precision` → ("fp32" | "bf16", why). "auto" is bf16 on a CPU whose bf16 units outrun fp32 (AMX, or
    AVX-512 BF16 on an AMD CPU: `Bf16Units`): the CamVid recipe in bf16 kept its val mIoU within the run-to-run
    spread of fp32 (BENCHMARKS.md); fp32 elsewhere (bf16 is emulated, or runs on units no faster than fp32's; on
    GPUs the fast recipe is asked for with train.precision=bf16 and its companions)."""
    if requested != "auto":
        return requested, "as configured"
    if device.type != "cpu":
        return "fp32", f"auto → fp32 on {device.type} (train.precision=bf16 for the fast recipe)"
    units = bf16_units()
    if units.kind == "fast":
        return "bf16", f"auto → bf16: this CPU has bf16 units ({units.flags}); train.precision=fp32 for fp32"
    if units.kind == "slow":
        return "fp32", f"auto → fp32: {units.slower()}"
    return "fp32", f"auto → fp32: this CPU has no bf16 units ({units.flags})"


def fast_recipe(device: torch.device | str, training: bool = False) -> Recipe:
    """`--fast`: the fastest recipe measured for this device type (BENCHMARKS.md); it may move a few pixels.

    CUDA: bf16 autocast, channels_last and compilation; inference folds BatchNorm too; training computes the final
    upsampling as matrix products (on an H100, PSPNet-50 at 473×473: 199 img/s against 89 for eager bf16 +
    channels_last and 69 for the official eager fp32; on CamVid, val mIoU within the spread of fp32 runs).
    CPU: the fp32 default, and in training the pyramid at its bins too (a PSPNet-50 step at 473×473 1.32×, the
    CamVid model's 1.04–1.05×): bf16 is emulated and far slower on CPUs without bf16 units, and compiling (40 s per
    input shape) and channels_last measured no faster on a 2-core AVX2 CPU; compiled training measured 0.75×. (The
    trainer turns `train.fast` on a CPU into `train.precision: auto`, which picks bf16 where the CPU's bf16 units
    outrun fp32.)
    """
    if torch.device(device).type == "cuda":
        if training:
            return Recipe(channels_last=True, precision="bf16", compile=True, matmul_upsample=True)
        return Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True)
    return replace(default_recipe(device, training), pyramid_at_bins=True)


def autocast(recipe: Recipe, device: torch.device) -> AbstractContextManager[object]:
    dtype = PRECISIONS[recipe.precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextmanager
def cudnn_autotune(recipe: Recipe) -> Iterator[None]:
    """`torch.backends.cudnn.benchmark` on while a recipe with `cudnn_benchmark` runs (forward and backward),
    restored after; other recipes leave the setting as it is."""
    if not recipe.cudnn_benchmark:
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


class _Output(nn.Module):
    """The network and what its caller takes from it, compiled as one graph: fp32 logits (in the network's memory
    format), or with `softmax` the class probabilities, written in NCHW order by the last fused kernel. Eager, the
    cast, the layout change and the softmax are each a pass over N×C×H×W values; on an H100 they were most of the
    protocol's own 18.8 ms for 16 windows of 150 classes (BENCHMARKS.md).

    `mirrored` (with `softmax`): the network also runs each input's mirror image, in the same batch, and each
    output is the input's probabilities plus its mirror's flipped back: the protocol's flip pair summed inside the
    graph, without the flips and additions at full resolution that the protocol would otherwise make."""

    def __init__(self, net: nn.Module, softmax: bool, mirrored: bool = False) -> None:
        super().__init__()
        self.net = net
        self.softmax = softmax
        self.mirrored = mirrored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mirrored:
            x = torch.cat([x, x.flip(-1)])
        y = self.net(x).float()
        if not self.softmax:
            return y
        p = torch.softmax(y, dim=1)
        if self.mirrored:
            half = p.shape[0] // 2
            p = p[:half] + p[half:].flip(-1)
        return p.contiguous()


class CompiledForward:
    """A model run by a recipe: batch N×3×h×w on any device → fp32 logits N×C×h×w on `device`.

    Compiled, it also offers `probabilities(x)`, the softmax over the classes fused into the network's graph
    (`fused_softmax`), which the test protocol uses instead of its own softmax. `memory_fit`: the test protocol runs
    batches that do not fit in memory in parts (`pspnet.device.MemoryFit`)."""

    def __init__(self, model: nn.Module, recipe: Recipe, device: torch.device | str,
                 calibration: Sequence[torch.Tensor] = (), memory_fit: MemoryFit | None = None) -> None:
        self.recipe = recipe
        self.device = torch.device(device)
        self.memory_fit = memory_fit
        net = fold_batchnorm(model) if recipe.fold_bn else model.eval()
        if recipe.matmul_upsample or recipe.pyramid_at_bins:
            net = net if net is not model else copy.deepcopy(model)  # switches on our copy, not the caller's model
            net.upsample_by_matmul = recipe.matmul_upsample
            net.pyramid_at_bins = recipe.pyramid_at_bins
        net = net.to(self.device)
        self.memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
        if recipe.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if recipe.int8:
            from pspnet.export.quantize import quantize_int8

            net = quantize_int8(net, [x.to(self.device).contiguous(memory_format=self.memory_format)
                                      for x in calibration])
        self.model = net
        self.net = self._graph(softmax=False, mirrored=False) if recipe.compile else net
        self._probabilities: dict[bool, Callable[[torch.Tensor], torch.Tensor]] = {}  # built at their first call

    @property
    def fused_softmax(self) -> bool:
        """Compiled recipes compute the softmax in the network's graph (`probabilities`)."""
        return self.recipe.compile

    def _graph(self, softmax: bool, mirrored: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        out = _Output(self.model, softmax, mirrored)
        return torch.compile(out, mode=_mode(self.recipe), dynamic=False) if self.recipe.compile else out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.net, x)

    def probabilities(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
        """softmax(logits) over the classes, fp32 N×C×h×w: in one graph with the network when compiled. `mirrored`:
        each input's probabilities plus its mirror image's flipped back (the network runs 2N inputs)."""
        if mirrored not in self._probabilities:
            self._probabilities[mirrored] = self._graph(softmax=True, mirrored=mirrored)
        return self._run(self._probabilities[mirrored], x)

    def _run(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), autocast(self.recipe, self.device), _freezing(self.recipe.compile), \
                _strict_fp32(self.recipe.precision == "fp32" and not self.recipe.tf32 and self.device.type == "cuda"), \
                cudnn_autotune(self.recipe):
            out = net(x)
        # CUDA graphs reuse their output buffers on the next call: hand out a copy.
        return out.float().clone() if self.recipe.compile_mode == "reduce-overhead" else out.float()


def api_forward(model: Any, device: torch.device | str | None) -> tuple[Forward, torch.device]:
    """What `pspnet.predict`, `probabilities` and `evaluate` run, and on which device: a PSPNet's fp32 forward with
    BatchNorm folded, on `device` (default: where its weights are); an exported graph's runner (`pspnet.load` of an
    .onnx or .xml: callable, with `info`) as it is, the protocol around it on the CPU."""
    if isinstance(model, nn.Module):
        device = resolve_device(str(device), "device='cpu'") if device is not None else next(model.parameters()).device
        if any(p.dtype != torch.float32 for p in model.parameters() if p.is_floating_point()):
            model = copy.deepcopy(model).float()  # a model.half() or bf16 one: the API runs fp32, on a copy
        return inference_forward(model, default_recipe(device), device, fit_memory=warnings.warn,
                                 memory_names=SETTINGS_FIELDS), device
    if isinstance(model, (str, Path)):  # a file or folder the commands take: loaded once, not on every call
        raise PSPNetError(f"model: got the path {model}; expected the model itself: model = pspnet.load({str(model)!r})"
                          ", then pass model")
    if not callable(model) or not hasattr(model, "info"):
        raise PSPNetError(f"model: got {type(model).__name__}; expected a PSPNet or what pspnet.load returns")
    return model, torch.device("cpu")


def inference_forward(model: nn.Module, recipe: Recipe, device: torch.device | str,
                      calibration: Sequence[torch.Tensor] = (), fit_memory: Callable[[str], None] | None = None,
                      memory_names: MemorySettings = OPTIONS) -> Forward:
    """The `Forward` callable running `model` (in eval mode) by `recipe`; the reference recipe runs it as it is.
    `calibration`: sample input batches, for int8 quantisation only. `fit_memory`: the test protocol runs a batch
    that does not fit in memory in parts, and tells this function so (`MemoryFit`); without it (the benchmark, which
    times the batch it names) the failure is raised; `memory_names`: how its messages name the settings to change."""
    fit = MemoryFit(torch.device(device), fit_memory, memory_names) if fit_memory is not None else None
    return CompiledForward(model, recipe, device, calibration, fit)


def training_model(model: nn.Module, recipe: Recipe, device: torch.device | str,
                   wrap: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """`model` moved to `device` and prepared for training by `recipe` (channels_last, compile; autocast is applied
    around the forward by the caller with `autocast(recipe, device)`). BatchNorm is never folded in training.
    `wrap` (e.g. DistributedDataParallel) is applied to the placed model, before compilation."""
    if recipe.fold_bn:
        recipe = replace(recipe, fold_bn=False)
    model = model.to(torch.device(device)).train()
    if hasattr(model, "upsample_by_matmul"):
        model.upsample_by_matmul = recipe.matmul_upsample
    if hasattr(model, "pyramid_at_bins"):
        model.pyramid_at_bins = recipe.pyramid_at_bins
    if hasattr(model, "backbone") and hasattr(model.backbone, "recompute"):
        model.backbone.recompute = recipe.activation_checkpointing
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if wrap is not None:
        model = wrap(model)
    return torch.compile(model, mode=_mode(recipe)) if recipe.compile else model  # type: ignore[return-value]


@contextmanager
def _strict_fp32(enabled: bool) -> Iterator[None]:
    """fp32 means fp32 on GPUs too: TF32 (10-bit mantissa) convolutions and matrix products off while it runs."""
    if not enabled:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _freezing(enabled: bool) -> AbstractContextManager[object]:
    """Inductor's weight freezing for the compilations started inside (they start at a new shape's first call):
    the weights become constants of the graph, valid because inference never changes them. A context rather than
    `torch.compile(options=...)`, which cannot be combined with a mode."""
    if not enabled:
        return nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def _mode(recipe: Recipe) -> str | None:
    return None if recipe.compile_mode == "default" else recipe.compile_mode
