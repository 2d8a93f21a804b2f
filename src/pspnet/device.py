"""`--device auto|cpu|cuda[:i]` → a torch.device, checked."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pspnet.environment import environment_int
from pspnet.errors import PSPNetError


def resolve_device(name: str = "auto", use_cpu: str = "--device cpu") -> torch.device:
    """"auto" picks CUDA when available, else the CPU; "cuda:1" must exist. `use_cpu`: how the caller asks for the
    CPU instead (a command's option, a config's setting), for the error on a machine without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PSPNetError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PSPNetError(f"device {name!r} asked for, but this machine has no usable CUDA GPU; use {use_cpu}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PSPNetError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise PSPNetError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    return device


ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN's cap, in PyTorch and OpenVINO alike
# The flags each oneDNN cap leaves usable (its documented ISA names); a cap not listed here limits nothing we track.
_ISA_CAPS: dict[str, frozenset[str]] = {
    "SSE41": frozenset(), "AVX": frozenset(), "AVX2": frozenset({"avx2"}), "AVX2_VNNI": frozenset({"avx2"}),
    "AVX2_VNNI_2": frozenset({"avx2"}), "AVX512_CORE": frozenset({"avx2", "avx512f"}),
    "AVX512_CORE_VNNI": frozenset({"avx2", "avx512f", "avx512_vnni"}),
    "AVX512_CORE_BF16": frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}),
}


def engine_threads() -> int | None:
    """The CPU threads another inference engine (OpenVINO, ONNX Runtime) takes in this process: PyTorch's count where
    one was asked for (OMP_NUM_THREADS: torchrun sets 1 per process unless told otherwise; `pspnet bench --threads`),
    else None, the engine's own choice (a thread per core). One knob for every engine."""
    return torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else None


def cores_shared() -> bool:
    """Several processes of one torchrun on this machine (LOCAL_WORLD_SIZE > 1): an engine must not pin its threads
    to cores, or every process pins to the same ones."""
    return environment_int("LOCAL_WORLD_SIZE", 1) > 1


def isa_cap() -> str | None:
    """The instruction-set cap set for oneDNN (`ONEDNN_MAX_CPU_ISA=AVX2` runs an AVX-512 CPU's convolutions as an
    AVX2-only CPU would), upper-cased; None when there is none."""
    for name in ISA_CAP_VARIABLES:
        if value := os.environ.get(name, "").strip().upper():
            return value
    return None


def _cpuinfo() -> tuple[str, set[str]]:
    """(vendor_id, every flag) of the first CPU in /proc/cpuinfo; ("", set()) where it cannot be read (not Linux)."""
    vendor, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return vendor, flags


def _speed_flags(flags: set[str]) -> set[str]:
    """Of /proc/cpuinfo's `flags`, those that matter for speed, less those above an `isa_cap()`."""
    found = {flag for flag in flags
             if flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni") or flag.startswith("amx")}
    cap = isa_cap()
    return found & _ISA_CAPS[cap] if cap in _ISA_CAPS else found


def cpu_features() -> set[str]:
    """The CPU's instruction-set flags that matter for speed (avx2, avx512f, avx512_bf16, avx512_vnni, amx_*),
    read from /proc/cpuinfo, less those above an `isa_cap()`; empty where they cannot be read (not Linux)."""
    return _speed_flags(_cpuinfo()[1])


NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})  # CPU flags of bf16 arithmetic in hardware


SLOW_BF16 = ("runs bf16 slower than fp32 (one bf16 dot-product port against two fp32 FMA ports: measured 0.70–0.84× "
             "fp32 for inference, 0.75–0.87× for a training step, BENCHMARKS.md)")


@dataclass(frozen=True)
class Bf16Units:
    """What bf16 arithmetic costs on this CPU, for the `auto` choices and the warnings.

    kind: "fast" (AMX tiles, or AVX-512 BF16 on an AMD CPU: bf16 outruns fp32; the issue-14 measurement on an AMD
    EPYC: a PSPNet-50 training step 2.18× fp32, OpenVINO bf16 1.9× its f32), "slow" (AVX-512 BF16 without AMX on
    another vendor's CPU, an Intel Xeon whose hypervisor hides AMX among them: its one bf16 dot-product port gives
    no more than the two fp32 FMA ports; measured 0.5× fp32's matrix-product rate, 0.70–0.84× for inference and
    0.75–0.87× for a training step, BENCHMARKS.md), "emulated" (no bf16 instructions: ~3× slower than fp32 with
    AVX-512, ~50× with AVX2 only) or "unknown" (the flags cannot be read). `flags`: the flags (and vendor) that say
    so, for messages."""

    kind: str
    flags: str

    def slower(self) -> str:
        """Why bf16 is not picked on a "slow" CPU, with the measurement."""
        return f"this CPU ({self.flags}) {SLOW_BF16}"


def bf16_units() -> Bf16Units:
    """This CPU's `Bf16Units`, from its flags (less an `isa_cap()`) and vendor, read once."""
    vendor, flags = _cpuinfo()
    features = _speed_flags(flags)
    if not features:
        return Bf16Units("unknown", "no CPU flags readable")
    if "amx_bf16" in features:
        return Bf16Units("fast", "amx_bf16")
    if "avx512_bf16" in features:
        if vendor == "AuthenticAMD":
            return Bf16Units("fast", f"avx512_bf16 on {vendor}")
        return Bf16Units("slow", f"avx512_bf16 without AMX on {vendor or 'an unknown vendor'}")
    return Bf16Units("emulated", ", ".join(sorted(features)))


def bf16_warning(device: torch.device, precision: str) -> str | None:
    """A warning for bf16 on a CPU where it is slower than fp32: emulated (no AVX-512 BF16 or AMX: measured ~3×
    slower than fp32 on an AVX-512 CPU, ~50× on an AVX2-only one) or on bf16 units that do not outrun fp32's (see
    `Bf16Units`); None when there is nothing to say."""
    if precision != "bf16" or device.type != "cpu":
        return None
    units = bf16_units()
    if units.kind == "slow":
        return f"{units.slower()}; use fp32 here"
    if units.kind != "emulated":
        return None
    return (f"bf16 on this CPU is emulated (no AVX-512 BF16 or AMX: it has {units.flags}), so it runs slower than "
            "fp32 (measured ~3× slower with AVX-512, ~50× with AVX2 only); use fp32 here")


class OutOfMemory(RuntimeError):
    """An inference engine other than torch (OpenVINO, ONNX Runtime) could not allocate the memory a batch needs:
    raised by their wrappers in place of the engine's own error, whose text differs from engine to engine."""


def is_out_of_memory(error: BaseException) -> bool:
    """An out-of-memory failure: `torch.OutOfMemoryError` on GPUs; on CPUs a RuntimeError with the system's ENOMEM
    (the default allocator's, or a file mapping's), where the operating system refuses the memory (a memory limit)
    instead of ending the process; `OutOfMemory` from the other engines."""
    return isinstance(error, (torch.OutOfMemoryError, OutOfMemory)) or (isinstance(error, RuntimeError) and any(
        text in str(error) for text in ("DefaultCPUAllocator: can't allocate memory", "Cannot allocate memory")))


def release_cached_memory(device: torch.device) -> None:
    """Hand the caching allocator's unused GPU blocks back, after an out-of-memory failure freed a forward's tensors."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def memory_state(device: torch.device) -> str:
    """" (12.3 of 79.1 GiB free)" for a GPU; "" for a CPU, whose free memory says little about what a process may
    take."""
    if device.type != "cuda":
        return ""
    free, total = torch.cuda.mem_get_info(device)
    return f" ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"


@dataclass(frozen=True)
class MemorySettings:
    """How the caller names the protocol settings that hold less memory: command-line options (eval, predict), a
    training config's val: section (validation), or InferenceSettings fields (the Python API)."""

    slide: str = "--mode slide"
    base_size: str = "--base-size"
    batch_size: str = "--batch-size {n}"
    bf16: str | None = "--fast"  # None: the caller has no bf16 protocol


OPTIONS = MemorySettings()
VAL_SECTION = MemorySettings("val.mode: slide", "val.base_size", "val.batch_size: {n}", None)
SETTINGS_FIELDS = MemorySettings("InferenceSettings(mode='slide')", "base_size", "batch_size={n}", None)


class MemoryFit:
    """The largest network batch known to fit in memory, learnt from out-of-memory failures. The test protocol runs
    a batch that does not fit in halves, and every later batch in parts of the size that fitted, each part's
    outputs added into its images' sums before the next part runs: the memory holds one part's activations and
    outputs at a time. Inference treats each input alone, so the answer is the same. `note` hears of each halving;
    one input that does not fit is an error that says what to change."""

    def __init__(self, device: torch.device, note: Callable[[str], None], names: MemorySettings = OPTIONS) -> None:
        self.device, self.note, self.names = device, note, names
        self.fitted: int | None = None  # network inputs

    def part(self, remaining: int, per_input: int) -> int:
        """How many of `remaining` protocol inputs (each `per_input` network inputs) to run next."""
        return remaining if self.fitted is None else min(remaining, max(self.fitted // per_input, 1))

    def failed(self, size: int, per_input: int, shape: Sequence[int]) -> None:
        """A part of `size` protocol inputs of `shape` ran out of memory (and its tensors are freed): halve it."""
        release_cached_memory(self.device)
        dims = "×".join(str(n) for n in shape)
        names = self.names
        if size == 1:
            ways = (f"evaluate windows instead of whole images ({names.slide}), at a smaller scale "
                    f"({names.base_size})") + (f", or in bf16 on a GPU ({names.bf16})" if names.bf16 else "")
            raise PSPNetError(f"one input of {dims} does not fit in the memory of {self.device}"
                              f"{memory_state(self.device)}: {ways}")
        self.fitted = size // 2 * per_input
        self.note(f"a batch of {size * per_input} network inputs of {dims} did not fit in the memory of "
                  f"{self.device}; running {self.fitted} at a time from now on "
                  f"({names.batch_size.format(n=self.fitted)} starts there)")
