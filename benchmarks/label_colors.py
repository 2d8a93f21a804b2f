"""Reading colour-coded labels: `LabelColors.to_indices` on a Cityscapes-sized (1024×2048) label with 20 colours,
this tree against another source tree, in turns, each in its own process.

    python benchmarks/label_colors.py --baseline-src OLD_CHECKOUT/src [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, time
import numpy as np
from pspnet.classes import pascal_palette
from pspnet.data.label_colors import LabelColors

palette = pascal_palette(20)
colors = LabelColors(tuple(palette[1:]), (palette[0],))
indices = np.random.default_rng(0).integers(0, 20, (1024, 2048))
rgb = np.asarray(palette, np.uint8)[indices]
expected = np.where(indices == 0, 255, indices - 1)
assert (colors.to_indices(rgb, "x") == expected).all()  # also the first call (a lookup table is built there)
start = time.perf_counter()
for _ in range(5):
    colors.to_indices(rgb, "x")
print(json.dumps({"ms": (time.perf_counter() - start) / 5 * 1000}))
"""


def run(src: Path) -> float:
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(src)))
    if done.returncode != 0:
        sys.exit(f"the run from {src} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, required=True, help="another source tree's src/")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from pspnet.bench.report import cpu_line

    trees = {"this tree": Path(__file__).resolve().parents[1] / "src", "baseline": args.baseline_src.resolve()}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            times[name].append(run(src))
    print(cpu_line())
    print(f"a 1024×2048 colour-coded label, 20 colours; ms per label, best of {args.rounds} rounds in turns:")
    for name, values in times.items():
        print(f"  {name:<10} {min(values):7.1f} ms  (rounds: {' '.join(f'{v:.0f}' for v in values)})")
    print(f"  {min(times['baseline']) / min(times['this tree']):.2f}× the baseline; the same indices in both")


if __name__ == "__main__":
    main()
