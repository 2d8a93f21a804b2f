"""`pspnet predict` on a folder of images, end to end, as a user runs it: every engine against the reference.

    python benchmarks/predict_folder.py --checkpoint runs/camvid/best.safetensors --images data/camvid/images/val \
        --int8 runs/camvid-int8/model.xml --out runs/predict_folder [--baseline-src OLD_CHECKOUT/src]

Each row is one `pspnet predict CHECKPOINT FOLDER --out DIR` command (the checkpoint's dataset protocol: CamVid's
sliding 361 windows + flip; reading, the network, the labels, three PNGs per image), timed from start to exit:

- reference: eager PyTorch fp32, as the official code runs (`--backend torch --no-fold-bn --no-pyramid-at-bins`);
- torch: the default PyTorch execution (fp32, BatchNorm folded, on CPUs the pyramid at its bins);
- openvino f32 (`--backend openvino`) and openvino int8 (the IR of `pspnet quantize`, with --int8);
- with --baseline-src, the same commands run from another source tree (e.g. a checkout of an earlier commit), so an
  older pipeline is timed side by side with this one on the same machine in the same run.

The rounds run the commands in turns (so that a slow minute of a shared machine does not fall on one row) and the
median wall time counts. Each engine's label PNGs are compared with the reference's (pixel agreement). Start-up
(imports, loading, OpenVINO's conversion and compilation) is timed on a single image twice per row, before the
rounds: the first run meets an empty conversion cache (PSPNET_CACHE=OUT/cache), the second the filled one.
Writes OUT/table.md (with the CPU's model and flags) and keeps every command's output in OUT/logs/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image

from pspnet.bench.report import cpu_line


def predict(src: Path | None, args: list[str], out: Path, log: Path) -> float:
    """Wall seconds of `pspnet predict ARGS --out OUT` run from `src` (default: this installation)."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, "-m", "pspnet.cli.main", "predict", *args, "--out", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def agreement(labels: Path, reference: Path) -> float:
    same = total = 0
    for path in sorted(reference.glob("*.png")):
        a, b = np.asarray(Image.open(path)), np.asarray(Image.open(labels / path.name))
        same += int((a == b).sum())
        total += a.size
    return same / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="a folder of images")
    p.add_argument("--int8", type=Path, help="the int8 IR (model.xml) of `pspnet quantize` for the checkpoint")
    p.add_argument("--baseline-src", type=Path, help="another source tree's src/ to time the same commands with")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.out.exists():
        sys.exit(f"--out {args.out}: exists; choose a new folder")
    logs = args.out / "logs"
    logs.mkdir(parents=True)
    images = sorted(f for f in args.images.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        sys.exit(f"--images {args.images}: no .png or .jpg files")
    one = args.out / "one_image"
    one.mkdir()
    (one / images[0].name).symlink_to(images[0].resolve())

    ckpt = str(args.checkpoint)
    engines = {"reference (eager fp32)": [ckpt, "--backend", "torch", "--no-fold-bn", "--no-pyramid-at-bins"],
               "torch (fp32, BN folded)": [ckpt, "--backend", "torch"],
               "openvino f32": [ckpt, "--backend", "openvino"]}
    if args.int8 is not None:
        engines["openvino int8"] = [str(args.int8)]
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src
    rows = [(tree, name) for tree in trees for name in engines]

    def options(tree: str, name: str) -> list[str]:  # a tree from before session 34 has no --no-pyramid-at-bins
        return [a for a in engines[name] if tree == "this tree" or a != "--no-pyramid-at-bins"]

    def slug(tree: str, name: str) -> str:
        return f"{tree}_{name}".replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")

    os.environ["PSPNET_CACHE"] = str(args.out / "cache")  # empty: the first start-up converts
    startup = {row: [predict(trees[row[0]], [*options(*row), str(one)], args.out / "startup",
                             logs / f"startup{i}_{slug(*row)}.txt") for i in range(2)] for row in rows}
    walls: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    for r in range(args.rounds):
        for row in rows if r % 2 == 0 else rows[::-1]:
            out = args.out / "pred" / slug(*row)
            walls[row].append(predict(trees[row[0]], [*options(*row), str(args.images)], out,
                                      logs / f"round{r}_{slug(*row)}.txt"))
            print(f"round {r}: {row[0]}, {row[1]}: {walls[row][-1]:.1f} s", file=sys.stderr, flush=True)

    ref = walls[("this tree", "reference (eager fp32)")]
    reference_labels = args.out / "pred" / slug("this tree", "reference (eager fp32)")
    lines = [f"`pspnet predict` on {len(images)} images of {args.images} ({args.checkpoint}), end to end, "
             f"median of {args.rounds} rounds in turns",
             "",
             f"Machine: {cpu_line()}",
             "",
             "| source | engine | wall s | images/s | vs reference | 1 image: first run s | again s | "
             "label agreement |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        wall = median(walls[row])
        agree = agreement(args.out / "pred" / slug(*row), reference_labels)
        lines.append(f"| {row[0]} | {row[1]} | {wall:.1f} | {len(images) / wall:.2f} | "
                     f"{median(ref) / wall:.2f}× | {startup[row][0]:.1f} | {startup[row][1]:.1f} | "
                     f"{100 * agree:.3f}% |")
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
