"""The authors' Caffe models (`pspnet50_ADE20K.caffemodel`, `pspnet101_VOC2012`, `pspnet101_cityscapes`), read
without Caffe: the `.caffemodel` is decoded from the protobuf wire format (only the fields named below) and its
layers are mapped onto our model by name.

What differs from the PyTorch release, and how the converted model takes it:
- the fork's `BN` layer (blobs slope, bias, mean, variance; eps 1e-5) → BatchNorm weight, bias, running statistics;
- a stage's stride on the first 1×1 convolution of its first block → `stride_on_1x1`;
- max pooling that rounds up → `ceil_pool`;
- the pyramid concatenated as [x, bin 6, 3, 2, 1] → `bins` (6, 3, 2, 1); its fixed pooling kernels (60/30/20/10 at
  473, 90/45/30/15 at 713) are exactly adaptive pooling at those sizes, and our adaptive bins serve any size;
- `Interp` layers (bilinear, aligned corners) → `align_corners: true`; no auxiliary head in the deploy file;
- input in BGR order minus a mean on the 0–255 scale, no std → the first convolution's input channels are reversed
  (so the model takes RGB like every pspnet model) and the checkpoint records mean = Caffe mean / 255, std = 1/255.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from pspnet.classes import DatasetInfo, info_for_class_count
from pspnet.errors import PSPNetError
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import built_holding

CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # the authors' deploy mean (their evaluation code), RGB order
DEPTHS = {6: "resnet50", 23: "resnet101", 36: "resnet152"}  # stage-4 ("conv4_x") blocks → depth
PPM_ORDER = (6, 3, 2, 1)  # the order of conv5_3_concat's inputs after conv5_3
STEM = {"conv1_1_3x3_s2": "conv1", "conv1_2_3x3": "conv2", "conv1_3_3x3": "conv3"}
BLOCK_PARTS = {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"), "1x1_increase": ("conv3", "bn3"),
               "1x1_proj": ("downsample.0", "downsample.1")}
PARAMETER_FREE = {"ReLU", "Pooling", "Eltwise", "Interp", "Concat", "Dropout", "Input", "Softmax", "Silence"}


# --- the protobuf wire format, as much of it as a .caffemodel needs --------------------------------------------

def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of one message: ints for varints, memoryviews for the rest."""
    out: list[tuple[int, int, object]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def _blob(buf: memoryview) -> np.ndarray:
    """BlobProto: shape (7: BlobShape, dim 1 packed int64) or the legacy num/channels/height/width (1–4); data (5:
    packed or single floats)."""
    shape: list[int] = []
    legacy = [0, 0, 0, 0]
    chunks: list[np.ndarray] = []
    for number, wire, value in _fields(buf):
        if number == 7:
            for n, w, v in _fields(value):  # type: ignore[arg-type]
                if n == 1 and w == 2:
                    j = 0
                    packed = v  # type: ignore[assignment]
                    while j < len(packed):  # type: ignore[arg-type]
                        d, j = _varint(packed, j)  # type: ignore[arg-type]
                        shape.append(d)
                elif n == 1:
                    shape.append(int(v))  # type: ignore[arg-type]
        elif number == 5:
            chunks.append(np.frombuffer(value, dtype="<f4"))  # type: ignore[arg-type]
        elif number in (1, 2, 3, 4) and wire == 0:
            legacy[number - 1] = int(value)  # type: ignore[arg-type]
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shape = shape or [d for d in legacy if d] or [data.size]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def read_caffemodel(path: Path) -> dict[str, tuple[str, list[np.ndarray]]]:
    """Layer name → (type, blobs) of a binary `.caffemodel` (NetParameter.layer = 100: name 1, type 2, blobs 7)."""
    try:
        buf = memoryview(Path(path).read_bytes())
    except OSError as e:
        raise PSPNetError(f"{path}: cannot read it ({e.strerror})") from None
    layers: dict[str, tuple[str, list[np.ndarray]]] = {}
    try:
        for number, wire, value in _fields(buf):
            if number != 100 or wire != 2:
                continue
            name, kind, blobs = "", "", []
            for n, w, v in _fields(value):  # type: ignore[arg-type]
                if n == 1 and w == 2:
                    name = bytes(v).decode()  # type: ignore[arg-type]
                elif n == 2 and w == 2:
                    kind = bytes(v).decode()  # type: ignore[arg-type]
                elif n == 7 and w == 2:
                    blobs.append(_blob(v))  # type: ignore[arg-type]
            layers[name] = (kind, blobs)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise PSPNetError(f"{path}: not a readable .caffemodel ({e})") from None
    if not layers:
        raise PSPNetError(f"{path}: no layers found; expected a binary .caffemodel (NetParameter with 'layer')")
    return layers


# --- layers → our model -------------------------------------------------------------------------------------

def _target(name: str, bins: tuple[int, ...]) -> tuple[str, str] | None:
    """(our module, "conv" or "bn") for a Caffe layer name, or None for names that are not parameters of ours."""
    base, bn = (name[:-3], "bn") if name.endswith("/bn") else (name, "conv")
    if base in STEM:
        return f"backbone.stem.{STEM[base] if bn == 'conv' else STEM[base].replace('conv', 'bn')}", bn
    if m := re.fullmatch(r"conv([2-5])_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj)", base):
        conv, norm = BLOCK_PARTS[m[3]]
        return f"backbone.layer{int(m[1]) - 1}.{int(m[2]) - 1}.{conv if bn == 'conv' else norm}", bn
    if m := re.fullmatch(r"conv5_3_pool(\d+)_conv", base):
        return f"ppm.branches.{bins.index(int(m[1]))}.{'conv' if bn == 'conv' else 'norm'}", bn
    if base == "conv5_4":
        return ("head.conv" if bn == "conv" else "head.norm"), bn
    if base == "conv6" and bn == "conv":
        return "head.classifier", bn
    return None


def convert_caffe(path: Path, info: DatasetInfo | None = None, mean_rgb: tuple[float, float, float] = CAFFE_MEAN_RGB
                  ) -> PSPNet:
    """Our PSPNet from an authors' `.caffemodel`; every layer with parameters must map, strictly."""
    layers = read_caffemodel(path)
    source = str(path)
    if "conv6" not in layers or "conv1_1_3x3_s2" not in layers:
        raise PSPNetError(f"{source}: no conv6 / conv1_1_3x3_s2 layer; expected one of the authors' PSPNet "
                          ".caffemodel files")
    blocks = {int(m[1]) for name in layers if (m := re.fullmatch(r"conv4_(\d+)_1x1_reduce", name))}
    depth = DEPTHS.get(len(blocks))
    if depth is None:
        raise PSPNetError(f"{source}: {len(blocks)} blocks in stage 4; expected 6 (PSPNet-50), 23 (101) or 36 (152)")
    num_classes = int(layers["conv6"][1][0].shape[0])
    state: dict[str, torch.Tensor] = {}
    foreign = []
    for name, (kind, blobs) in layers.items():
        if not blobs:
            continue
        target = _target(name, PPM_ORDER)
        if target is None or kind not in ("Convolution", "BN"):
            foreign.append(f"{name} ({kind})")
            continue
        module, part = target
        if part == "bn":
            slope, bias, mean, var = (torch.from_numpy(b.reshape(-1).copy()) for b in blobs)
            state.update({f"{module}.weight": slope, f"{module}.bias": bias, f"{module}.running_mean": mean,
                          f"{module}.running_var": var, f"{module}.num_batches_tracked": torch.tensor(0)})
        else:
            state[f"{module}.weight"] = torch.from_numpy(blobs[0].copy())
            if len(blobs) > 1:
                state[f"{module}.bias"] = torch.from_numpy(blobs[1].reshape(-1).copy())
    if foreign:
        raise PSPNetError(f"{source}: layers with parameters that are not part of the authors' PSPNet: "
                          f"{', '.join(foreign[:10])}")
    # Caffe's input is BGR: reversing the first convolution's input channels makes the model take RGB.
    state["backbone.stem.conv1.weight"] = state["backbone.stem.conv1.weight"].flip(1)
    info = info or info_for_class_count(num_classes)
    info = DatasetInfo(info.name, info.classes, info.palette, tuple(m / 255 for m in mean_rgb), (1 / 255,) * 3)
    return built_holding(lambda: PSPNet(num_classes, info=info, backbone=depth, bins=PPM_ORDER, aux=False,
                                        stride_on_1x1=True, ceil_pool=True, align_corners=True), state, source)
