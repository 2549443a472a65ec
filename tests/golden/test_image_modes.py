"""load_image reads every pillow mode as the 8-bit levels it means, or refuses it by name."""

import numpy as np
import pytest
from PIL import Image

from moevit.config import preset
from moevit.errors import WeightFileError
from moevit.golden.weight_io import load_image, picture_levels

CFG = preset("tiny")            # 3 x 32 x 64: no resizing, so levels are compared exactly
H, W = CFG.image_height, CFG.image_width
rng = np.random.default_rng(7)
LEVELS = rng.integers(0, 256, (H, W)).astype(np.uint8)
RGB = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)


def chw(levels):
    """Expected float32 [3,H,W] for 8-bit levels [H,W] (grey, replicated) or [H,W,3]."""
    lv = np.repeat(levels[..., None], 3, axis=2) if levels.ndim == 2 else levels
    return lv.transpose(2, 0, 1).astype(np.float32) / 256


def save(tmp_path, im, name):
    path = tmp_path / name
    im.save(path)
    return path


def test_16_bit_grey_png_keeps_its_top_byte(tmp_path):
    low = rng.integers(0, 256, (H, W))
    v16 = (LEVELS.astype(np.uint16) << 8) | low.astype(np.uint16)
    path = save(tmp_path, Image.fromarray(v16), "g16.png")
    assert Image.open(path).mode == "I;16"
    assert np.array_equal(load_image(path, CFG), chw(LEVELS))
    mid = save(tmp_path, Image.fromarray(np.full((H, W), 32768, np.uint16)), "mid.png")
    assert np.all(load_image(mid, CFG) == 0.5)  # mid-grey, not near-white


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "P", "RGBA", "LA", "CMYK"])
def test_8_bit_modes(tmp_path, mode):
    if mode in ("L", "LA"):
        im, want = Image.fromarray(LEVELS), chw(LEVELS)
    elif mode == "1":
        bits = LEVELS > 127
        im, want = Image.fromarray(bits), chw(np.where(bits, 255, 0).astype(np.uint8))
    else:
        im, want = Image.fromarray(RGB), chw(RGB)
    if mode == "P":
        im = im.quantize(256)
        want = chw(np.asarray(im.convert("RGB")))
    elif mode in ("RGBA", "LA"):
        im = im.convert(mode)  # fully opaque alpha: accepted and dropped
    elif mode == "CMYK":
        im = im.convert("CMYK")
        want = chw(np.asarray(im.convert("RGB")))
    ext = "tiff" if mode == "CMYK" else "png"
    path = save(tmp_path, im, f"img.{ext}")
    assert Image.open(path).mode == mode
    assert np.array_equal(load_image(path, CFG), want)


def test_32_bit_integer_and_float_grey(tmp_path):
    v = (LEVELS.astype(np.int32) << 8) + 255
    path = save(tmp_path, Image.fromarray(v, "I"), "i32.tiff")
    assert Image.open(path).mode == "I"
    assert np.array_equal(load_image(path, CFG), chw(LEVELS))
    f = (LEVELS.astype(np.float32) + 0.5) / 256
    path = save(tmp_path, Image.fromarray(f, "F"), "f.tiff")
    assert np.array_equal(load_image(path, CFG), chw(LEVELS))


@pytest.mark.parametrize("im, pattern", [
    (Image.fromarray(np.full((H, W), 70000, np.int32), "I"),
     r"^x: 32-bit greyscale \(mode I\) with values 70000\.\.70000; only 16-bit values "),
    (Image.fromarray(np.full((H, W), 1.5, np.float32), "F"),
     r"^x: float greyscale \(mode F\) must hold values in \[0, 1\] \(found 1\.5\.\.1\.5\)"),
    (Image.fromarray(np.dstack([RGB, np.full((H, W), 10, np.uint8)]), "RGBA"),
     r"^x: image mode RGBA has 2048 transparent pixels, and the accelerator has no alpha "
     r"channel; flatten the image onto a background first$"),
    (Image.fromarray(RGB).convert("HSV"),
     r"^x: image mode HSV is not supported; save the image as 8-bit or 16-bit greyscale, RGB "
     r"or palette PNG/JPEG$"),
])
def test_unsupported_or_lossy_modes_are_refused_by_name(im, pattern):
    with pytest.raises(WeightFileError, match=pattern):
        picture_levels(im, "x")


def test_palette_with_alpha_in_memory():  # pillow cannot write PA files
    p = Image.fromarray(RGB).quantize(256)
    pa = p.convert("PA")
    assert pa.mode == "PA"
    assert np.array_equal(picture_levels(pa, "x"), np.asarray(p.convert("RGB")))


def test_palette_with_a_transparent_index_is_refused(tmp_path):
    p = Image.fromarray(RGB).quantize(256)
    p.info["transparency"] = int(np.asarray(p)[0, 0])
    path = tmp_path / "t.png"
    p.save(path, transparency=p.info["transparency"])
    with pytest.raises(WeightFileError, match=r"t\.png: image mode RGBA has \d+ transparent"):
        load_image(path, CFG)


def test_ycbcr_is_converted():
    im = Image.fromarray(RGB).convert("YCbCr")
    assert np.array_equal(picture_levels(im, "x"), np.asarray(im.convert("RGB")))


def test_grey_config_reads_colour_as_luma(tmp_path):
    grey = CFG.replace(name="grey", image_channels=1)
    path = save(tmp_path, Image.fromarray(RGB), "c.png")
    want = np.asarray(Image.fromarray(RGB).convert("L"))[None].astype(np.float32) / 256
    assert np.array_equal(load_image(path, grey), want)
