"""The colour key of label maps: which classes it names (`key_entries`, also the eval report's), and the strip drawn
under a colour map or overlay (`with_key`: `pspnet predict --legend`, `pspnet.colorize(..., legend=True)`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pspnet.classes import Color

IGNORED = ("ignored", (0, 0, 0))  # pixels of no class (a ground truth's ignore value) are drawn black


def key_entries(label_maps: Iterable[np.ndarray], names: Sequence[str], palette: Sequence[Color]
                ) -> list[tuple[str, Color]]:
    """Each class the label maps hold, in class order, with its colour; then "ignored" (black) where a map holds
    pixels of no class."""
    present: set[int] = set()
    for labels in label_maps:
        present.update(int(c) for c in np.unique(labels))
    known = min(len(names), len(palette))
    entries = [(names[c], tuple(palette[c])) for c in sorted(present) if c < known]
    if any(c >= len(palette) for c in present):
        entries.append(IGNORED)
    return entries


def key_font_size(width: int) -> int:
    """Legible on a CamVid frame (480 wide: 11 px) and on a Cityscapes image seen scaled to a screen (2048: 34 px)."""
    return max(11, round(width / 60))


def draw_key(entries: Sequence[tuple[str, Color]], width: int) -> np.ndarray:
    """A white strip `width` pixels wide (an even number of rows, as video encoders need): a square of each
    entry's colour followed by its name, left to right, in as many rows as the names need at this width."""
    size = key_font_size(width)
    font = ImageFont.load_default(size=size)
    pad, row = size // 2, round(size * 1.6)
    places, x, y = [], pad, 0
    for name, _ in entries:
        span = size + pad // 2 + round(font.getlength(name)) + 2 * pad
        if x > pad and x + span > width:  # wrap; a name wider than the image stays on its own row (cut off)
            x, y = pad, y + row
        places.append((x, y))
        x += span
    height = y + row + pad if entries else 0
    height += height % 2
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for (name, color), (x, y) in zip(entries, places, strict=True):
        top = y + pad + (row - size) // 2
        draw.rectangle((x, top, x + size - 1, top + size - 1), fill=tuple(color), outline=(0, 0, 0))
        draw.text((x + size + pad // 2, top + size // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(strip)


def with_key(rgb: np.ndarray, entries: Sequence[tuple[str, Color]]) -> np.ndarray:
    """The H×W×3 picture with the key of `entries` under it (as wide as it; the picture's own pixels unchanged)."""
    return np.concatenate([rgb, draw_key(entries, rgb.shape[1])], axis=0)
