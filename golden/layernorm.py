"""LayerNorm of the Edge-MoE datapath on raw fm_t integers (spec §4.2).

Per token, with c = fm_t(1/D) (floor; 21845 for D = 192):
  t_d = ⌊X_d·c⌋,  mean = Σ t_d,  meansq = Σ ⌊X_d·t_d⌋,  var = meansq - ⌊mean²⌋ + eps,
  r = trunc0(2^44 / sqrt_rhu(var)),  y_d = ⌊⌊(X_d - mean)·r⌋·g_d⌋ + b_d,
every fm_t result wrapping to 32 bits.  r wraps when var <= 3.8e-6 (near-constant token):
the hardware does this too, and so does this model.
"""

from __future__ import annotations

import math

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ShapeError
from moevit.golden.fixed import FM_FRAC, floor_shift, rsqrt_ln, wrap32
from moevit.golden.linear import bias_term


def inv_dim_raw(cfg: AcceleratorConfig) -> int:
    """fm_t(1/D): the per-element scale, floored (21845 for D = 192)."""
    return math.floor((1 << FM_FRAC) / cfg.dim)


def layernorm_stats(x_raw, cfg: AcceleratorConfig):
    """(mean, var, rstd) per token, raw fm_t, exactly as the hardware forms them."""
    x = np.asarray(x_raw, dtype=np.int64)
    if x.shape[-1] != cfg.dim:
        raise ShapeError(f"layernorm: last axis {x.shape[-1]} is not dim {cfg.dim}")
    t = wrap32(floor_shift(x * inv_dim_raw(cfg), FM_FRAC))
    mean = wrap32(t.sum(axis=-1))
    meansq = wrap32(floor_shift(x * t, FM_FRAC).sum(axis=-1))
    sqm = wrap32(floor_shift(mean * mean, FM_FRAC))
    var = wrap32(meansq - sqm + cfg.layernorm_eps_raw)
    return mean, var, rsqrt_ln(var)


def layernorm(x_raw, gain_raw, bias_raw, cfg: AcceleratorConfig) -> np.ndarray:
    """LayerNorm over the last axis of raw fm_t ``x``; gain/bias raw in wt_norm / wt_bias."""
    x = np.asarray(x_raw, dtype=np.int64)
    g = np.asarray(gain_raw, dtype=np.int64)
    b = np.asarray(bias_raw, dtype=np.int64)
    if g.shape != (cfg.dim,) or b.shape != (cfg.dim,):
        raise ShapeError(f"layernorm: gain {g.shape} / bias {b.shape} must be ({cfg.dim},)")
    mean, _, r = layernorm_stats(x, cfg)
    y = wrap32(x - mean[..., None])
    y = wrap32(floor_shift(y * r[..., None], FM_FRAC))
    y = wrap32(floor_shift(y * g, cfg.formats.wt_norm.frac))
    return wrap32(y + bias_term(b, cfg.formats.wt_bias.frac))
