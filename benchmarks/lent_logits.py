"""The test protocol taking each batch's logits in the engine's own buffer (`lend`) against a copy per call, for the
CPU engines, in turns in one run:

    python benchmarks/lent_logits.py runs/cpu_engines_s33/pspnet50_random.safetensors --size 512 683
    python benchmarks/lent_logits.py runs/camvid/best.safetensors --size 360 480 --images 4 --rounds 9

The protocol is the model's own (`InferenceSettings.for_model`: its recorded or its dataset's official settings,
else each image's own size in 473×473 windows, with flip), `--batch-size` windows per call, on `--images` random
images of `--size`. ONNX Runtime runs an ONNX export of the checkpoint written to a temporary folder; OpenVINO
converts it in memory. Each row: the median seconds per image of both, their ratio, and whether the label maps are
identical. An engine without `lend` gets a row saying so: ONNX Runtime, whose IOBinding into a kept buffer (commit
39e5249: run this script in a worktree of it) gained nothing. Needs `pip install "pspnet[export,openvino]"`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import pspnet
from pspnet.bench.report import cpu_line
from pspnet.bench.timing import measure_interleaved
from pspnet.engine.inference import Forward, InferenceSettings, LendingForward, segment
from pspnet.export.onnx import export_onnx
from pspnet.export.onnx_runtime import OnnxRuntimeModel
from pspnet.export.openvino import OpenVinoModel


def copied(model: OnnxRuntimeModel | OpenVinoModel) -> Forward:
    """The model as a plain callable: the protocol cannot see its `lend`, so each call's logits are a copy."""
    return lambda x: model(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--size", type=int, nargs=2, default=(512, 683), metavar=("H", "W"))
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", nargs="+", default=["onnxruntime", "openvino"], choices=["onnxruntime", "openvino"])
    args = p.parse_args()

    model = pspnet.load(args.checkpoint)
    settings = InferenceSettings.for_model(model.info)
    settings.batch_size = args.batch_size
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, *args.size), dtype=torch.uint8, generator=generator)
              for _ in range(args.images)]
    print(f"CPU: {cpu_line()}")
    print(f"model: {args.checkpoint} ({model.info.num_classes} classes); {args.images} image(s) of "
          f"{args.size[0]}×{args.size[1]}; protocol: {settings.describe()}; median of {args.rounds} in turns\n")
    print("| engine | logits copied | logits lent | speed-up | label maps |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for engine in args.engines:
            if engine == "onnxruntime":
                runner: OnnxRuntimeModel | OpenVinoModel = OnnxRuntimeModel(
                    export_onnx(model, Path(folder) / "model.onnx"))
            else:
                runner = OpenVinoModel(model, cache=False)
            if not isinstance(runner, LendingForward):
                print(f"| {engine} | – | – | – | no `lend`: the protocol takes a copy per call |", flush=True)
                continue
            works = [lambda f=f: segment(f, images, settings, model.info.mean, model.info.std)
                     for f in (copied(runner), runner)]
            (a, b), (first, second) = measure_interleaved(works, torch.device("cpu"), args.rounds, 1,
                                                          items=len(images))
            same = all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
            print(f"| {runner.describe() if engine == 'openvino' else 'ONNX Runtime f32'} | "
                  f"{a.per_item:.3f} s | {b.per_item:.3f} s | {a.median / b.median:.2f}× | "
                  f"{'identical' if same else 'DIFFERENT'} |", flush=True)


if __name__ == "__main__":
    main()
