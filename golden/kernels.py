"""Approximation kernels of the Edge-MoE datapath: table GELU (spec §4.4) and the
single-pass (online) softmax statistics (spec §4.5.3), on raw fm_t integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moevit.config import AcceleratorConfig, preset
from moevit.golden.exp import hls_exp
from moevit.golden.fixed import FM_FRAC, floor_shift, mul_fm, recip, wrap32

ONE = 1 << FM_FRAC  # 1.0 in fm_t
FM_MIN = -(1 << 31)  # -512.0, the online softmax's initial bias


# ---------------------------------------------------------------------------- GELU
def gelu_table(step_log2: int = 5, entries: int = 177, frac: int = FM_FRAC) -> np.ndarray:
    """delta(x) = x * Phi(-x) sampled every 2^-step_log2, rounded to nearest at 2^-frac.

    Generated from the erf formula (spec §4.4): T[i] = rn((i/32) * Phi(-i/32) * 2^22).
    """
    vals = []
    for i in range(entries):
        x = i / (1 << step_log2)
        delta = x * 0.5 * math.erfc(x / math.sqrt(2.0))
        vals.append(math.floor(delta * (1 << frac) + 0.5))
    return np.array(vals, dtype=np.int64)


@dataclass(frozen=True)
class GeluSpec:
    """Geometry of the GELU unit, derived from the config."""

    table: np.ndarray
    step_log2: int
    entries: int

    @property
    def index_shift(self) -> int:
        """|x| raw >> index_shift = floor(|x| * 32) (17 for 22 fractional bits)."""
        return FM_FRAC - self.step_log2

    @property
    def cutoff_raw(self) -> int:
        """|x| at or above this raw value returns relu(x) (5.5 -> 176 * 2^17)."""
        return (self.entries - 1) << self.index_shift

    @property
    def index_bits(self) -> int:
        return (self.entries - 1).bit_length()

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "GeluSpec":
        t = gelu_table(cfg.gelu_table_step_log2, cfg.gelu_table_entries, cfg.formats.fm_frac.frac)
        return cls(t, cfg.gelu_table_step_log2, cfg.gelu_table_entries)


_DEFAULT_GELU = GeluSpec.from_config(preset("edge-moe"))


def gelu(x_raw, spec: GeluSpec = _DEFAULT_GELU) -> np.ndarray:
    """Table GELU on fm_t raw values (spec §4.4 steps 1-7)."""
    x = np.asarray(x_raw, dtype=np.int64)
    neg = x < 0
    relu = np.where(neg, 0, x)
    xa = np.where(neg, wrap32(-x), x)
    sat = xa >= spec.cutoff_raw
    sh = spec.index_shift
    idx = (xa >> sh) & ((1 << spec.index_bits) - 1)
    idx = np.where(sat, 0, idx)  # keep table reads in range; result replaced below
    t = (xa & ((1 << sh) - 1)) << (FM_FRAC - sh)
    a = spec.table[idx]
    b = spec.table[np.minimum(idx + 1, spec.entries - 1)]
    delta = floor_shift((a << FM_FRAC) + t * (b - a), FM_FRAC) & ((1 << FM_FRAC) - 1)
    return np.where(sat, relu, relu - delta)


# ---------------------------------------------------------------------------- online softmax
def online_softmax_step(total, bias, s):
    """One update of the single-pass softmax state (spec §4.5.3), vectorised over lanes.

    ``total``/``bias`` are the running sum and maximum (fm_t raw), ``s`` the new score.
    Returns the new ``(total, bias)``.  A strictly greater score rescales the sum by
    exp(old_max - new_max) (floored) and adds 1.0; ties and smaller scores add exp(s - max).
    """
    total = np.asarray(total, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    d = bias - s  # exact 33-bit difference
    new_max = d < 0
    e = hls_exp(wrap32(np.where(new_max, d, -d)))
    total = np.where(new_max, wrap32(mul_fm(total, e) + ONE), wrap32(total + e))
    bias = np.where(new_max, s, bias)
    return total, bias


def online_softmax(scores_in_order) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the online softmax over the last axis, in the order given.

    Returns ``(sum, max, recip)`` per row, with recip = hls_recip(sum).  The caller is
    responsible for the visiting order (the hardware's cyclic key order is part of the
    numerics).
    """
    s = np.asarray(scores_in_order, dtype=np.int64)
    total = np.zeros(s.shape[:-1], dtype=np.int64)
    bias = np.full(s.shape[:-1], FM_MIN, dtype=np.int64)
    for k in range(s.shape[-1]):
        total, bias = online_softmax_step(total, bias, s[..., k])
    return total, bias, recip(total)
