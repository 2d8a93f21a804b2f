"""Batched test protocol vs the official one-window-at-a-time loop, on CamVid val images.

    python benchmarks/eval_speed.py --images 4            # small random-init resnet18 PSPNet, CPU

Both runs use the same routine (pspnet.engine.inference.segment) with the CamVid single-scale settings (flip,
361×361 sliding windows); the baseline gives it one image at a time and batch size 2 (a window and its flip, as
the official test.py), the batched run several images and `--batch-size` inputs per forward pass.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import pspnet
from pspnet.classes import CAMVID
from pspnet.data.imageops import read_image, to_tensor
from pspnet.engine.inference import InferenceSettings, segment

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid" / "val"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of CamVid val images")
    p.add_argument("--images", type=int, default=4, help="how many images (default 4)")
    p.add_argument("--batch-size", type=int, default=8, help="network inputs per forward in the batched run")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    torch.manual_seed(0)
    model = pspnet.PSPNet(CAMVID.num_classes, backbone=args.backbone, info=CAMVID).eval().to(args.device)
    paths = sorted(args.data.glob("*.png"))[: args.images]
    images = [to_tensor(read_image(p)) for p in paths]
    one = InferenceSettings.for_dataset("camvid", batch_size=2)
    batched = InferenceSettings.for_dataset("camvid", batch_size=args.batch_size)
    segment(model, images[:1], one, CAMVID.mean, CAMVID.std, args.device)  # warm-up

    start = time.perf_counter()
    ref = [segment(model, [im], one, CAMVID.mean, CAMVID.std, args.device)[0] for im in images]
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    out = segment(model, images, batched, CAMVID.mean, CAMVID.std, args.device)
    t_batched = time.perf_counter() - start

    same = sum(int((a != b).sum()) for a, b in zip(ref, out, strict=True))
    print(f"{len(images)} CamVid val images, {args.backbone}, {one.crop_size} windows, flip, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"one window at a time: {t_one:.2f} s ({t_one / len(images):.2f} s/image)")
    print(f"batched ({args.batch_size} inputs/forward): {t_batched:.2f} s ({t_batched / len(images):.2f} s/image)")
    print(f"speed-up: {t_one / t_batched:.2f}x; pixels that differ: {same}")


if __name__ == "__main__":
    main()
