"""The protocol's softmax and flip pairs inside the compiled graph against after it, side by side: the bench's
protocol workload (images size × 4/3·size, crop `size`, flip, one network batch) with one compiled recipe, handed
to the protocol three ways, timed in turns:

- a plain function returning the logits: the protocol casts, softmaxes, flips back and adds every window itself;
- the softmax in the graph (`CompiledForward.probabilities`), each window's mirror a separate input whose
  probabilities are flipped back and added after the graph (the protocol's way until session 11);
- the softmax and the mirrors in the graph (`probabilities(x, mirrored=True)`): the graph returns each flip pair's
  sum, what the protocol now takes from a compiled recipe.

    python benchmarks/fused_softmax.py [--device cuda] [--backbone resnet50] [--size 473] [--batch 16] \
        [--classes 150] [--recipe fast|fp32] [--repeats 5]

`fast` is `--fast`'s recipe on CUDA (bf16, BN folded, channels_last, compiled); `fp32` is BN folded + compiled fp32
(the CPU's only compiled choice). Every column compiles before timing; their probabilities are compared.
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

    class SoftmaxOnly:  # the softmax in the graph, each mirror its own input, flipped back and added after it
        fused_softmax = True

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return fused(x)

        def probabilities(self, x: torch.Tensor, mirrored: bool = False) -> torch.Tensor:
            if not mirrored:
                return fused.probabilities(x)
            p = fused.probabilities(torch.cat([x, x.flip(-1)]))
            return p[:len(x)] + p[len(x):].flip(-1)

    images, settings = protocol_inputs(args.size, args.batch, seed=0)
    mean, std = model.info.mean, model.info.std
    columns = (("softmax after the graph (logits out)", unfused),
               ("softmax in the graph, mirrors after it", SoftmaxOnly()),
               ("softmax and mirrors in the graph", fused))
    works = [protocol_work(f, images, settings, mean, std, device) for _, f in columns]
    measurements, _ = measure_interleaved(works, device, args.repeats, warmup=1, items=len(images))
    outputs = [infer_probabilities(f, images, settings, mean, std, device) for _, f in columns]
    print(cpu_line() if device.type == "cpu" else torch.cuda.get_device_name(device))
    print(f"PSPNet {args.backbone}, {args.classes} classes, {len(images)} images "
          f"{images[0].shape[1]}×{images[0].shape[2]}, crop {args.size}, flip, batch {args.batch}; recipe "
          f"{recipe.describe()}; median of {args.repeats} calls in turns, per image:")
    first = measurements[0].median
    for (name, _), m, out in zip(columns, measurements, outputs, strict=True):
        diff = max(float((x - y).abs().max()) for x, y in zip(outputs[0], out, strict=True))
        agree = sum(int((x.argmax(0) == y.argmax(0)).sum()) for x, y in zip(outputs[0], out, strict=True))
        total = sum(x[0].numel() for x in out)
        print(f"  {name:<40} {m.median / len(images) * 1000:8.1f} ms  ({first / m.median:.2f}×); probabilities "
              f"against the first: max difference {diff:.1e}, argmax agreement {100 * agree / total:.3f}%")


if __name__ == "__main__":
    main()
