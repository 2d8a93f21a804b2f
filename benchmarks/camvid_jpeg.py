"""JPEG copies of a prepared CamVid (images JPEG, labels PNG, the same lists): small enough to travel to a lent GPU
machine (about 25 MB), where nothing can be downloaded. JPEG changes the pixels slightly: compare GPU runs with each
other, not with CPU runs on the PNGs.

    python benchmarks/camvid_jpeg.py data/camvid gpu_data/camvid     # then carry gpu_data (git-ignored)
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="a CamVid root prepared by `pspnet data prepare camvid`")
    p.add_argument("dst", type=Path, help="where to write the copy")
    p.add_argument("--quality", type=int, default=92)
    args = p.parse_args()
    for split in ("train", "val"):
        lines = []
        for line in (args.src / f"{split}.txt").read_text().split("\n"):
            if not line.strip():
                continue
            image, label = line.split()
            jpeg = Path(image).with_suffix(".jpg")
            (args.dst / jpeg).parent.mkdir(parents=True, exist_ok=True)
            (args.dst / label).parent.mkdir(parents=True, exist_ok=True)
            Image.open(args.src / image).convert("RGB").save(args.dst / jpeg, quality=args.quality)
            shutil.copyfile(args.src / label, args.dst / label)
            lines.append(f"{jpeg.as_posix()} {label}\n")
        (args.dst / f"{split}.txt").write_text("".join(lines))
    for name in ("pspnet-prepared.json",):
        if (args.src / name).exists():
            shutil.copyfile(args.src / name, args.dst / name)
    size = sum(f.stat().st_size for f in args.dst.rglob("*") if f.is_file())
    print(f"{args.dst}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
