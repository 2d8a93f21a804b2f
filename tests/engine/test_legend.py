"""The colour key under colour maps and overlays (`predict --legend`, `pspnet.colorize(..., legend=True)`) and the
eval report's: which classes it names, and that it draws each one's colour and name without touching the picture."""

import numpy as np

from pspnet.classes import ADE20K, CITYSCAPES
from pspnet.engine.legend import VIDEO_KEY_ROWS, draw_key, key_entries, key_font_size, key_rows, video_key, with_key

NAMES = ["road", "car", "tree", "sky"]
PALETTE = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (200, 200, 10)]


def test_the_key_names_the_classes_shown_in_class_order_then_the_ignored_pixels() -> None:
    truth = np.array([[3, 0], [0, 255]], np.uint8)  # sky, road and an ignored pixel
    pred = np.array([[3, 0], [1, 0]], np.uint8)  # a car only the prediction has
    assert key_entries([truth, pred], NAMES, PALETTE) == [
        ("road", PALETTE[0]), ("car", PALETTE[1]), ("sky", PALETTE[3]), ("ignored", (0, 0, 0))]
    assert key_entries([pred], NAMES, PALETTE) == [("road", PALETTE[0]), ("car", PALETTE[1]), ("sky", PALETTE[3])]


def squares(strip: np.ndarray, color: tuple[int, int, int]) -> tuple[int, list[int]]:
    """How many pixels of the strip are exactly `color`, and the rows they lie in."""
    found = (strip == np.array(color, np.uint8)).all(axis=2)
    return int(found.sum()), sorted(set(np.nonzero(found)[0].tolist()))


def test_the_key_draws_each_colour_as_a_square_beside_its_name_in_rows_that_fit_the_width() -> None:
    entries = [(n, c) for n, c in zip(NAMES, PALETTE, strict=True)][:3]
    size = key_font_size(480)
    wide, narrow = draw_key(entries, 480), draw_key(entries, 60)
    assert wide.shape[1:] == (480, 3) and narrow.shape[1:] == (60, 3)
    assert wide.shape[0] % 2 == 0 and narrow.shape[0] % 2 == 0  # video encoders need even sizes
    assert narrow.shape[0] > 2 * wide.shape[0]  # one name per row: three rows against one
    rows = []
    for name, color in entries:
        count, where = squares(wide, color)
        assert count == (size - 2) ** 2, (name, count)  # the square inside its black outline
        rows.append(where)
        x = int(np.nonzero((wide == np.array(color, np.uint8)).all(axis=2))[1].max())
        right = wide[where[0]:where[-1] + 1, x + 2:x + 2 + 4 * size]  # the name drawn right of the square
        assert (right.min(axis=2) < 100).sum() > 10, name
    assert rows[0] == rows[1] == rows[2]  # side by side in one row
    narrow_rows = [squares(narrow, color)[1] for _, color in entries]
    assert narrow_rows[0][-1] < narrow_rows[1][0] and narrow_rows[1][-1] < narrow_rows[2][0]  # one below the other
    assert squares(wide, PALETTE[3])[0] == 0  # a class not listed is not drawn
    assert (wide == 255).all(axis=2).mean() > 0.8  # on white


def test_the_key_goes_under_the_picture_and_leaves_its_pixels_as_they_were() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (31, 45, 3), dtype=np.uint8)
    entries = [("road", PALETTE[0])]
    keyed = with_key(picture, entries)
    assert (keyed[:31] == picture).all() and (keyed[31:] == draw_key(entries, 45)).all()
    assert with_key(picture, []).shape == picture.shape  # nothing to name (an empty map): no strip


def test_a_key_of_fixed_rows_names_the_first_entries_that_fit_then_how_many_more() -> None:
    entries = [(name, color) for name, color in zip(ADE20K.classes, ADE20K.palette, strict=True)][:40]
    assert key_rows(entries, 320) > 2
    strip = draw_key(entries, 320, rows=2)
    assert strip.shape[0] == draw_key(entries[:1], 320, rows=2).shape[0]  # the height of two rows, however many
    drawn = [c for _, c in entries if squares(strip, c)[0] > 0]
    assert drawn and drawn == [c for _, c in entries[: len(drawn)]] and len(drawn) < 40  # the first ones, in order
    without_more = draw_key(entries[: len(drawn)], 320, rows=2)  # all of these fit: no "+N more"
    assert (strip != without_more).any()  # "+N more" is written after them


def test_a_video_key_keeps_one_height_every_class_where_they_fit_else_the_frames_largest() -> None:
    city = np.arange(19, dtype=np.uint8).reshape(1, 19)
    every = video_key(city[:, :1], CITYSCAPES.classes, CITYSCAPES.palette, 1280)  # a frame of one class
    assert key_rows(list(zip(CITYSCAPES.classes, CITYSCAPES.palette, strict=True)), 1280) <= VIDEO_KEY_ROWS
    assert all(squares(every, c)[0] > 0 for c in CITYSCAPES.palette)  # all 19 named in every frame
    frame = np.zeros((10, 10), np.uint8)
    frame[:6], frame[6:9], frame[9] = 140, 3, 77  # ADE20K: class 140 largest, then 3, then 77
    keys = [video_key(f, ADE20K.classes, ADE20K.palette, 640) for f in (frame, np.full((2, 2), 5, np.uint8))]
    assert keys[0].shape == keys[1].shape  # the same height in every frame, whatever it shows
    assert keys[0].shape[0] < 3 * draw_key([("wall", (1, 2, 3))], 640).shape[0]  # not the 150 classes' rows
    xs = [int(np.nonzero((keys[0] == np.array(ADE20K.palette[c], np.uint8)).all(axis=2))[1].min())
          for c in (140, 3, 77)]
    assert xs == sorted(xs)  # the largest class first
    assert squares(keys[1], ADE20K.palette[5])[0] > 0 and squares(keys[1], ADE20K.palette[140])[0] == 0
