"""Weight and image files of the Edge-MoE accelerator (spec §8.1, §8.3).

- Folder format (§8.1): one raw little-endian float32 file per tensor, row-major, no header,
  named ``<tensor>.float32.bin`` (``patch_embed_weight``, ``pos_embed`` with the cls token
  folded into row 0, ``l{L}_qkv_weight`` = [Q; K; V] rows, ``l{L}_attn_proj_*``,
  ``l{L}_norm{1,2}_*``, ``l{L}_fc{1,2}_*`` on dense layers, ``l{L}_htoh4_*``/``l{L}_h4toh_*``
  and ``l{L}_w_gate_T_task{t}`` [E][D] on MoE layers).
- Onboard format (§8.3): one float32 ``.npy`` per kernel argument, named like the fields of
  :class:`moevit.golden.weights.Weights` (``moe_w_gate_per_task`` is [task][moe layer][E][D]).
- Images: PNG/JPEG (resized to the config's H x W, values pixel/256) or a raw float32
  ``.bin`` [C][H][W]; :func:`synthetic_image` makes a deterministic one.

Every reader checks presence, byte size, NaN/Inf and (by default) that every value fits its
fixed-point format, and names the file, the tensor and the fix in its error.  Writers stage
every file under a temporary name and rename only when all are written, so an error never
leaves a half-written or clobbered folder.
"""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, FormatRangeError, ShapeError, WeightFileError
from moevit.golden.fixed import quantize
from moevit.golden.weights import FIELD_FORMATS, Weights, expected_shapes, format_range_problems
from moevit.outputs import describe_path

__all__ = ["FileSpec", "folder_layout", "load_folder", "save_folder", "load_onboard", "save_onboard",
           "load_image", "picture_levels", "synthetic_image", "check_image", "ImageWrapWarning", "SUFFIX",
           "reference_output_name", "load_reference_output"]

SUFFIX = ".float32.bin"
_F32 = np.dtype("<f4")


class ImageWrapWarning(UserWarning):
    """Pixel values that do not survive the conversion to ``ap_ufixed<8,0>`` unchanged."""


# ----------------------------------------------------------------------------- folder layout
@dataclass(frozen=True)
class FileSpec:
    """One ``*.float32.bin`` file: its shape, its format and where it lives in :class:`Weights`."""

    name: str                      # file stem, e.g. "l3_htoh4_weight"
    shape: tuple[int, ...]
    field: str                     # Weights field
    index: tuple                   # index into that field (ints and slices)

    @property
    def fmt(self) -> str:
        """Attribute of ``cfg.formats`` holding this file's values (that of its field)."""
        return FIELD_FORMATS[self.field]

    @property
    def filename(self) -> str:
        return self.name + SUFFIX

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4


def folder_layout(cfg: AcceleratorConfig) -> list[FileSpec]:
    """Every weight file of an Edge-MoE folder for ``cfg`` (spec §8.1), in a stable order."""
    D, C, p = cfg.dim, cfg.image_channels, cfg.patch_size
    H, E, Dh = cfg.mlp_hidden, cfg.num_experts, cfg.expert_hidden
    specs = [
        FileSpec("patch_embed_weight", (D, C, p, p), "patch_embed_weights", ()),
        FileSpec("patch_embed_bias", (D,), "patch_embed_bias", ()),
        FileSpec("pos_embed", (cfg.tokens, D), "pos_embed", ()),
    ]
    for L in range(cfg.depth):
        qkv = slice(0, 3)
        specs += [
            FileSpec(f"l{L}_qkv_weight", (3 * D, D), "attn_weights", (L, qkv)),
            FileSpec(f"l{L}_qkv_bias", (3 * D,), "attn_bias", (L, qkv)),
            FileSpec(f"l{L}_attn_proj_weight", (D, D), "attn_weights", (L, 3)),
            FileSpec(f"l{L}_attn_proj_bias", (D,), "attn_bias", (L, 3)),
        ]
        for n in (1, 2):
            specs += [
                FileSpec(f"l{L}_norm{n}_weight", (D,), "norm_weights", (L, n - 1)),
                FileSpec(f"l{L}_norm{n}_bias", (D,), "norm_bias", (L, n - 1)),
            ]
        if cfg.is_moe(L):
            m = cfg.moe_index(L)
            specs += [
                FileSpec(f"l{L}_htoh4_weight", (E, Dh, D), "moe_weights_l1", (m,)),
                FileSpec(f"l{L}_htoh4_bias", (E, Dh), "moe_bias_l1", (m,)),
                FileSpec(f"l{L}_h4toh_weight", (E, D, Dh), "moe_weights_l2", (m,)),
                FileSpec(f"l{L}_h4toh_bias", (E, D), "moe_bias_l2", (m,)),
            ]
            specs += [FileSpec(f"l{L}_w_gate_T_task{t}", (E, D), "moe_w_gate_per_task", (t, m))
                      for t in range(cfg.num_tasks)]
        else:
            d = cfg.dense_index(L)
            specs += [
                FileSpec(f"l{L}_fc1_weight", (H, D), "vit_weights_l1", (d,)),
                FileSpec(f"l{L}_fc1_bias", (H,), "vit_bias_l1", (d,)),
                FileSpec(f"l{L}_fc2_weight", (D, H), "vit_weights_l2", (d,)),
                FileSpec(f"l{L}_fc2_bias", (D,), "vit_bias_l2", (d,)),
            ]
    return specs


# ----------------------------------------------------------------------------- checks
def _check_finite(arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise WeightFileError(
            f"{what}: {int(bad.sum())} NaN/Inf values of {arr.size} (first at index {first}); "
            f"fixed-point formats cannot hold them — regenerate or fix the source tensor")


def _check_ranges(items, cfg: AcceleratorConfig, where: str) -> None:
    """``items``: (what, array, Weights field).  Raise naming every array that does not fit."""
    lines = format_range_problems(items, cfg)
    if lines:
        err = FormatRangeError(
            f"{where}: {len(lines)} tensor(s) hold values outside their fixed-point format "
            f"(the accelerator would wrap them):\n  " + "\n  ".join(lines) +
            "\n  rescale the weights, widen the format in the config, or pass on_wrap='wrap' to "
            "reproduce the hardware's wrap-around")
        err.where, err.problems = where, lines  # the command line rewords the fix
        raise err


def _check_on_wrap(on_wrap: str) -> None:
    if on_wrap not in ("raise", "wrap"):
        raise ConfigError(f"on_wrap must be 'raise' or 'wrap', not {on_wrap!r}")


def _loader_folder(path, on_wrap: str, kind: str, hint: str) -> Path:
    """Check ``on_wrap`` and that ``path`` is a folder; ``hint`` follows "does not exist"."""
    _check_on_wrap(on_wrap)
    folder = Path(path)
    if not folder.is_dir():
        raise WeightFileError(f"{kind} folder {folder} {describe_path(folder)}, expected a "
                              f"folder{hint}")
    return folder


def _read_f32(f: Path, shape: tuple[int, ...], expected: str) -> np.ndarray:
    """Raw little-endian float32 file ``f`` as ``shape``: exact byte size, no NaN/Inf.

    ``expected`` follows "expected N bytes " in the size error."""
    want = int(np.prod(shape)) * 4
    size = f.stat().st_size
    if size != want:
        raise WeightFileError(f"{f}: {size} bytes, expected {want} bytes {expected}")
    arr = np.fromfile(f, dtype=_F32).reshape(shape)
    _check_finite(arr, str(f))
    return arr


# ----------------------------------------------------------------------------- atomic writes
def _write_all(folder: Path, files: dict[str, Callable[[Path], None]]) -> list[Path]:
    """Write every file to a temporary name in ``folder`` then rename all of them.

    ``files`` maps final file name -> writer(tmp_path).  On any error the temporaries are
    removed and the existing files are untouched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, writer in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            staged.append((Path(tmp), folder / name))
            writer(Path(tmp))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    return [final for _, final in staged]


# ----------------------------------------------------------------------------- folder I/O
def _as_float_weights(weights: Weights, cfg: AcceleratorConfig) -> Weights:
    """Float weights to write; raw ones are dequantised, and must be exact in float32."""
    weights.validate(cfg)
    if not weights.raw:
        return weights
    w = weights.dequantize(cfg)
    for name, raw in weights.items():
        exact = np.ldexp(np.asarray(raw, dtype=np.float64), -weights.format_of(name, cfg).frac)
        lost = np.count_nonzero(getattr(w, name).astype(np.float64) != exact)
        if lost:
            raise WeightFileError(
                f"weights.{name}: {lost} raw values need more than float32's 24 significant bits "
                f"and would change when written as float32; keep them as raw arrays (or write "
                f"the float weights they were quantised from)")
    return w


def load_folder(path, cfg: AcceleratorConfig, *, on_wrap: str = "raise") -> Weights:
    """Read an Edge-MoE ``*.float32.bin`` weights folder into float32 :class:`Weights`.

    Raises :class:`WeightFileError` for a missing folder or files (all named), a file of the
    wrong size (expected vs actual bytes and the shape it should have) or NaN/Inf values, and
    :class:`FormatRangeError` for values outside a tensor's format (count, worst value, which
    tensor) unless ``on_wrap="wrap"``.  Extra files (image, reference output) are ignored.
    """
    folder = _loader_folder(path, on_wrap, "weights", "; pass the folder "
                            f"holding the *{SUFFIX} files")
    layout = folder_layout(cfg)
    missing = [s.filename for s in layout if not (folder / s.filename).is_file()]
    if missing:
        # a name that exists but is no file (a folder, a broken link) says what it is
        shown = ", ".join(m if not (folder / m).exists() and not (folder / m).is_symlink()
                          else f"{m} ({describe_path(folder / m)[3:]}, expected a file)"
                          for m in missing[:8]) + (f", ... ({len(missing) - 8} more)" if len(missing) > 8 else "")
        hint = ""
        if all(re.search(r"_(htoh4|h4toh)_", m) and not (folder / m).exists() for m in missing):
            hint = ("; only expert weights are missing — the public Edge-MoE snapshot ships "
                    "none (spec §8.1): supply them, e.g. from moevit.golden.weights.seeded_weights")
        raise WeightFileError(
            f"weights folder {folder} lacks {len(missing)} of the {len(layout)} files config "
            f"{cfg.name!r} needs: {shown}{hint}")
    fields = {name: np.zeros(shape, dtype=np.float32) for name, shape in expected_shapes(cfg).items()}
    checks = []
    for s in layout:
        arr = _read_f32(folder / s.filename, s.shape,
                        f"(float32 {list(s.shape)} for config {cfg.name!r}); the file is truncated "
                        f"or belongs to a different model size")
        checks.append((s.filename, arr, s.field))
        target = fields[s.field]
        target[s.index] = arr.reshape(target[s.index].shape)   # qkv: [3D] rows -> [3][D]
    if on_wrap == "raise":
        _check_ranges(checks, cfg, f"weights folder {folder}")
    return Weights(**fields).validate(cfg)


def save_folder(weights: Weights, path, cfg: AcceleratorConfig) -> list[Path]:
    """Write ``weights`` (float, or raw which is dequantised exactly) as an Edge-MoE folder.

    Returns the written paths.  NaN/Inf values raise :class:`WeightFileError` before anything
    is written; all files are staged and renamed together.
    """
    w = _as_float_weights(weights, cfg)
    for name, arr in w.items():
        _check_finite(np.asarray(arr), f"weights.{name}")
    files = {}
    for s in folder_layout(cfg):
        arr = np.asarray(getattr(w, s.field), dtype=np.float32)[s.index].reshape(s.shape)
        files[s.filename] = (lambda a: lambda tmp: a.astype(_F32).tofile(tmp))(np.ascontiguousarray(arr))
    return _write_all(Path(path), files)


def reference_output_name(cfg: AcceleratorConfig) -> str:
    """File stem of the float reference output in an Edge-MoE folder (``l11_x_post_moe``).

    The Edge-MoE testbench builds it from the last layer and its kind; for a config whose
    last layer is dense the name ``l{L}_x_post_mlp`` is this project's convention.
    """
    last = cfg.depth - 1
    return f"l{last}_x_post_{'moe' if cfg.is_moe(last) else 'mlp'}"


def load_reference_output(path, cfg: AcceleratorConfig) -> np.ndarray:
    """The folder's float reference output (spec §8.1, [tokens][dim] float32)."""
    f = Path(path) / (reference_output_name(cfg) + SUFFIX)
    if not f.is_file():
        raise WeightFileError(f"{f} does not exist: the folder has no float reference output")
    return _read_f32(f, (cfg.tokens, cfg.dim), f"(float32 [{cfg.tokens}, {cfg.dim}])")


# ----------------------------------------------------------------------------- onboard .npy
def load_onboard(path, cfg: AcceleratorConfig, *, on_wrap: str = "raise") -> Weights:
    """Read the board packing (spec §8.3): one float32 ``<field>.npy`` per kernel argument."""
    folder = _loader_folder(path, on_wrap, "onboard", "; pass the folder holding the .npy files "
                            "written by save_onboard / prepare_for_onboard.py")
    shapes = expected_shapes(cfg)
    missing = [f"{n}.npy" for n in shapes if not (folder / f"{n}.npy").is_file()]
    if missing:
        raise WeightFileError(f"onboard folder {folder} lacks {len(missing)} file(s) config "
                              f"{cfg.name!r} needs: {', '.join(missing)}")
    out = {}
    for name, shape in shapes.items():
        f = folder / f"{name}.npy"
        try:
            arr = np.load(f, allow_pickle=False)
        except ValueError as e:
            raise WeightFileError(f"{f}: not a readable .npy array ({e})") from e
        if tuple(arr.shape) != shape:
            raise WeightFileError(
                f"{f}: shape {list(arr.shape)}, expected {list(shape)} for config {cfg.name!r} "
                f"({int(np.prod(shape)) * 4} bytes of float32, got {arr.nbytes} bytes of {arr.dtype})")
        if arr.dtype.kind != "f":
            raise WeightFileError(f"{f}: dtype {arr.dtype}, expected float32 (the onboard packing "
                                  f"stores float values; quantise on the host)")
        _check_finite(arr, str(f))
        out[name] = arr.astype(np.float32)
    if on_wrap == "raise":
        _check_ranges([(f"{n}.npy", a, n) for n, a in out.items()], cfg, f"onboard folder {folder}")
    return Weights(**out).validate(cfg)


def save_onboard(weights: Weights, path, cfg: AcceleratorConfig) -> list[Path]:
    """Write the board packing (spec §8.3) as float32 ``.npy`` files, staged then renamed."""
    w = _as_float_weights(weights, cfg)
    files = {}
    for name, arr in w.items():
        a = np.ascontiguousarray(arr, dtype=np.float32)
        _check_finite(a, f"weights.{name}")
        files[f"{name}.npy"] = (lambda a: lambda tmp: _save_npy(tmp, a))(a)
    return _write_all(Path(path), files)


def _save_npy(tmp: Path, a: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temp name
        np.save(fh, a, allow_pickle=False)


# ----------------------------------------------------------------------------- images
def check_image(image: np.ndarray, cfg: AcceleratorConfig, *, name: str = "image") -> int:
    """Warn (:class:`ImageWrapWarning`) about pixels that change in ``ap_ufixed<8,0>``.

    Values >= 1.0 or < 0 wrap (1.0 becomes 0); values off the k/256 grid are floored.
    Returns the number of wrapping values.
    """
    fmt = cfg.formats.pixel
    _, rep = quantize(image, fmt, name=name)
    if not rep.ok:
        n_one = int(np.count_nonzero(np.asarray(image) == 1.0))
        warnings.warn(
            f"{rep.describe(name)}" + (f" ({n_one} values are exactly 1.0, which wraps to 0)" if n_one else "")
            + "; images must be pixel/256 in [0, 255/256] — scale by 255/256 or clip",
            ImageWrapWarning, stacklevel=3)
    scaled = np.ldexp(np.asarray(image, dtype=np.float64), fmt.frac)
    off = int(np.count_nonzero(scaled != np.floor(scaled)))
    if off:
        warnings.warn(f"{name}: {off} values are not multiples of 1/256 and will be floored to "
                      f"the pixel grid", ImageWrapWarning, stacklevel=3)
    return rep.wrapped


def _image_shape(cfg: AcceleratorConfig) -> tuple[int, int, int]:
    return (cfg.image_channels, cfg.image_height, cfg.image_width)


def load_image(path, cfg: AcceleratorConfig) -> np.ndarray:
    """An input image as float32 [C][H][W] with values pixel/256.

    A picture (anything pillow reads) is brought to 8-bit levels per pixel mode (see
    :func:`picture_levels`: 1-bit, 8-bit, 16-bit and 32-bit greyscale, palette, RGB, CMYK,
    YCbCr; an alpha channel only if every pixel is opaque), converted to RGB (or greyscale
    for 1 channel) and resized to the config's H x W with bilinear filtering.  A ``.bin``
    file is raw float32 [C][H][W] as in the Edge-MoE folder (``image.float32.bin``) and must
    have exactly that size.  Pixels that will not survive ``ap_ufixed<8,0>`` are reported
    with :class:`ImageWrapWarning`; unreadable, damaged or truncated files raise
    :class:`WeightFileError`.
    """
    f = Path(path)
    if not f.is_file():
        raise WeightFileError(f"image file {f} {describe_path(f)}, expected a PNG/JPEG or a "
                              f"raw float32 .bin file")
    C, H, W = _image_shape(cfg)
    if f.suffix.lower() == ".bin":
        img = _read_f32(f, (C, H, W), f"(float32 [{C}][{H}][{W}] for config {cfg.name!r})")
        check_image(img, cfg, name=str(f))
        return img.astype(np.float32)
    if C not in (1, 3):
        raise ShapeError(f"config {cfg.name!r} has {C} image channels; only 1 (grey) or 3 (RGB) "
                         f"can be read from a picture — pass a raw float32 .bin instead")
    if f.stat().st_size == 0:
        raise WeightFileError(f"image file {f} is empty (0 bytes); pass a PNG/JPEG or a raw "
                              f"float32 .bin")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(f) as im:
            im.load()
            levels = picture_levels(im, f)
    except UnidentifiedImageError:
        raise WeightFileError(f"{f}: not an image pillow can read (PNG/JPEG/...), nor a raw "
                              f"float32 .bin; pass an image file or use --synthetic") from None
    except Image.DecompressionBombError as e:
        raise WeightFileError(f"{f}: {e}; pass a smaller picture (it is resized to "
                              f"{W}x{H} anyway)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise WeightFileError(f"{f}: the image is damaged or truncated ({e}); re-export it or "
                              f"pass another file") from None
    mode = "L" if C == 1 else "RGB"
    pic = Image.fromarray(levels, "L" if levels.ndim == 2 else "RGB").convert(mode)
    if pic.size != (W, H):
        pic = pic.resize((W, H), Image.Resampling.BILINEAR)
    pix = np.asarray(pic, dtype=np.uint8).reshape(H, W, C).transpose(2, 0, 1)
    return (pix.astype(np.float32) / 256.0).astype(np.float32)


#: pillow modes with more than 8 bits per greyscale sample, and their bit depth
_DEEP_GREY = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16}


def picture_levels(im, name) -> np.ndarray:
    """8-bit levels of a pillow image: uint8 [H,W] (greyscale) or [H,W,3] (colour).

    16-bit greyscale keeps its top 8 bits; 32-bit integer greyscale (``I``) must hold
    16-bit values; float greyscale (``F``) must lie in [0, 1]; an alpha channel must be
    fully opaque.  Anything else raises :class:`WeightFileError` naming the mode.
    """
    mode = im.mode
    if mode in ("P", "PA"):  # palette: expand to what the palette holds
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            raise WeightFileError(
                f"{name}: image mode {mode} has {int(np.count_nonzero(alpha < 255))} transparent "
                f"pixels, and the accelerator has no alpha channel; flatten the image onto a "
                f"background first")
        im = im.convert("L" if mode.startswith("L") else "RGB")
        mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.uint8)
    if mode in _DEEP_GREY:
        return (np.asarray(im).astype(np.uint32) >> (_DEEP_GREY[mode] - 8)).astype(np.uint8)
    if mode == "I":
        a = np.asarray(im, dtype=np.int64)
        if a.min() < 0 or a.max() > 0xFFFF:
            raise WeightFileError(
                f"{name}: 32-bit greyscale (mode I) with values {a.min()}..{a.max()}; only 16-bit "
                f"values (0..65535) can be mapped to 8-bit pixels — rescale and save as 8/16-bit")
        return (a >> 8).astype(np.uint8)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise WeightFileError(
                f"{name}: float greyscale (mode F) must hold values in [0, 1] (found "
                f"{np.nanmin(a):.4g}..{np.nanmax(a):.4g}); rescale it or save it as 8/16-bit")
        return np.minimum(np.floor(a * 256), 255).astype(np.uint8)
    if mode in ("CMYK", "YCbCr", "RGBX"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    raise WeightFileError(f"{name}: image mode {mode} is not supported; save the image as 8-bit "
                          f"or 16-bit greyscale, RGB or palette PNG/JPEG")


def synthetic_image(cfg: AcceleratorConfig, seed: int = 0) -> np.ndarray:
    """A deterministic image float32 [C][H][W] with values k/256, k in 0..255.

    A smooth gradient per channel plus noise, so patches differ and attention is not flat.
    """
    rng = np.random.default_rng(seed)
    C, H, W = _image_shape(cfg)
    y = np.linspace(0.0, 1.0, H)[:, None]
    x = np.linspace(0.0, 1.0, W)[None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(C, 2))
    base = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * (x * (1 + c) + phase[c, 0]))
                     * np.cos(2 * np.pi * (y * (2 - c % 2) + phase[c, 1])) for c in range(C)])
    k = np.clip(np.floor(base * 256 + rng.normal(0, 12, size=(C, H, W))), 0, 255)
    return (k / 256.0).astype(np.float32)
