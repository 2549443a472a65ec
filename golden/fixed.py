"""Fixed-point core: raw-integer arithmetic with ap_fixed semantics (spec §3).

Values are raw two's-complement integers in numpy int64 arrays, with the format carried
separately (:class:`moevit.config.FixedFormat`).  Float enters only in :func:`quantize`
(floor, wrap) and leaves only in :func:`to_float`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moevit.config import FixedFormat
from moevit.errors import FormatRangeError

FM = FixedFormat(32, 10)  # fm_t, the activation format (spec §0)
FM_FRAC = FM.frac  # 22


# ---------------------------------------------------------------------------- wrapping
def wrap(v, width: int, signed: bool = True) -> np.ndarray:
    """Keep the low ``width`` bits of integer ``v`` (AP_WRAP), two's complement if signed."""
    v = np.asarray(v, dtype=np.int64)
    if width >= 64:
        return v
    mask = np.int64((1 << width) - 1)
    low = v & mask
    if signed:
        half = np.int64(1 << (width - 1))
        low = np.where(low >= half, low - np.int64(1 << width), low)
    return low


def wrap32(v) -> np.ndarray:
    """Reduce to a signed 32-bit value: ((v + 2^31) mod 2^32) - 2^31."""
    return np.asarray(v, dtype=np.int64).astype(np.int32).astype(np.int64)


def wrap_fmt(v, fmt: FixedFormat) -> np.ndarray:
    """Wrap raw integers into ``fmt``'s integer range."""
    return wrap(v, fmt.width, fmt.signed)


def floor_shift(v, s: int) -> np.ndarray:
    """Arithmetic right shift: floor(v / 2^s) (toward -inf, not toward zero)."""
    return np.right_shift(np.asarray(v, dtype=np.int64), s)


def trunc_div(a, b) -> np.ndarray:
    """Integer division truncated toward zero (APInt sdiv).  ``b`` must be non-zero."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


# ---------------------------------------------------------------------------- quantisation
@dataclass(frozen=True)
class QuantReport:
    """How a float -> fixed conversion went: how many values wrapped, and the worst one."""

    fmt: FixedFormat
    count: int
    wrapped: int
    worst_value: float  # the input value furthest outside the range (nan if none wrapped)
    worst_index: tuple | None

    @property
    def ok(self) -> bool:
        return self.wrapped == 0

    def describe(self, name: str = "tensor") -> str:
        if self.ok:
            return f"{name}: {self.count} values fit {self.fmt}"
        return (f"{name}: {self.wrapped} of {self.count} values lie outside {self.fmt} range "
                f"[{self.fmt.min:g}, {self.fmt.max:g}] and wrap; worst {self.worst_value:g} at "
                f"index {self.worst_index}")


def quantize(x, fmt: FixedFormat, *, name: str = "tensor", on_wrap: str = "wrap"):
    """float -> raw fixed: R = wrap(floor(x * 2^F)) (AP_TRN, AP_WRAP; spec §3.2 rule 1).

    Returns ``(raw, report)``.  ``on_wrap`` is ``"wrap"`` (reproduce the hardware) or
    ``"raise"`` (:class:`FormatRangeError` naming the tensor, the count and the worst value).
    NaN/Inf always raise.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))
        raise FormatRangeError(
            f"{name}: {len(bad)} NaN/Inf values (first at index {tuple(bad[0])}); "
            f"fixed-point formats cannot hold them — check the source data")
    scaled = np.floor(np.ldexp(x, fmt.frac))
    lo, hi = fmt.raw_min, fmt.raw_max
    outside = (scaled < lo) | (scaled > hi)
    wrapped = int(outside.sum())
    worst_value, worst_index = float("nan"), None
    if wrapped:
        excess = np.where(outside, np.maximum(lo - scaled, scaled - hi), -np.inf)
        flat = int(np.argmax(excess))
        worst_index = tuple(int(i) for i in np.unravel_index(flat, x.shape))
        worst_value = float(x.reshape(-1)[flat])
    report = QuantReport(fmt, int(x.size), wrapped, worst_value, worst_index)
    if wrapped and on_wrap == "raise":
        raise FormatRangeError(report.describe(name) + "; rescale the data or widen the format")
    # floor(x*2^F) fits int64 for any sane input; wrap into the format
    if np.any(np.abs(scaled) >= 2.0 ** 62):
        raise FormatRangeError(f"{name}: values up to {np.abs(x).max():g} are too large to "
                               f"convert to {fmt} at all")
    raw = wrap_fmt(scaled.astype(np.int64), fmt)
    return raw, report


def to_float(raw, fmt: FixedFormat = FM) -> np.ndarray:
    """raw fixed -> float64 value (exact for widths up to 53 bits)."""
    return np.ldexp(np.asarray(raw, dtype=np.float64), -fmt.frac)


def convert(raw, src: FixedFormat, dst: FixedFormat) -> np.ndarray:
    """ap_fixed assignment between formats: floor extra fractional bits, then wrap (rule 5)."""
    raw = np.asarray(raw, dtype=np.int64)
    shift = src.frac - dst.frac
    v = floor_shift(raw, shift) if shift >= 0 else raw << np.int64(-shift)
    return wrap_fmt(v, dst)


def to_ap_int(raw, src: FixedFormat, width: int, signed: bool = False) -> np.ndarray:
    """ap_fixed -> ap_uint<width>/ap_int<width>: integer part truncated TOWARD ZERO, then wrap.

    Checked against the Xilinx headers (tests/golden/test_apfixed.py): unlike a conversion to
    another fixed-point type (floor), a conversion to an integer type rounds toward zero, so
    fm_t(-153.9) -> ap_uint<8> gives 103 (= -153 mod 256), not 102.  (Spec §3.2 rule 8 says
    floor; the two agree for the non-negative values the datapath converts.)
    """
    return wrap(trunc_div(np.asarray(raw, dtype=np.int64), np.int64(1) << np.int64(src.frac)),
                width, signed)


# ---------------------------------------------------------------------------- fm_t operations
def mul_fm(a, b, frac_b: int = FM_FRAC) -> np.ndarray:
    """fm_t <- fm_t * (format with ``frac_b`` fractional bits): floor the exact product, wrap32."""
    return wrap32(floor_shift(np.asarray(a, np.int64) * np.asarray(b, np.int64), frac_b))


def div_fm(a, b) -> np.ndarray:
    """fm_t / fm_t into fm_t: trunc0(a * 2^22 / b), wrapped (rule 4).  b == 0 gives 0."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    safe = np.where(b == 0, 1, b)
    return np.where(b == 0, 0, wrap32(trunc_div(a << np.int64(FM_FRAC), safe)))


def recip(x) -> np.ndarray:
    """hls::recip on fm_t: 0 for 0, else wrap32(trunc0(2^44 / X)) (spec §3.3)."""
    x = np.asarray(x, dtype=np.int64)
    safe = np.where(x == 0, 1, x)
    return np.where(x == 0, 0, wrap32(trunc_div(np.int64(1 << (2 * FM_FRAC)), safe)))


def isqrt(v) -> np.ndarray:
    """Exact floor(sqrt(v)) for non-negative int64 v < 2^62, vectorised."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    # float sqrt can be off by one near 2^62; correct both directions
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    r = np.where(r * r > v, r - 1, r)
    return r


def sqrt_rhu(v) -> np.ndarray:
    """hls::sqrt on fm_t: 0 for v<0, else round-half-up sqrt at 2^-22: (isqrt(V*2^24)+1)>>1."""
    v = np.asarray(v, dtype=np.int64)
    pos = np.maximum(v, 0)
    return np.where(v < 0, 0, (isqrt(pos << np.int64(2 * FM_FRAC - 20)) + 1) >> 1)


def rsqrt_ln(var) -> np.ndarray:
    """LayerNorm rstd: fm_t(1) / hls::sqrt(var) = wrap32(trunc0(2^44 / sqrt_rhu(var)))."""
    return recip(sqrt_rhu(var))


def _check_sqrt_shift():
    # V * 2^24: V has 22 fractional bits, the root 23 -> V*2^(2*23-22) = V*2^24.
    assert 2 * FM_FRAC - 20 == 24


_check_sqrt_shift()


def fm_from_float_const(value: float) -> int:
    """A constant converted to fm_t by the hardware rule (floor): fm_t(1/192) -> 21845."""
    return int(wrap32(math.floor(value * 2 ** FM_FRAC)))
