"""The bytes autograd keeps for the backward pass of one training forward, with and without activation
checkpointing (train.activation_checkpointing): a count of the saved tensors, exact and the same on every machine
(the device's allocator adds its own overheads on top; `pspnet bench --train-ablation 1 12` measures peak memory).

    python benchmarks/activation_memory.py --backbone resnet50 --size 473 --batch 2 --classes 150
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from pspnet import PSPNet


def saved_bytes(model: PSPNet, x: torch.Tensor, target: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, aux = model(x)
        loss = F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=150)
    args = p.parse_args()
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    rows = []
    for recompute in (False, True):
        model.backbone.recompute = recompute
        rows.append(saved_bytes(model, x, target))
    print(f"PSPNet {args.backbone}, {args.classes} classes, batch {args.batch} at {args.size}×{args.size}, fp32: "
          f"{rows[0] / 2**20:.0f} MiB kept for the backward pass, {rows[1] / 2**20:.0f} MiB with activation "
          f"checkpointing ({rows[0] / rows[1]:.2f}× less)")


if __name__ == "__main__":
    main()
