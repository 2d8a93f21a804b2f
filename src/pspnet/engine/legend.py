"""The colour key of label maps: which classes it names (`key_entries`, also the eval report's), and the strip drawn
under a colour map or overlay (`with_key`: `pspnet predict --legend`, `pspnet.colorize(..., legend=True)`; a video
frame's: `video_key`)."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _span(name: str, size: int) -> int:
    """The width an entry takes at font size `size`: its square, a gap, its name and the space before the next."""
    pad = size // 2
    return size + pad // 2 + round(_font(size).getlength(name)) + 2 * pad


def _place(cursor: tuple[int, int], span: int, width: int, pad: int) -> tuple[int, int]:
    """Where an entry `span` wide starts (x, row) when the row so far ends at `cursor`: there, or at the start of
    the next row where it would cross `width` (a name wider than the image stays on its own row, cut off)."""
    x, row = cursor
    return (pad, row + 1) if x > pad and x + span > width else cursor


def _layout(names: Sequence[str], width: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Where each entry of a key starts (x, row), left to right and wrapped at `width`, and where the key ends after
    each first k of them (k = 0 … len(names)); the place of an entry depends only on those before it."""
    size = key_font_size(width)
    pad = size // 2
    places, ends = [], [(pad, 0)]
    for name in names:
        span = _span(name, size)
        x, row = _place(ends[-1], span, width, pad)
        places.append((x, row))
        ends.append((x + span, row))
    return places, ends


def _rows(places: Sequence[tuple[int, int]]) -> int:
    """The rows that entries at `places` take (the last is on the last row)."""
    return places[-1][1] + 1 if places else 0


def key_rows(entries: Sequence[tuple[str, Color]], width: int) -> int:
    """The rows the key of `entries` takes at `width`."""
    return _rows(_layout([name for name, _ in entries], width)[0])


def draw_key(entries: Sequence[tuple[str, Color]], width: int, rows: int | None = None) -> np.ndarray:
    """A white strip `width` pixels wide (an even number of rows, as video encoders need): a square of each
    entry's colour followed by its name, left to right, in as many rows as the names need at this width; with `rows`,
    exactly that many, the first entries that fit followed by "+N more" for the others."""
    size = key_font_size(width)
    font = _font(size)
    pad, row = size // 2, round(size * 1.6)
    places, ends = _layout([name for name, _ in entries], width)
    shown, more = len(entries), 0
    used = _rows(places)
    more_at = None  # where "+N more" starts
    while rows is not None and used > rows and shown:  # the fewest entries dropped for the key to fit in `rows`
        shown, more = shown - 1, more + 1
        more_at = _place(ends[shown], _span(f"+{more} more", size), width, pad)
        used = _rows([more_at])
    lines = used if rows is None else rows
    height = lines * row + pad if lines else 0
    height += height % 2
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for (name, color), (x, line) in zip(entries[:shown], places[:shown], strict=True):
        top = line * row + pad + (row - size) // 2
        draw.rectangle((x, top, x + size - 1, top + size - 1), fill=tuple(color), outline=(0, 0, 0))
        draw.text((x + size + pad // 2, top + size // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
    if more_at is not None:
        x, line = more_at
        top = line * row + pad + (row - size) // 2
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
