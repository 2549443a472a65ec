"""Patch embedding (spec §4.1): 16×16/16 convolution on raw pixels plus pos_embed.

  X0[t][d] = wrap32( B_d·2^(22-Fb) + Σ_{c,ky,kx} ⌊P·W / 2^(Fp+Fw-22)⌋ + Pos[t][d] ),
  t = 1 + py·grid_w + px;  X0[0] = Pos[0] (the cls token is folded into pos_embed row 0).
"""

from __future__ import annotations

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ShapeError
from moevit.golden.fixed import FM_FRAC, wrap32
from moevit.golden.linear import bias_term, linear, linear_ref


def patches(pixels_raw, cfg: AcceleratorConfig) -> np.ndarray:
    """[C,H,W] raw pixels -> [num_patches, C·p·p] in (c, ky, kx) order, patches row-major."""
    px = np.asarray(pixels_raw, dtype=np.int64)
    C, H, W, p = cfg.image_channels, cfg.image_height, cfg.image_width, cfg.patch_size
    if px.shape != (C, H, W):
        raise ShapeError(f"image: expected raw pixels [{C}, {H}, {W}], got {px.shape}")
    g = px.reshape(C, cfg.grid_h, p, cfg.grid_w, p).transpose(1, 3, 0, 2, 4)
    return g.reshape(cfg.num_patches, C * p * p)


def product_shift(cfg: AcceleratorConfig) -> int:
    """Pixel × conv-weight fractional bits beyond fm_t (8 + 16 - 22 = 2)."""
    return cfg.formats.pixel.frac + cfg.formats.wt_patch_embed.frac - FM_FRAC


def patch_embed(pixels_raw, w_raw, b_raw, pos_raw, cfg: AcceleratorConfig, *, wT=None,
                reference: bool = False) -> np.ndarray:
    """Token matrix [T, D] raw fm_t.  ``reference=True`` uses plain int64 numpy."""
    x = patches(pixels_raw, cfg)
    w = np.asarray(w_raw, dtype=np.int64).reshape(cfg.dim, -1)
    pos = np.asarray(pos_raw, dtype=np.int64)
    sh = product_shift(cfg)
    acc = linear_ref(x, w, None, w_frac=sh) if reference else linear(x, w, None, w_frac=sh, wT=wT)
    bias = bias_term(b_raw, cfg.formats.wt_bias.frac)
    out = np.empty((cfg.tokens, cfg.dim), dtype=np.int64)
    out[0] = pos[0]
    out[1:] = wrap32(acc + bias[None, :] + pos[1:])
    return out
