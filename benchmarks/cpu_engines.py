"""CPU inference engines side by side, accuracy and speed, in one command (issue 14): eager PyTorch fp32 (the
reference), OpenVINO f32, OpenVINO bf16 (only where the CPU has native bf16), OpenVINO int8 (`pspnet quantize`), and
the peer, ONNX Runtime int8 (static QDQ quantisation of `pspnet export --format onnx`, calibrated on the same
protocol inputs, `reduce_range` on CPUs without VNNI).

    python benchmarks/cpu_engines.py --checkpoint runs/camvid/best.safetensors --data data/camvid --out runs/cpu_engines

Accuracy: CamVid val mIoU by `pspnet eval` with each engine (configs/camvid.yaml's protocol). Speed: `pspnet bench
--backend openvino` (the reference and the engine timed in turns; ONNX Runtime int8: timed here in turns with the
same eager reference, batch 1) for the CamVid model at 240×240 and for a randomly
initialised PSPNet-50 (150 classes) at 473×473, batch 1, plus the evaluation protocol; the PSPNet-50 int8 model is
calibrated on CamVid train images (its speed is what counts; its agreement means nothing for random weights).
Writes OUT/table.md (with the CPU's model and flags) and every command's output beside it.

`--isa avx2` runs all of it with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA, which PyTorch's and OpenVINO's oneDNN
obey, with ATen's and MKL's kernels capped alike): an AVX-512 CPU's instruction sets narrowed to an AVX2-only CPU's,
not such a CPU's caches, memory or clocks. ONNX Runtime picks its kernels itself, so its rows are left out then.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.device import NATIVE_BF16, cpu_features, isa_cap

# The caps of --isa: oneDNN (PyTorch's convolutions, all of OpenVINO's), ATen's vectorised kernels, MKL's GEMMs.
ISA_CAPS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
CAMVID_PROTOCOL = ["--base-size", "240", "--crop-size", "180", "240", "--mode", "whole"]


def run(args: list[str], log: Path) -> str:
    """`pspnet ARGS`, its output kept in `log`; a failure stops the script with the log's end."""
    done = subprocess.run([sys.executable, "-m", "pspnet.cli.main", *args], capture_output=True, text=True)
    log.write_text(f"$ pspnet {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    if done.returncode not in (0, 1):  # bench exits 1 when an engine moves argmax pixels: reported, not fatal
        sys.exit(f"pspnet {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def bench_rows(json_path: Path) -> dict[str, dict]:
    doc = json.loads(json_path.read_text())
    return {row["workload"].split(" (")[0]: row for row in doc["rows"]}


def onnxruntime_int8(checkpoint: Path, calibration: list[Path], out: Path, protocol: list[str]) -> Path:
    """`pspnet export --format onnx`, then ONNX Runtime's static QDQ int8 quantisation, calibrated on the protocol's
    network inputs of `calibration` (the same inputs `pspnet quantize` uses)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from pspnet.cli.inference_options import add_inference_arguments, settings_from_args
    from pspnet.data.imageops import read_image, to_tensor
    from pspnet.engine.openvino_int8 import calibration_inputs
    from pspnet.export.graph import INPUT_NAME

    f32 = out / f"{checkpoint.stem}.onnx"
    run(["export", str(checkpoint), "--format", "onnx", "--out", str(f32), "--overwrite"], out / "export_onnx.txt")
    model = pspnet.load(checkpoint)
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    settings = settings_from_args(parser.parse_args(protocol), model.info)
    inputs = calibration_inputs([to_tensor(read_image(p)) for p in calibration], settings, model.info)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {INPUT_NAME: x}

    int8 = out / f"{checkpoint.stem}-int8.onnx"
    quantize_static(str(f32), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range="avx512_vnni" not in cpu_features())
    return int8


def time_onnxruntime(checkpoint: Path, onnx: Path, size: int, repeats: int) -> dict:
    """Batch-1 latency of eager PyTorch fp32 and an ONNX Runtime model, timed in turns, and their agreement."""
    from pspnet.bench.timing import measure_interleaved
    from pspnet.bench.workloads import agreement, normalized_batch, synthetic_images
    from pspnet.engine.recipe import REFERENCE, inference_forward
    from pspnet.export.onnx_runtime import OnnxRuntimeModel

    model = pspnet.load(checkpoint)
    x = normalized_batch(synthetic_images(1, size, size, 0), model.info.mean, model.info.std)
    forwards = [inference_forward(model, REFERENCE, "cpu"), OnnxRuntimeModel(onnx, "cpu")]
    (ref, ort), outputs = measure_interleaved([lambda f=f: f(x) for f in forwards], torch.device("cpu"), repeats, 1)
    return {"reference": ref.median, "engine": ort.median, "agreement": agreement(*outputs).argmax}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="the CamVid model")
    p.add_argument("--data", type=Path, required=True, help="the prepared CamVid (train.txt, val.txt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--calib-images", type=int, default=72)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate the first N val images only (a rehearsal)")
    p.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap the instruction sets (see above)")
    args = p.parse_args()
    if args.isa and isa_cap() is None:  # the caps are read when the libraries load: start again with them set
        os.execve(sys.executable, [sys.executable, *sys.argv], os.environ | ISA_CAPS[args.isa])
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    native_bf16 = bool(cpu_features() & NATIVE_BF16)
    config = out / "camvid.yaml"
    config.write_text(Path("configs/camvid.yaml").read_text().replace("  root: data/camvid", f"  root: {args.data}"))

    int8 = out / "camvid-int8"
    run(["quantize", str(args.checkpoint), "--calib", str(args.data / "train.txt"), "--images",
         str(args.calib_images), "--held-back", "8", "--out", str(int8), "--overwrite", *CAMVID_PROTOCOL],
        out / "quantize_camvid.txt")
    record = json.loads((int8 / "quantization.json").read_text())

    engines = [("PyTorch eager fp32", [str(args.checkpoint), "--backend", "torch", "--no-fold-bn",
                                         "--no-pyramid-at-bins"]),
               ("OpenVINO f32", [str(args.checkpoint), "--backend", "openvino", "--precision", "f32"])]
    if native_bf16:
        engines.append(("OpenVINO bf16", [str(args.checkpoint), "--backend", "openvino", "--precision", "bf16"]))
    engines.append(("OpenVINO int8", [str(int8 / "model.xml"), "--precision", "int8"]))
    calibration = [Path(p) for p in record["calibration_files"]]  # the images `pspnet quantize` took
    with_ort = isa_cap() is None
    if with_ort:
        ort_camvid = onnxruntime_int8(args.checkpoint, calibration, out, CAMVID_PROTOCOL)
        engines.append(("ONNX Runtime int8 (QDQ)", [str(ort_camvid)]))
    miou = {}
    for name, engine in engines:
        tag = name.split()[0].lower() + "_" + name.split()[1]
        scores = out / f"eval_{tag}.json"
        limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
        run(["eval", *engine, "--config", str(config), "--quiet", "--json", str(scores), "--overwrite", *limit],
            out / f"eval_{tag}.txt")
        miou[name] = json.loads(scores.read_text())["mIoU"]

    torch.manual_seed(0)
    random50 = out / "pspnet50_random.safetensors"
    pspnet.save(pspnet.PSPNet(150, backbone="resnet50").eval(), random50)
    int8_50 = out / "pspnet50-int8"
    run(["quantize", str(random50), "--calib", str(args.data / "train.txt"), "--images", "10", "--held-back", "2",
         "--out", str(int8_50), "--overwrite", "--base-size", "512", "--crop-size", "473", "--no-flip"],
        out / "quantize_pspnet50.txt")

    speed: dict[tuple[str, str], dict[str, dict]] = {}
    for model, ckpt, ir, size in (("CamVid PSPNet-18", args.checkpoint, int8 / "model.xml", "240"),
                                  ("PSPNet-50, 150 classes", random50, int8_50 / "model.xml", "473")):
        variants = [("OpenVINO f32", [])] + ([("OpenVINO bf16", ["--precision", "bf16"])] if native_bf16 else [])
        variants.append(("OpenVINO int8", ["--openvino-ir", str(ir)]))
        for name, extra in variants:
            result = out / f"bench_{model.split()[0]}_{name.split()[-1]}.json"
            run(["bench", "--backend", "openvino", "--checkpoint", str(ckpt), "--sizes", size, "--workloads",
                 "infer1", "eval", "--batch-size", "4", "--repeats", str(args.repeats), "--json", str(result),
                 "--overwrite", *extra], result.with_suffix(".txt"))
            speed[(model, name)] = bench_rows(result)
    ort_speed = {}
    if with_ort:
        ort_50 = onnxruntime_int8(random50, calibration[:8], out, ["--base-size", "512", "--crop-size", "473",
                                                                    "--no-flip"])
        ort_speed = {("CamVid PSPNet-18", 240): time_onnxruntime(args.checkpoint, ort_camvid, 240, args.repeats),
                     ("PSPNet-50, 150 classes", 473): time_onnxruntime(random50, ort_50, 473, args.repeats)}

    lines = [f"CPU: {cpu_line()}", ""]
    if not with_ort:
        lines += [f"ONNX Runtime left out: the cap ({isa_cap()}) does not reach its kernels", ""]
    lines += [f"CamVid int8 calibration: {record['calibration_images']} train images, agreement with f32 on "
              f"{record['held_back_images']} held-back images {100 * record['agreement']['same']:.2f}%", "",
              "| engine | CamVid val mIoU | Δ vs PyTorch fp32 |", "|---|---|---|"]
    base = miou["PyTorch eager fp32"]
    lines += [f"| {name} | {value:.4f} | {100 * (value - base):+.2f} pt |" for name, value in miou.items()]
    lines += ["", "| model | engine | batch 1: reference s/img | engine s/img | speed-up | protocol: reference img/s "
              "| engine img/s | speed-up | argmax agreement (batch 1) |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, name), rows in speed.items():
        one = rows["inference, batch 1"]
        protocol = next(r for k, r in rows.items() if k.startswith("eval protocol"))
        lines.append(
            f"| {model} | {name} | {median(one['reference']['seconds']):.4f} | "
            f"{median(one['fast']['seconds']):.4f} | "
            f"{median(one['reference']['seconds']) / median(one['fast']['seconds']):.2f}× | "
            f"{protocol['reference']['items'] / median(protocol['reference']['seconds']):.2f} | "
            f"{protocol['fast']['items'] / median(protocol['fast']['seconds']):.2f} | "
            f"{median(protocol['reference']['seconds']) / median(protocol['fast']['seconds']):.2f}× | "
            f"{100 * one['agreement']['argmax']:.2f}% |")
    for (model, _), t in ort_speed.items():
        lines.append(f"| {model} | ONNX Runtime int8 (QDQ) | {t['reference']:.4f} | {t['engine']:.4f} | "
                     f"{t['reference'] / t['engine']:.2f}× | – | – | – | {100 * t['agreement']:.2f}% |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
