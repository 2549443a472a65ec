"""Frame sources for :meth:`moevit.host.driver.Accelerator.stream`: a folder or file of images,
a video (imageio), synthetic images.  Each yields ``(name, uint8 [C][H][W])``.

Pictures (PNG/JPEG/...) are resized to the preset's input as the golden CLI does
(:func:`moevit.golden.weight_io.load_image`); raw ``.bin`` (float32 pixel/256) and ``.npy``
(uint8, or float pixel/256, [C][H][W]) must have the preset's exact size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import MoevitError, ShapeError
from moevit.golden.weight_io import load_image, synthetic_image
from moevit.host.driver import to_pixels

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_SUFFIXES = PICTURE_SUFFIXES + (".bin", ".npy")


def load_frame(path, cfg: AcceleratorConfig) -> np.ndarray:
    """One image file as uint8 [C][H][W]."""
    f = Path(path)
    if f.suffix.lower() == ".npy":
        try:
            a = np.load(f, allow_pickle=False)
        except ValueError as e:
            raise MoevitError(f"{f}: not a readable .npy array ({e})") from None
        want = (cfg.image_channels, cfg.image_height, cfg.image_width)
        if a.shape != want:
            raise ShapeError(f"{f}: image of shape {list(a.shape)}, preset {cfg.name!r} needs "
                             f"{list(want)} ([C][H][W], uint8 or float pixel/256); resize it or "
                             f"pass a PNG/JPEG, which is resized for you")
        return to_pixels(a, cfg)[0]
    return to_pixels(load_image(f, cfg), cfg)[0]


def image_files(path) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise MoevitError(f"--images {p}: no such file or folder")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MoevitError(f"--images {p}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def folder_frames(path, cfg: AcceleratorConfig):
    for f in image_files(path):
        yield f.stem, load_frame(f, cfg)


def synthetic_frames(cfg: AcceleratorConfig, n: int):
    for i in range(n):
        yield f"synthetic{i:04d}", to_pixels(synthetic_image(cfg, i), cfg)[0]


def video_frames(path, cfg: AcceleratorConfig, limit: int | None = None):
    """Frames of a video (or animated GIF) through imageio, resized to the preset's input."""
    import imageio.v3 as iio
    from PIL import Image
    f = Path(path)
    if not f.is_file():
        raise MoevitError(f"--video {f}: no such file")
    try:
        it = iio.imiter(f)
        for i, frame in enumerate(it):
            if limit is not None and i >= limit:
                return
            im = Image.fromarray(np.asarray(frame)).convert("RGB" if cfg.image_channels == 3 else "L")
            if im.size != (cfg.image_width, cfg.image_height):
                im = im.resize((cfg.image_width, cfg.image_height), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8).reshape(cfg.image_height, cfg.image_width, -1)
            yield f"{f.stem}_{i:05d}", np.ascontiguousarray(a.transpose(2, 0, 1))
    except (OSError, ValueError, ImportError) as e:
        raise MoevitError(f"--video {f}: imageio cannot read it ({e}); GIFs need only pillow, "
                          f"MP4/AVI need an extra plugin: pip install imageio-ffmpeg (or av)") from None
