"""``hls::exp`` for ``ap_fixed<32,10>``, bit for bit (spec Appendix B), vectorised in numpy.

The six tables are generated at import from their closed forms with ``decimal`` at 60
significant digits (no pasted constants).  Wide products (up to 100 bits) are formed from
32-bit limbs in uint64 so the whole evaluation stays vectorised.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext

import numpy as np

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)


def _E(a: Decimal) -> Decimal:
    """e^a - 1 - a."""
    return a.exp() - 1 - a


def _to_int(x: Decimal, rounding) -> int:
    return int(x.to_integral_value(rounding=rounding))


def _build_tables() -> dict[str, np.ndarray]:
    with localcontext() as ctx:
        ctx.prec = 60
        two = Decimal(2)

        def s(k):
            return k - 256 if k >= 128 else k

        t1 = [_to_int((Decimal(s(k)) / 8).exp() * two ** 27, ROUND_FLOOR) for k in range(256)]
        t2 = [_to_int(_E(Decimal(k) * two ** -11) * two ** 52, ROUND_FLOOR) for k in range(256)]
        t3 = [_to_int(_E(Decimal(k) * two ** -16) * two ** 55, ROUND_HALF_UP) for k in range(32)]
        t4h = [_to_int(_E(Decimal(k) * two ** -19) * two ** 39, ROUND_FLOOR) for k in range(8)]
        t4l = [_to_int((_E(Decimal(k) * two ** -19) - t4h[k] * two ** -39) * two ** 58,
                       ROUND_HALF_UP) for k in range(8)]
        tl = [_to_int(_E(Decimal(k) * two ** -23) * two ** 47, ROUND_FLOOR) for k in range(16)]
    return {name: np.array(vals, dtype=np.uint64) for name, vals in
            dict(T1=t1, T2=t2, T3=t3, T4h=t4h, T4l=t4l, TL=tl).items()}


TABLES = _build_tables()


def _mul_shift(a: np.ndarray, b: np.ndarray, s: int) -> np.ndarray:
    """floor(a*b / 2^s) mod 2^64 for uint64 a, b < 2^63 and 0 < s < 64 (exact 128-bit product)."""
    a0, a1 = a & _MASK32, a >> _U64(32)
    b0, b1 = b & _MASK32, b >> _U64(32)
    with np.errstate(over="ignore"):  # the low-word add wraps on purpose (0-d inputs warn)
        lo = a0 * b0
        mid = a1 * b0 + a0 * b1  # < 2^64: both terms < 2^63
        hi = a1 * b1
        mid_lo = (mid & _MASK32) << _U64(32)
        low = lo + mid_lo
        carry = (low < lo).astype(np.uint64)
        high = hi + (mid >> _U64(32)) + carry
        return (high << _U64(64 - s)) | (low >> _U64(s))


def hls_exp(x_raw) -> np.ndarray:
    """hls::exp of fm_t raw values (int64 array in, int64 raw fm_t out).

    Returns floor(e^x * 2^22) or one below it; 0 for x < -16; 2^31-1 for x >= ln 512.
    """
    x = np.asarray(x_raw, dtype=np.int64)
    xl = x * 2  # ap_fixed<47,24>: 23 fractional bits
    u = (xl & np.int64((1 << 47) - 1)).astype(np.uint64)
    sign = (xl < 0).astype(np.uint64)
    overflow = (xl < -(1 << 27)) | (xl >= (1 << 27)) | \
               (((xl >> 23) == 15) & ((xl & ((1 << 23) - 1)) >= 0x78A014))

    ind1 = (sign << _U64(7)) | ((u >> _U64(20)) & _U64(0x7F))
    ind2 = (u >> _U64(12)) & _U64(0xFF)
    ind3 = (u >> _U64(7)) & _U64(0x1F)
    ind4 = (u >> _U64(4)) & _U64(0x7)
    lsb = u & _U64(0xF)

    t = TABLES
    tl = t["TL"][lsb]
    m = ((t["T4h"][ind4] << _U64(3)) + (tl >> _U64(5)) + ind4 * lsb) & _U64(0x3FF)
    a = ((u & _U64(0x7F)) << _U64(35)) + (m << _U64(16)) + ((tl & _U64(31)) << _U64(11)) \
        + t["T4l"][ind4]
    b = (ind3 << _U64(39)) + t["T3"][ind3]
    c = (_mul_shift(b, a, 55) + (b << _U64(3)) + a) & _U64((1 << 48) - 1)
    d = t["T2"][ind2] + (ind2 << _U64(41))
    ecomb = ((_mul_shift(d, c, 52) + (d << _U64(6)) + c) >> _U64(6)) & _U64((1 << 50) - 1)
    t1 = t["T1"][ind1]
    y27 = _mul_shift(t1, ecomb, 52) + t1
    y23 = (y27 >> _U64(4)) & _U64((1 << 46) - 1)

    y23 = np.where(overflow, np.where(x >= 0, _U64((1 << 46) - 1), _U64(0)), y23)
    y23 = np.minimum(y23, _U64((1 << 32) - 1))
    return (y23 >> _U64(1)).astype(np.int64)
