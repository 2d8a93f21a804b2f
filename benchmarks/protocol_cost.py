"""What the test protocol itself costs, without the network: `pspnet.engine.inference.segment` with a network that
returns stored logits, so only the protocol's own work (resizing, padding, windows, softmax, flips, accumulation,
the resize back, argmax) is timed.

    python benchmarks/protocol_cost.py [--classes 150] [--size 512 683] [--dataset ade20k] \
        [--baseline-src OLD_CHECKOUT/src] [--rounds 5]

Each round times this tree and, with --baseline-src, the other one, in turns, each in its own process (so both
import their own `pspnet`); the minimum over rounds of the mean per image counts. The two trees' probabilities are
compared value for value on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys, time
import torch
from pspnet.engine.inference import InferenceSettings, infer_probabilities, segment

classes, height, width, dataset, images_count, save = json.loads(sys.argv[1])
torch.manual_seed(0)
images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in range(images_count)]
bank = {}

def forward(x):
    key = tuple(x.shape)
    if key not in bank:  # drawn once per shape, outside the timed calls
        bank[key] = torch.randn(x.shape[0], classes, *x.shape[2:], generator=torch.Generator().manual_seed(1))
    return bank[key]

settings = InferenceSettings.for_dataset(dataset)
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
segment(forward, images, settings, mean, std)  # fills the bank, warms up
start = time.perf_counter()
segment(forward, images, settings, mean, std)
seconds = (time.perf_counter() - start) / len(images)
if save:
    torch.save([p.contiguous() for p in infer_probabilities(forward, images[:1], settings, mean, std)], save)
print(json.dumps({"seconds": seconds, "inputs": len(bank)}))
"""


def run(src: Path, spec: list[object]) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"the protocol run from {src} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 683), metavar=("H", "W"))
    parser.add_argument("--dataset", default="ade20k", help="whose protocol (base size, crop): ade20k, camvid, ...")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="another source tree's src/ to time in turns")
    args = parser.parse_args()
    import torch

    from pspnet.bench.report import cpu_line

    here = Path(__file__).resolve().parents[1] / "src"
    trees = {"this tree": here} | ({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})
    spec = [args.classes, *args.size, args.dataset, args.images]
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            times[name].append(run(src, [*spec, ""]))
    print(cpu_line())
    print(f"protocol of {args.dataset}, {args.classes} classes, {args.size[0]}×{args.size[1]} images, the network "
          f"a table lookup; per image, best of {args.rounds} rounds in turns:")
    for name, values in times.items():
        print(f"  {name:<10} {min(values) * 1000:7.1f} ms  (rounds: {' '.join(f'{v * 1000:.0f}' for v in values)})")
    if args.baseline_src:
        ratio = min(times["baseline"]) / min(times["this tree"])
        with tempfile.TemporaryDirectory() as tmp:
            saved = {name: Path(tmp) / f"{i}.pt" for i, name in enumerate(trees)}
            for name, src in trees.items():
                run(src, [*spec, str(saved[name])])
            a, b = (torch.load(saved[name]) for name in trees)
            same = all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        print(f"  {ratio:.2f}× the baseline; probabilities {'identical' if same else 'DIFFERENT'} to the bit")


if __name__ == "__main__":
    main()
