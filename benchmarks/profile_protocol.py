"""Where the evaluation protocol's GPU time goes: the bench's protocol workload (4 images 473×631, 473 windows,
flip, batch 16: one network batch) for one inference recipe, profiled with torch.profiler after warm-up
(compilation included there), kernels ranked by device time; then the same with a network that costs nothing
(logits computed once), which is the protocol's own share.

    python benchmarks/profile_protocol.py --recipe fast --backbone resnet50 --size 473 --batch 16 [--device cuda]

Recipes: reference (eager fp32), anchor (bf16 + channels_last eager), fast (`--fast` on CUDA: bf16 + BatchNorm
folded + channels_last + compiled).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pspnet import PSPNet
from pspnet.bench.suite import protocol_inputs
from pspnet.bench.workloads import protocol_work
from pspnet.engine.recipe import REFERENCE, Recipe, fast_recipe, inference_forward

sys.path.insert(0, str(Path(__file__).parent))
from profile_training import parser, profiled, report  # noqa: E402

RECIPES = {"reference": REFERENCE, "anchor": Recipe(precision="bf16", channels_last=True)}


def main() -> None:
    p = parser(__doc__, [*RECIPES, "fast"], top=20)
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = PSPNet(args.classes, backbone=args.backbone).eval()
    recipe = fast_recipe(device) if args.recipe == "fast" else RECIPES[args.recipe]
    forward = inference_forward(model, recipe, device)
    images, settings = protocol_inputs(args.size, args.batch, seed=0)
    stored: dict[tuple[int, ...], torch.Tensor] = {}

    def replay(x: torch.Tensor) -> torch.Tensor:  # the network's logits, computed once per shape
        if tuple(x.shape) not in stored:
            stored[tuple(x.shape)] = forward(x)
        return stored[tuple(x.shape)]

    for label, net in ((f"{args.recipe} ({recipe.describe()})", forward), ("the protocol alone", replay)):
        work = protocol_work(net, images, settings, model.info.mean, model.info.std, device)
        wall, timed = profiled(work, device, args.calls, label)
        report(label, wall, timed, device, len(images), args.top, "call")
        print()


if __name__ == "__main__":
    main()
