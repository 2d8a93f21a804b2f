"""The colour key of label maps: which classes it names (`key_entries`, also the eval report's), and the strip drawn
under a colour map or overlay (`with_key`: `pspnet predict --legend`, `pspnet.colorize(..., legend=True)`; a video
frame's: `video_key`)."""

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


VIDEO_KEY_ROWS = 2  # a video's key at most: every class where they fit, else the frame's largest classes


def _layout(names: Sequence[str], width: int) -> tuple[list[tuple[int, int]], int]:
    """Where each entry of a key starts (x, row), left to right and wrapped at `width`, and how many rows they take."""
    size = key_font_size(width)
    font = ImageFont.load_default(size=size)
    pad = size // 2
    places, x, row = [], pad, 0
    for name in names:
        span = size + pad // 2 + round(font.getlength(name)) + 2 * pad
        if x > pad and x + span > width:  # wrap; a name wider than the image stays on its own row (cut off)
            x, row = pad, row + 1
        places.append((x, row))
        x += span
    return places, row + 1 if names else 0


def key_rows(entries: Sequence[tuple[str, Color]], width: int) -> int:
    """The rows the key of `entries` takes at `width`."""
    return _layout([name for name, _ in entries], width)[1]


def draw_key(entries: Sequence[tuple[str, Color]], width: int, rows: int | None = None) -> np.ndarray:
    """A white strip `width` pixels wide (an even number of rows, as video encoders need): a square of each
    entry's colour followed by its name, left to right, in as many rows as the names need at this width; with `rows`,
    exactly that many, the first entries that fit followed by "+N more" for the others."""
    shown, more = list(entries), 0
    places, used = _layout([name for name, _ in shown], width)
    while rows is not None and used > rows and shown:
        shown, more = shown[:-1], more + 1
        places, used = _layout([name for name, _ in shown] + [f"+{more} more"], width)
    size = key_font_size(width)
    font = ImageFont.load_default(size=size)
    pad, row = size // 2, round(size * 1.6)
    lines = used if rows is None else rows
    height = lines * row + pad if lines else 0
    height += height % 2
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, (x, line) in enumerate(places):
        top = line * row + pad + (row - size) // 2
        if i < len(shown):
            draw.rectangle((x, top, x + size - 1, top + size - 1), fill=tuple(shown[i][1]), outline=(0, 0, 0))
            draw.text((x + size + pad // 2, top + size // 2), shown[i][0], fill=(0, 0, 0), font=font, anchor="lm")
        else:
            draw.text((x, top + size // 2), f"+{more} more", fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(strip)


def video_key(labels: np.ndarray, names: Sequence[str], palette: Sequence[Color], width: int) -> np.ndarray:
    """A video frame's key, of one height for every frame of the video: every class where they fit in
    `VIDEO_KEY_ROWS` rows (Cityscapes' 19), else the classes of this frame, the largest first, as many as fit
    (ADE20K's 150 would take more rows than the frame)."""
    every = key_entries([np.arange(min(len(names), len(palette)))], names, palette)
    if key_rows(every, width) <= VIDEO_KEY_ROWS:
        return draw_key(every, width)
    counts = np.bincount(labels.ravel(), minlength=len(every))[: len(every)]
    largest = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return draw_key([every[c] for c in largest], width, rows=VIDEO_KEY_ROWS)


def with_key(rgb: np.ndarray, entries: Sequence[tuple[str, Color]]) -> np.ndarray:
    """The H×W×3 picture with the key of `entries` under it (as wide as it; the picture's own pixels unchanged)."""
    return np.concatenate([rgb, draw_key(entries, rgb.shape[1])], axis=0)
