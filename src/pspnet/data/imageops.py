"""The one place that reads images and labels, resizes and normalises them.

Resizes follow the official code's OpenCV calls: images bilinear with half-pixel centres and no antialiasing
(`INTER_LINEAR`), labels nearest neighbour (`INTER_NEAREST`, never a blend of two classes).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from pspnet.data.label_colors import LabelColors, colors_in, colors_of
from pspnet.data.label_values import TOP, LabelValues
from pspnet.errors import PSPNetError


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as uint8 H×W×3, as an image viewer shows it (see `to_rgb`); an unreadable file raises
    PSPNetError naming it."""
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except FileNotFoundError:
        raise PSPNetError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        empty = isinstance(path, (str, Path)) and Path(path).is_file() and Path(path).stat().st_size == 0
        why = "an empty file (0 bytes): a copy or download that did not finish?" if empty else e
        raise PSPNetError(f"{path}: cannot read it as an image ({why})") from None


EXIF_ORIENTATION = 0x0112
TURNED_SIDEWAYS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def label_size_problem(image: Path, image_size: tuple[int, ...], label_size: tuple[int, ...]) -> str | None:
    """Where a label's (H, W) differs from its image's: what is wrong, and why where the image is turned upright by
    its EXIF orientation and the label matches the stored pixels; else None."""
    if tuple(image_size[:2]) == tuple(label_size[:2]):
        return None
    return (f"label is {label_size[1]}×{label_size[0]} but its image {image} is {image_size[1]}×{image_size[0]}; "
            f"expected the same size{_sideways_note(image, label_size)}")


def _sideways_note(image: Path, label_size: tuple[int, ...]) -> str:
    """Where the image is stored sideways with an EXIF orientation that turns it upright (`read_image` does) and
    `label_size` (H, W) is its stored size: a note that the label was drawn on the stored pixels; else empty."""
    try:
        with Image.open(image) as im:
            turned = im.getexif().get(EXIF_ORIENTATION) in TURNED_SIDEWAYS
            stored = (im.height, im.width)
    except (OSError, ValueError, SyntaxError):
        return ""
    if not turned or tuple(label_size[:2]) != stored:
        return ""
    return (f" (the image is stored {stored[1]}×{stored[0]} and turned upright by its EXIF orientation, as viewers "
            "show it; the label matches the stored pixels: save it upright, as the image is shown, or save the "
            "image without the orientation tag)")


def to_rgb(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 H×W×3 RGB of any image: EXIF orientation applied (phone photos upright, as viewers show them),
    16-bit and 32-bit greyscale scaled (not clipped) to 0..255, float images in 0..1 scaled, palette, greyscale,
    LA/RGBA (alpha dropped) and CMYK converted. Arrays: H×W (grey) or H×W×3/4, uint8, uint16 or float in 0..1.
    Tensors: C×H×W (C = 1, 3 or 4), as torchvision reads images (uint8) or converts them (float in 0..1).
    Labels never go through here: a label map is used as stored, so it must match the image as displayed."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
            raise PSPNetError(f"image tensor of shape {tuple(image.shape)}; expected C×H×W with C = 1, 3 or 4 "
                              "(uint8 0..255, or float 0..1), as torchvision reads images")
        return _array_to_rgb(image.detach().cpu().permute(1, 2, 0).squeeze(2).numpy())
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if not isinstance(image, Image.Image):
        raise PSPNetError(f"an image of type {type(image).__name__}; expected a file path, a PIL image, an H×W×3 "
                          "array or a C×H×W tensor")
    image = ImageOps.exif_transpose(image) or image
    if image.mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(image), top=65535)  # a 16-bit file: scaled as such, however dark
    if image.mode in ("I", "F"):
        return _array_to_rgb(np.asarray(image))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray, top: int | None = None) -> np.ndarray:
    """`top`: the value that becomes 255 (default: 255 for values that fit 8 bits or uint8, else 65535)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise PSPNetError(f"image array of shape {a.shape}; expected H×W or H×W×3 (or ×4)")
    if not a.shape[0] or not a.shape[1]:
        raise PSPNetError(f"image of {a.shape[1]}×{a.shape[0]}: has no pixels")
    if a.dtype == np.uint8:
        out = a
    elif np.issubdtype(a.dtype, np.floating):
        if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1):
            raise PSPNetError(f"float image with values {float(np.nanmin(a)):.3g}..{float(np.nanmax(a)):.3g}; "
                              "expected 0..1 (or give uint8 0..255)")
        out = np.round(np.nan_to_num(a) * 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.size and a.min() < 0:
            raise PSPNetError(f"integer image with negative values ({int(a.min())}); expected 0..255 or 0..65535")
        if a.max(initial=0) > 65535:
            raise PSPNetError(f"integer image with values up to {int(a.max())}; expected 8- or 16-bit values")
        top = top or (65535 if a.dtype == np.uint16 or a.max(initial=0) > 255 else 255)
        out = np.round(a.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    else:
        raise PSPNetError(f"image array of type {a.dtype}; expected uint8, uint16 or float")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.array(out, dtype=np.uint8, order="C", copy=True)  # the caller's array is never shared or changed


LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")  # image files whose compression changes pixel values
LOSSY_LABELS = ("lossy compression changes class values (and colours) along every boundary, so labels must be "
                "lossless: save them as PNG from the program that drew them (converting the file keeps the damage)")


def other_format(label: Path) -> str:
    """For a label PNG that is missing, the file of its name in another format beside it, as a hint ("" if none)."""
    others = sorted(p for p in label.parent.glob(f"{glob.escape(label.stem)}.*") if p != label and p.is_file())
    if not others:
        return ""
    if others[0].suffix.lower() in LOSSY_SUFFIXES:
        return f"; {others[0].name} is beside it, a lossy format: {LOSSY_LABELS}"
    return f"; {others[0].name} is beside it: labels are PNGs; convert it to {label.name} (its values unchanged)"


class LabelOutOfRange(PSPNetError):
    """A label image holds a value its coding cannot hold (e.g. a 16-bit PNG of values read as 8-bit indices)."""


PHOTO_COLORS = 4096  # more colours than a colour-coded label holds, even antialiased: a photograph


class ColourCodedLabel(PSPNetError):
    """A label drawn in colours, read without `data.label_colors`; `colors`: the colours it holds, (r, g, b) each."""

    def __init__(self, message: str, colors: set[tuple[int, int, int]]) -> None:
        super().__init__(message)
        self.colors = colors


def read_label(path: str | Path, coding: LabelColors | LabelValues | None = None) -> np.ndarray:
    """A label map as uint8 H×W; an unreadable file raises PSPNetError. Greyscale PNGs hold the indices, or with
    `LabelValues` the values that `coding` maps to indices; RGB/RGBA labels are mapped to indices by `LabelColors`
    (alpha dropped), or without it, when every pixel is grey (R = G = B), read as those grey values; palette PNGs
    give their indices (VOC), or with `LabelColors` their colours' classes, since the colours say how the labels
    are drawn; 1-bit masks give 0 and 1, greyscale with alpha its grey values."""
    colors = coding if isinstance(coding, LabelColors) else None
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                raise PSPNetError(f"{path}: a JPEG label; {LOSSY_LABELS}")
            if im.mode in ("RGB", "RGBA") or (im.mode == "P" and colors is not None):
                rgb = np.asarray(im.convert("RGB"))
            elif im.mode in ("L", "P", "I", "I;16"):
                rgb, arr = None, np.asarray(im)
            elif im.mode == "1":  # a 1-bit mask: its bits, 0 and 1, are the class indices of a binary mask
                rgb, arr = None, np.asarray(im).astype(np.uint8)
            elif im.mode == "LA":  # greyscale with transparency (an image editor's export): alpha dropped
                rgb, arr = None, np.asarray(im.getchannel("L"))
            else:
                raise PSPNetError(f"{path}: label image has mode {im.mode}; expected a single-channel PNG of class "
                                  "indices")
    except FileNotFoundError:
        raise PSPNetError(f"{path}: no such label file{other_format(Path(path))}") from None
    except PSPNetError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise PSPNetError(f"{path}: cannot read it as a label image ({e})") from None
    if rgb is not None and colors is None and is_grey(rgb):  # greyscale indices saved as RGB (R = G = B)
        rgb, arr = None, rgb[..., 0]
    if rgb is not None:
        if colors is None:
            found = colors_in(rgb)
            if len(found) > PHOTO_COLORS:
                raise ColourCodedLabel(f"{path}: a photograph rather than a label ({len(found)} colours); expected "
                                       "a single-channel PNG of class indices (an image folder given as the labels?)",
                                       found)
            raise ColourCodedLabel(f"{path}: a colour-coded label (colours {colors_of(rgb)}); expected a "
                                   "single-channel PNG of class indices, or the colour of each class in "
                                   "data.label_colors", found)
        return colors.to_indices(rgb, path)
    top = TOP if isinstance(coding, LabelValues) else 255
    high = int(arr.max(initial=0))
    low = int(arr.min(initial=0)) if arr.dtype.kind == "i" else 0  # 32-bit ("I") labels may hold negative values
    if high > top or low < 0:
        raise LabelOutOfRange(f"{path}: label value {high if high > top else low} does not fit 0..{top}")
    if isinstance(coding, LabelValues):
        return coding.to_indices(arr, path)
    return arr.astype(np.uint8)


def is_grey(rgb: np.ndarray) -> bool:
    """Whether every pixel of an H×W×3 image has equal red, green and blue."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 → uint8 3×H×W (no copy of values, no scaling)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB in 0..255 (uint8 or float), N×3×H×W or 3×H×W → float32 `(x / 255 - mean) / std`."""
    x = images.float()
    shape = (3, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(shape) * 255.0
    return (x - m) / s


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float N×C×H×W → N×C×size, as OpenCV INTER_LINEAR (half-pixel centres, no antialiasing)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def resize_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Integer N×H×W labels → N×size by nearest neighbour, as OpenCV INTER_NEAREST."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].to(labels.dtype)


def pad_center(x: torch.Tensor, size: tuple[int, int], value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad N×C×H×W (or C×H×W) around its centre to at least `size` with `value`, as the official test code does.

    Returns the padded tensor and the (top, left) offset of the original inside it; the extra pixel of an odd
    padding goes to the bottom/right. A normalised image padded with 0 equals the raw image padded with the mean.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = max(size[0] - h, 0), max(size[1] - w, 0)
    if pad_h == 0 and pad_w == 0:
        return x, (0, 0)
    top, left = pad_h // 2, pad_w // 2
    return F.pad(x, (left, pad_w - left, top, pad_h - top), value=value), (top, left)



def warp_bilinear(images: torch.Tensor, grid: torch.Tensor, coverage: torch.Tensor, fill: Sequence[float]
                  ) -> torch.Tensor:
    """Sample float N×C×H×W images at `grid` (N×h×w×2, grid_sample's normalised coordinates, align_corners=False)
    bilinearly, then blend in `fill` (one value per channel) where `coverage` (N×1×h×w, 0..1) is below 1 — what
    OpenCV's warpAffine does with INTER_LINEAR and BORDER_CONSTANT. Keep `grid` inside each image's pixel centres."""
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    f = torch.tensor(fill, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
    return out * coverage + (1.0 - coverage) * f


def warp_nearest(labels: torch.Tensor, grid: torch.Tensor, inside: torch.Tensor, fill: int) -> torch.Tensor:
    """Integer N×H×W labels sampled at `grid` by nearest neighbour (never a blend of two classes); `fill` where
    `inside` (bool N×h×w) is False. Returns int64 N×h×w."""
    out = F.grid_sample(labels.float()[:, None], grid, mode="nearest", padding_mode="border", align_corners=False)
    out = out[:, 0].round().long()
    return torch.where(inside, out, torch.full_like(out, fill))
