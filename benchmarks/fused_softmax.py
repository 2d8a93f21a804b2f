"""The protocol's softmax inside the compiled graph against the protocol's own softmax after it, side by side: the
bench's protocol workload (images size × 4/3·size, crop `size`, flip, one network batch) with one compiled recipe,
its forward handed to the protocol as it is (the softmax fused: `CompiledForward.probabilities`) and wrapped in a
plain function (the protocol casts, softmaxes and accumulates as before), timed in turns.

    python benchmarks/fused_softmax.py [--device cuda] [--backbone resnet50] [--size 473] [--batch 16] \
        [--classes 150] [--recipe fast|fp32] [--repeats 5]

`fast` is `--fast`'s recipe on CUDA (bf16, BN folded, channels_last, compiled); `fp32` is BN folded + compiled fp32
(the CPU's only compiled choice). Both columns compile once before timing; their probabilities are compared.
"""

from __future__ import annotations

import argparse

import torch

from pspnet import PSPNet
from pspnet.bench.report import cpu_line
from pspnet.bench.suite import protocol_inputs
from pspnet.bench.timing import measure_interleaved
from pspnet.bench.workloads import protocol_work
from pspnet.engine.inference import infer_probabilities
from pspnet.engine.recipe import Recipe, fast_recipe, inference_forward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--recipe", choices=["fast", "fp32"], default="fp32")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).eval()
    recipe = fast_recipe(device) if args.recipe == "fast" else Recipe(fold_bn=True, compile=True)
    fused = inference_forward(model, recipe, device)

    def unfused(x: torch.Tensor) -> torch.Tensor:  # a plain callable: the protocol does its own softmax
        return fused(x)

    images, settings = protocol_inputs(args.size, args.batch, seed=0)
    mean, std = model.info.mean, model.info.std
    works = [protocol_work(f, images, settings, mean, std, device) for f in (unfused, fused)]
    (before, after), _ = measure_interleaved(works, device, args.repeats, warmup=1, items=len(images))
    a = infer_probabilities(unfused, images, settings, mean, std, device)
    b = infer_probabilities(fused, images, settings, mean, std, device)
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    agree = sum(int((x.argmax(0) == y.argmax(0)).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x[0].numel() for x in a)
    print(cpu_line() if device.type == "cpu" else torch.cuda.get_device_name(device))
    print(f"PSPNet {args.backbone}, {args.classes} classes, {len(images)} images "
          f"{images[0].shape[1]}×{images[0].shape[2]}, crop {args.size}, flip, batch {args.batch}; recipe "
          f"{recipe.describe()}; median of {args.repeats} calls in turns, per image:")
    print(f"  softmax after the graph (the protocol's)  {before.median / len(images) * 1000:8.1f} ms")
    print(f"  softmax fused into the graph              {after.median / len(images) * 1000:8.1f} ms  "
          f"({before.median / after.median:.2f}×)")
    print(f"  probabilities: max difference {diff:.1e}, argmax agreement {100 * agree / total:.3f}%")


if __name__ == "__main__":
    main()
