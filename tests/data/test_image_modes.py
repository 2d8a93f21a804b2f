"""Every image becomes the RGB a viewer shows: 16-bit scaled, palette/LA/RGBA/CMYK/greyscale converted, EXIF
orientation applied; labels are used as stored."""

import numpy as np
import pytest
from PIL import Image

from pspnet.data.imageops import read_image, read_label, to_rgb
from pspnet.errors import PSPNetError

RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [200, 100, 50], [0, 0, 0]]], np.uint8)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 1000, 60000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[:, :, 0].tolist() == np.round(values / 257).astype(int).tolist()


def test_a_dark_16_bit_image_stays_dark(tmp_path):
    Image.fromarray(np.full((2, 2), 255, np.uint16)).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").max() == 1


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "CMYK"])
def test_other_modes_become_rgb(tmp_path, mode):
    image = Image.fromarray(RGB).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path, quality=100) if mode == "CMYK" else image.save(path)
    out = read_image(path)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    expected = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert np.abs(out.astype(np.int16) - expected).max() <= (40 if mode == "CMYK" else 0)
    if mode == "RGBA":  # the alpha channel is dropped, the colours kept
        assert out.tolist() == RGB.tolist()


def test_exif_orientation_is_applied_to_images_not_labels(tmp_path):
    wide = np.zeros((2, 4, 3), np.uint8)
    wide[:, 0] = 255  # a red left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(wide).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "photo.jpg")
    assert shown.shape == (4, 2, 3)  # upright, as a viewer shows it
    assert shown[0, :, 0].mean() > 200  # the left edge is now the top
    label = np.zeros((2, 4), np.uint8)
    Image.fromarray(label).save(tmp_path / "label.png", exif=exif)
    assert read_label(tmp_path / "label.png").shape == (2, 4)


def test_arrays_of_other_types_are_scaled_or_refused():
    assert to_rgb(np.full((2, 2), 0.5)).tolist() == [[[128] * 3] * 2] * 2
    assert to_rgb(np.full((1, 1, 3), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]
    assert to_rgb(np.zeros((1, 1, 4), np.uint8)).shape == (1, 1, 3)
    with pytest.raises(PSPNetError, match="expected 0..1"):
        to_rgb(np.full((2, 2), 3.0))
    with pytest.raises(PSPNetError, match="expected H×W"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(PSPNetError, match="^an image of type int; expected a file path, a PIL image"):
        to_rgb(5)  # type: ignore[arg-type]
    with pytest.raises(PSPNetError, match="^image of 5×0: has no pixels$"):  # the API returned a 0×5 label map
        to_rgb(np.zeros((0, 5, 3), np.uint8))
