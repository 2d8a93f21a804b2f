"""The official augmentation recipe as batched tensor operations on the training device.

Train: random scale in `scale_range` → rotation in `rotate` degrees with p `rotate_p` (image padded with the mean,
label with ignore) → 5×5 Gaussian blur with p `blur` → horizontal flip with p `flip` → random crop, padded with the
mean / ignore when too small → ImageNet normalisation. Validation: the same code with scale 1, no rotation, blur or
flip, and a centred crop (the official validation crop).

Scale, rotation, flip and crop are one affine map per sample, so each pixel is resampled once (image bilinear with
OpenCV's half-pixel convention, label nearest) instead of twice as in the official OpenCV code: without rotation the
result is cv2.resize followed by the crop (edges included); with rotation it is slightly sharper. The blur acts on
the crop, so at the crop border it reflects the crop instead of seeing the pixels just outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pspnet.classes import DatasetInfo
from pspnet.data.config import DataConfig
from pspnet.data.imageops import normalize, warp_bilinear, warp_nearest
from pspnet.errors import PSPNetError

BLUR_SIZE = 5
BLUR_SIGMA = 0.3 * ((BLUR_SIZE - 1) * 0.5 - 1) + 0.8  # what cv2.GaussianBlur(img, (5, 5), 0) uses: 1.1


@dataclass
class WarpParams:
    """Per-sample parameters (tensors of length N, on the CPU). `offset` (N×2: y, x) is where the crop starts in
    the scaled image, negative when the crop is padded."""

    scale: torch.Tensor
    angle: torch.Tensor  # degrees, counter-clockwise as cv2.getRotationMatrix2D
    flip: torch.Tensor
    blur: torch.Tensor
    offset: torch.Tensor
    scaled_size: torch.Tensor  # N×2: size after scaling (height, width), as cv2.resize(fx=fy=scale) rounds it


def stack_padded(images: list[torch.Tensor], labels: list[torch.Tensor], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-size uint8 images (3×H×W) and labels (H×W) → float N×3×Hm×Wm and uint8 N×Hm×Wm on `device`
    (zero padding at the bottom/right, never sampled: sampling_grid keeps each sample inside its own size)."""
    if len(images) != len(labels) or not images:
        raise PSPNetError(f"augmentation got {len(images)} images and {len(labels)} labels; expected equal, non-zero")
    hm = max(int(im.shape[-2]) for im in images)
    wm = max(int(im.shape[-1]) for im in images)
    x = torch.zeros(len(images), 3, hm, wm, dtype=torch.float32, device=device)
    y = torch.zeros(len(images), hm, wm, dtype=torch.uint8, device=device)
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        h, w = im.shape[-2:]
        if tuple(lb.shape) != (h, w):
            raise PSPNetError(f"sample {i} of the batch: label {tuple(lb.shape)} vs image {(h, w)}; expected equal")
        x[i, :, :h, :w] = im.to(device, non_blocking=True)
        y[i, :h, :w] = lb.to(device, non_blocking=True)
    return x, y


def _coverage(u: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    # bilinear weight that falls inside [0, size) pixels, for a point at continuous coordinate u
    return (u + 0.5).clamp(0.0, 1.0) * (size + 0.5 - u).clamp(0.0, 1.0)


def sampling_grid(params: WarpParams, sizes: torch.Tensor, out_size: tuple[int, int], padded: tuple[int, int],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each output pixel reads its source: (grid N×h×w×2 for grid_sample on the padded stack, image coverage
    N×1×h×w, label inside-mask N×h×w).

    Coordinates are continuous with pixel i covering [i, i+1). Output pixel centre → crop offset → (un)flip →
    inverse rotation about the centre of the scaled image (the "frame") → divide by the scale → source. As in the
    official code, the frame is the resized image with its edge pixels extended (cv2.resize), and outside the frame
    the rotation/crop fills in the mean (bilinear blend at the edge) or ignore (nearest)."""
    n = sizes.shape[0]
    h, w = out_size
    f32 = dict(dtype=torch.float32, device=device)
    ys = torch.arange(h, **f32).view(1, h, 1) + 0.5
    xs = torch.arange(w, **f32).view(1, 1, w) + 0.5
    off = params.offset.to(**f32)
    hs = params.scaled_size[:, 0].to(**f32).view(n, 1, 1)
    ws = params.scaled_size[:, 1].to(**f32).view(n, 1, 1)
    v = ys + off[:, 0].view(n, 1, 1)
    u = xs + off[:, 1].view(n, 1, 1)
    u = torch.where(params.flip.to(device).view(n, 1, 1), ws - u, u)
    theta = params.angle.to(**f32).view(n, 1, 1) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    du, dv = u - ws / 2, v - hs / 2
    # cv2.warpAffine reads dst(p) = src(M⁻¹ p); M⁻¹'s linear part for getRotationMatrix2D(angle) is [[c, -s], [s, c]]
    u = cos * du - sin * dv + ws / 2
    v = sin * du + cos * dv + hs / 2
    coverage = (_coverage(u, ws) * _coverage(v, hs))[:, None]
    inside = (u >= 0) & (u < ws) & (v >= 0) & (v < hs)
    s = params.scale.to(**f32).view(n, 1, 1)
    src_h = sizes[:, 0].to(**f32).view(n, 1, 1)
    src_w = sizes[:, 1].to(**f32).view(n, 1, 1)
    # inside the frame, clamp to the frame's edge pixels, then to the source's (cv2.resize replicates the border)
    u = (u.clamp(min=0.5).minimum(ws - 0.5) / s).clamp(min=0.5).minimum(src_w - 0.5)
    v = (v.clamp(min=0.5).minimum(hs - 0.5) / s).clamp(min=0.5).minimum(src_h - 0.5)
    grid = torch.stack([2.0 * u / padded[1] - 1.0, 2.0 * v / padded[0] - 1.0], dim=-1)
    return grid, coverage, inside


def gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    """5×5 Gaussian blur (σ 1.1, reflect-101 border), as cv2.GaussianBlur(img, (5, 5), 0), on float N×C×H×W."""
    r = BLUR_SIZE // 2
    t = torch.arange(BLUR_SIZE, dtype=images.dtype, device=images.device) - r
    k = torch.exp(-(t**2) / (2 * BLUR_SIGMA**2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")  # torch's reflect excludes the edge pixel = OpenCV REFLECT_101
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Augment:
    """`augment(images, labels, generator)` → (normalised float N×3×h×w, int64 labels N×h×w) on `device`.

    `images`/`labels`: lists of uint8 3×H×W / H×W tensors of any sizes (what the loader's collate returns).
    Random draws come from `generator` (a CPU torch.Generator) so runs are reproducible on any device."""

    random = True

    def __init__(self, cfg: DataConfig, info: DatasetInfo, device: torch.device | str | None = None,
                 crop_size: tuple[int, int] | None = None) -> None:
        self.cfg = cfg
        self.info = info
        self.device = torch.device(device) if device is not None else None
        self.crop_size = crop_size if crop_size is not None else cfg.crop_size
        self.fill = [m * 255.0 for m in info.mean]

    def sample(self, sizes: torch.Tensor, generator: torch.Generator | None,
               rows: list[int] | None = None) -> WarpParams:
        """Random parameters for the images; with `rows`, image i takes row rows[i] of the draws for a whole global
        batch, so that a sample is augmented alike whatever the number of processes and accumulation steps."""
        n = sizes.shape[0]
        ch, cw = self.crop_size
        cfg = self.cfg
        if self.random:
            u = torch.rand(n if rows is None else max(rows) + 1, 7, generator=generator, dtype=torch.float64)
            u = u if rows is None else u[rows]
            lo, hi = cfg.scale_range
            scale = lo + (hi - lo) * u[:, 0]
            rotated = u[:, 1] < cfg.rotate_p
            angle = torch.where(rotated, cfg.rotate[0] + (cfg.rotate[1] - cfg.rotate[0]) * u[:, 2], 0.0)
            blur = u[:, 3] < cfg.blur
            flip = u[:, 4] < cfg.flip
            pick = u[:, 5:7]
        else:
            scale = torch.ones(n, dtype=torch.float64)
            angle = torch.zeros(n, dtype=torch.float64)
            blur = flip = torch.zeros(n, dtype=torch.bool)
            pick = torch.full((n, 2), -1.0, dtype=torch.float64)  # centred crop
        scaled = torch.round(sizes.double() * scale[:, None]).clamp(min=1).long()
        crop = torch.tensor([ch, cw])
        padded = torch.maximum(scaled, crop)
        pad_before = (padded - scaled) // 2  # the official code pads half before, half after
        room = padded - crop
        start = torch.where(pick < 0, room // 2, torch.floor(pick.clamp(min=0) * (room + 1)).long().minimum(room))
        return WarpParams(scale, angle, flip, blur, start - pad_before, scaled)

    def __call__(self, images: list[torch.Tensor], labels: list[torch.Tensor],
                 generator: torch.Generator | None = None, rows: list[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows`: each image's row in the global batch (see `sample`); None: rows 0..N-1."""
        device = self.device or images[0].device
        sizes = torch.tensor([[int(im.shape[-2]), int(im.shape[-1])] for im in images])
        params = self.sample(sizes, generator, rows)
        x, y = stack_padded(images, labels, device)
        grid, coverage, inside = sampling_grid(params, sizes, self.crop_size, (x.shape[-2], x.shape[-1]), device)
        out = warp_bilinear(x, grid, coverage, self.fill)
        lab = warp_nearest(y, grid, inside, self.cfg.ignore_index)
        if bool(params.blur.any()):
            mask = params.blur.to(device).view(-1, 1, 1, 1)
            out = torch.where(mask, gaussian_blur(out), out)
        return normalize(out, self.info.mean, self.info.std), lab


class TrainAugment(Augment):
    """The official training augmentation (random scale, rotation, blur, flip, crop)."""

    random = True


class ValAugment(Augment):
    """The validation path: the same code without random parts — scale 1 and a centred crop padded with
    mean / ignore. Give `crop_size` to override the training crop (e.g. the largest image size of the batch)."""

    random = False
