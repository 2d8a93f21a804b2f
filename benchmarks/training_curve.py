"""Print a training run's curve as a Markdown table (and plot it with matplotlib when installed).

    python benchmarks/training_curve.py runs/camvid [--png runs/camvid/curve.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training out_dir holding metrics.jsonl")
    parser.add_argument("--png", type=Path, help="also write a plot of loss and val mIoU")
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    t0 = train[0]["time"] - 0.0 if train else 0.0
    print("| iteration | minutes | train loss (mean since last row) | val mIoU | val mAcc | val allAcc |")
    print("|---|---|---|---|---|---|")
    last = 0
    for v in val:
        window = [r["loss"] for r in train if last < r["iteration"] <= v["iteration"]]
        loss = sum(window) / len(window) if window else float("nan")
        minutes = (v["time"] - t0) / 60
        print(f"| {v['iteration']} | {minutes:.1f} | {loss:.3f} | {v['val_mIoU']:.4f} | {v['val_mAcc']:.4f} | "
              f"{v['val_allAcc']:.4f} |")
        last = v["iteration"]
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=0.6, label="train loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        ax2.plot([v["iteration"] for v in val], [v["val_mIoU"] for v in val], "o-", color="C3", label="val mIoU")
        ax2.set_ylabel("val mIoU")
        ax2.set_ylim(0, 1)
        fig.legend(loc="upper center", ncol=2)
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
