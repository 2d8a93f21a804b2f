"""`pspnet info CHECKPOINT|RUN_FOLDER [--json]`: what a checkpoint holds, read from its metadata; for a training
run's folder, how far the run got and its validations, then its best model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from pspnet.checkpoint import read_metadata
from pspnet.classes import DatasetInfo
from pspnet.cli.model_folder import use_model_folder
from pspnet.engine.inference import InferenceSettings
from pspnet.export.read_metadata import export_metadata, is_export
from pspnet.model.config import ModelConfig
from pspnet.model.pspnet import PSPNet
from pspnet.run_folder import describe_run, is_run_folder, read_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a .safetensors model, a training iter_N.pt, a semseg or mmseg .pth, "
                   "a published model's name, a file of `pspnet export` / `pspnet quantize` (.onnx, .xml, .pt), or "
                   "a training run's folder (train.out_dir)")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")


def parameter_count(model: dict[str, Any], info: dict[str, Any], source: str) -> int:
    """Parameters of the model these settings build (on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        net = PSPNet.from_config(ModelConfig.from_dict(model, source), DatasetInfo.from_dict(info, source))
    return sum(p.numel() for p in net.parameters())


def run(args: argparse.Namespace) -> int:
    status = read_run(args.checkpoint) if is_run_folder(args.checkpoint) else None
    if status is None:
        use_model_folder(args)  # the folder of `pspnet quantize`: its IR; a folder of runs: they are named
    else:
        if status.model is None or not args.json:
            print(json.dumps({"run": status.to_dict()}, indent=1) if args.json else "\n".join(describe_run(status)))
        if status.model is None:
            return 0
        args.checkpoint = status.model  # then the model the run would be used by
    meta = export_metadata(args.checkpoint) if is_export(args.checkpoint) else read_metadata(args.checkpoint)
    meta["parameters"] = parameter_count(meta["model"], meta["info"], str(args.checkpoint))
    if args.json:
        run_record = {"run": status.to_dict()} if status is not None else {}
        print(json.dumps({**run_record, "file": str(args.checkpoint), **meta}, indent=1))
        return 0
    m, info, prov = meta["model"], meta["info"], meta["provenance"]
    settings = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("num_classes", "backbone"))
    classes = info["classes"]
    shown = ", ".join(classes[:12]) + (f", … ({len(classes) - 12} more)" if len(classes) > 12 else "")
    lines = [
        f"file: {args.checkpoint} ({meta['kind']})",
        f"model: PSPNet {m['backbone']}, {m['num_classes']} classes, {meta['parameters']:,} parameters; {settings}",
        f"classes ({info['name']}): {shown}",
        f"input: RGB in [0, 1], mean {info['mean']}, std {info['std']}",
    ]
    if info.get("protocol"):
        protocol = InferenceSettings.for_model(DatasetInfo.from_dict(info, str(args.checkpoint)))
        lines.append(f"test protocol: {protocol.describe()} (validated with it in training; predict and eval use it "
                     "unless told otherwise)")
    if coding := info.get("label_coding"):
        kind = "colors" if "label_colors" in coding else "values"
        ignored = f", ignored {coding[f'ignore_{kind}']}" if coding.get(f"ignore_{kind}") else ""
        listed = coding[f"label_{kind}"]
        drawn, setting = ((f"the {kind} {listed}, one per class", f"label_{kind}") if listed != list(range(len(listed)))
                          else ("the class indices", "ignore_values"))  # data.ignore_values alone
        lines.append(f"labels: drawn with {drawn}{ignored} (data.{setting} of its training; eval reads ground truth "
                     "so)")
    if prov:
        lines.append("provenance: " + ", ".join(f"{k} {json.dumps(v) if isinstance(v, dict) else v}"
                                                 for k, v in prov.items() if v is not None))
    if "export" in meta:
        lines.append(f"graph input: {meta['export']['input']}; outputs: {', '.join(meta['export']['outputs'])}")
    if record := meta.get("export", {}).get("quantization"):
        a = record["agreement"]
        kind = "checkpoint" if "checkpoint" in record else "graph"  # quantised from a checkpoint or an export
        origin, digest = record[kind], record[f"{kind}_sha256"]
        lines.append(f"int8: calibrated on {record['calibration_images']} images ({record['calibration_inputs']} "
                     f"network inputs) from {record['calibration']}; against f32 on {record['held_back_images']} "
                     f"held-back images {100 * a['same']:.2f}% of the pixels agree (worst image "
                     f"{100 * a['worst_image']:.2f}%); from {origin} (sha256 {digest[:12]}…), nncf {record['nncf']}, "
                     f"openvino {record['openvino']}")
    print("\n".join(lines))
    return 0
