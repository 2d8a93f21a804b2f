"""Our checkpoint format: safetensors weights plus the metadata that rebuilds the model (settings, classes, colours,
normalisation). Reading never unpickles arbitrary objects: torch files go through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as serialise
from torch import nn

from pspnet.classes import DatasetInfo
from pspnet.convert.caffe import convert_caffe
from pspnet.convert.mmseg import convert_mmseg_state, is_mmseg_state
from pspnet.convert.semseg import convert_semseg_state
from pspnet.errors import PSPNetError
from pspnet.files import file_kind, read_torch_file, write_atomically
from pspnet.model.config import ModelConfig
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import built_holding, tensor_state
from pspnet.weights import Weights, cache_dir, fetch, find, similar_names

FORMAT = "pspnet"
FORMAT_VERSION = "1"
TRAINING_FORMAT = "pspnet-training"  # checkpoints/iter_N.pt of `pspnet train` (pspnet.train.checkpoints writes them)


def save(model: PSPNet, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` (safetensors). The file is replaced atomically: a crash leaves the old one intact.
    `provenance`: where the weights come from (a training run, a conversion), JSON-ready; `read_metadata` and
    `pspnet info` show it."""
    path = Path(path)
    state = model_weights(model)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": json.dumps(unwrap(model).config.to_dict()),
        "info": json.dumps(unwrap(model).info.to_dict()),
    }
    if provenance:
        metadata["provenance"] = json.dumps(provenance)
    # Serialised in memory, then written by Python: a failed write (a full disk) is then an OSError naming the file,
    # not safetensors' own error type.
    data = serialise(state, metadata=metadata)
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> PSPNet:
    """Rebuild a model, in eval mode, from any file the project writes (a `.safetensors` model, a training
    checkpoint `checkpoints/iter_N.pt`), an official hszhao/semseg `.pth`, an mmsegmentation zoo PSPNet, or the
    name of a published model (`pspnet models` lists them), downloaded and converted once. (`pspnet.load` also opens
    exported graphs for inference: `pspnet.engine.loading`.)"""
    path = resolve(path)
    if path.suffix == ".caffemodel" and path.is_file():
        return convert_caffe(path).to(map_location).eval()
    kind = file_kind(path)
    if kind == "safetensors":
        model = load_safetensors(path)
    else:
        obj = read_torch_file(path)
        if isinstance(obj, dict) and obj.get("format") == TRAINING_FORMAT:
            model = model_from_training_checkpoint(obj, path)
        else:
            model = convert_foreign(obj, path)[0]
    return model.to(map_location).eval()


def resolve(path: str | Path) -> Path:
    """The file behind `path`: itself, or for the name of a published model (not a file here) its converted
    checkpoint, downloaded and converted on first use."""
    path = Path(path).expanduser()  # `train.init: ~/runs/x/best.safetensors` in a config
    if path.exists():
        return path
    if (named := find(str(path))) is not None:
        return named_checkpoint(named)
    if len(path.parts) == 1:  # a bare name: perhaps a published model's, mistyped or shortened
        names, containing = similar_names(str(path))
        if names:
            more = f" ({containing} names contain it: `pspnet models {path}`)" if containing > len(names) else ""
            raise PSPNetError(f"{path}: no such checkpoint file or published model; did you mean "
                              f"{', '.join(names)}?{more}")
        if not path.suffix:
            raise PSPNetError(f"{path}: no such checkpoint file, nor a published model's name (`pspnet models` lists "
                              "them)")
    return path


# The class count of the catalogue's datasets, to check a file that comes without a hash (the authors' Caffe files,
# put into the cache by hand) against its entry
CATALOGUE_CLASSES = {"ADE20K": 150, "Cityscapes": 19, "Pascal VOC 2012": 21, "Pascal VOC 2012 + Aug": 21}


def named_checkpoint(named: Weights) -> Path:
    """A catalogue model as a checkpoint of ours: downloaded once, converted once (cached beside the download, with
    the catalogue entry as its provenance). A file put into the cache by hand (no hash to check it by) must have the
    entry's backbone and class count, and is converted again when it is replaced."""
    converted = cache_dir() / f"{named.name}.pspnet.safetensors"
    by_hand = cache_dir() / named.filename if named.download == "page" else None
    replaced = (by_hand is not None and converted.is_file() and by_hand.is_file()
                and by_hand.stat().st_mtime > converted.stat().st_mtime)
    if not converted.is_file() or replaced:  # else the download is neither needed nor re-read (and re-hashed)
        original = fetch(named)
        model = (convert_caffe(original) if original.suffix == ".caffemodel"
                 else convert_foreign(read_torch_file(original), original, named.align_corners)[0])
        classes = CATALOGUE_CLASSES.get(named.dataset)
        if model.config.backbone != named.backbone or classes not in (None, model.config.num_classes):
            expected = f"{named.backbone}{f', {classes} classes' if classes else ''}"
            raise PSPNetError(f"{original}: a PSPNet of {model.config.backbone}, {model.config.num_classes} classes; "
                              f"{named.name} is {expected} ({named.dataset}): is this the file {named.filename} "
                              f"of {named.url}?")
        save(model, converted, {"catalogue_name": named.name, "source": named.source, "url": named.url,
                                "dataset": named.dataset, "published_mIoU": named.mIoU,
                                "published_mIoU_ms_flip": named.mIoU_ms_flip, "license": named.license})
    return converted


def convert_foreign(obj: Any, path: Path, align_corners: bool | None = None) -> tuple[PSPNet, str]:
    """Another implementation's checkpoint content as our model, and which implementation it came from
    (mmsegmentation when the keys say so, else the authors' hszhao/semseg layout). `align_corners`: mmseg only (see
    `convert_mmseg_state`)."""
    if is_mmseg_state(tensor_state(obj, str(path), "a PSPNet checkpoint")):
        return convert_mmseg_state(obj, source=str(path), align_corners=align_corners), "mmsegmentation"
    return convert_semseg_state(obj, source=str(path)), "hszhao/semseg"


def model_from_training_checkpoint(obj: dict[str, Any], path: Path) -> PSPNet:
    """The model of a training checkpoint: its settings and class metadata are stored as JSON beside the weights."""
    try:
        config = ModelConfig.from_dict(json.loads(obj["model_config"]), source=str(path))
        info = DatasetInfo.from_dict(obj["info"], str(path))
        state = obj["model"]
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise PSPNetError(f"{path}: damaged pspnet training checkpoint ({type(e).__name__}: {e})") from None
    return built_holding(lambda: PSPNet.from_config(config, info), state, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What a checkpoint says about itself, without building the model: its kind, the model settings, the classes
    and normalisation, and its provenance (training run, iteration, scores) where the file records one."""
    path = resolve(path)
    if path.suffix == ".caffemodel" and path.is_file():
        model = convert_caffe(path)
        return {"kind": "hszhao/PSPNet Caffe model (converted on load)", "model": model.config.to_dict(),
                "info": model.info.to_dict(), "provenance": {}}
    kind = file_kind(path)
    if kind == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise PSPNetError(f"{path}: cannot read it as a safetensors file ({e})") from None
        if metadata.get("format") != FORMAT:
            raise PSPNetError(f"{path}: a safetensors file without pspnet metadata; expected one written by pspnet")
        provenance = json.loads(metadata.get("provenance", "{}"))
        return {"kind": "pspnet model (safetensors)", "model": json.loads(metadata["model"]),
                "info": with_recorded_protocol(json.loads(metadata["info"]), provenance), "provenance": provenance}
    obj = read_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == TRAINING_FORMAT:
        return {"kind": "pspnet training checkpoint", "model": json.loads(obj["model_config"]),
                "info": json.loads(obj["info"]),
                "provenance": {"iteration": obj.get("iteration"), **json.loads(obj.get("progress", "{}"))}}
    model, origin = convert_foreign(obj, path)
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return {"kind": f"{origin} checkpoint (converted on load)", "model": model.config.to_dict(),
            "info": model.info.to_dict(), "provenance": {"epoch": epoch} if epoch is not None else {}}


def with_recorded_protocol(info: dict[str, Any], provenance: Any) -> dict[str, Any]:
    """The class metadata with the test protocol the model was validated with and its training's label coding:
    models saved before they travelled with the classes (November 2026) record them in their training provenance
    only (the coding as each class's first label value)."""
    if not isinstance(provenance, dict):
        return info
    if info.get("protocol") is None and isinstance(provenance.get("val_protocol"), dict):
        info = {**info, "protocol": provenance["val_protocol"]}
    if info.get("label_coding") is None and isinstance(provenance.get("label_values"), list):
        info = {**info, "label_coding": {"label_values": provenance["label_values"], "ignore_values": []}}
    return info


def load_safetensors(path: Path) -> PSPNet:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise PSPNetError(f"{path}: cannot read it as a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise PSPNetError(
            f"{path}: a safetensors file without pspnet metadata (format={metadata.get('format')!r}); "
            "expected a checkpoint written by pspnet"
        )
    try:
        config = ModelConfig.from_dict(json.loads(metadata["model"]), source=str(path))
        info = DatasetInfo.from_dict(with_recorded_protocol(json.loads(metadata["info"]),
                                                            json.loads(metadata.get("provenance", "{}"))), str(path))
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise PSPNetError(f"{path}: damaged pspnet metadata ({e})") from None
    return built_holding(lambda: PSPNet.from_config(config, info), state, str(path))


def model_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the PSPNet inside any wrapper, detached, contiguous, on the CPU: what every file stores."""
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}


def unwrap(model: nn.Module) -> PSPNet:
    """The PSPNet inside a DDP or torch.compile wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    assert isinstance(model, PSPNet), f"expected a PSPNet, got {type(model).__name__}"
    return model
