"""Properties of the fixed-point core (golden/fixed.py) and the spec's worked numbers (§3.2, §13.3)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from moevit.config import FixedFormat, Formats
from moevit.errors import FormatRangeError
from moevit.golden import fixed as fx

F = Formats()
ONE = 1 << 22


# ----------------------------------------------------------------------------- sqrt / recip
def _sqrt_cases():
    rng = np.random.default_rng(0)
    return np.concatenate([np.arange(0, 1_000_001), rng.integers(0, 1 << 31, 2_000_000)]).astype(np.int64)


def test_sqrt_rhu_is_round_half_up_of_sqrt():
    """S = round-half-up(sqrt(V*2^-22) * 2^22)  <=>  (2S-1)^2 <= V*2^24 < (2S+1)^2 (exact ints)."""
    v = _sqrt_cases()
    s = fx.sqrt_rhu(v)
    w = v << 24
    assert np.all(((2 * s - 1) ** 2 <= w) | (s == 0)) and np.all(w < (2 * s + 1) ** 2)
    # spot-check against Python's exact integer sqrt
    for vi in list(range(0, 2000)) + [int(x) for x in v[-2000:]]:
        assert int(fx.sqrt_rhu(np.int64(vi))) == (math.isqrt(vi << 24) + 1) >> 1
    # round-half-up differs from floor sqrt in about half the cases
    floor_s = fx.isqrt(w) >> 1
    assert 0.4 < np.mean(s != floor_s) < 0.6


def test_sqrt_of_negative_is_zero():
    assert np.all(fx.sqrt_rhu(np.array([-1, -ONE, -(1 << 31)])) == 0)


def test_isqrt_exact_up_to_2_62():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.integers(0, 1 << 62, 200_000), (np.arange(1, 2000, dtype=np.int64) ** 2),
                        (np.arange(1, 2000, dtype=np.int64) ** 2) - 1,
                        np.array([(1 << 62) - 1, 2147483647 ** 2, 2147483647 ** 2 - 1, 2147483647 ** 2 + 1])])
    r = fx.isqrt(v)
    assert np.all(r * r <= v) and np.all((r + 1) * (r + 1) > v)
    for vi in v[:3000]:
        assert int(fx.isqrt(np.int64(vi))) == math.isqrt(int(vi))


def test_recip_is_trunc0_of_2_44_over_x():
    rng = np.random.default_rng(2)
    x = np.concatenate([np.arange(1, 1_000_001), rng.integers(1, 1 << 31, 2_000_000)]).astype(np.int64)
    r = fx.recip(x)
    big = x > (1 << 13)  # 2^44/X < 2^31: no wrap
    assert np.array_equal(r[big], (1 << 44) // x[big])
    # X <= 2^13 (x <= 2^-9) wraps
    assert int(fx.recip(np.int64(1 << 13))) == -(1 << 31)
    assert int(fx.recip(np.int64(1))) == 0  # 2^44 mod 2^32
    assert int(fx.recip(np.int64(3))) == ((1 << 44) // 3 + (1 << 31)) % (1 << 32) - (1 << 31)
    for xi in x[-2000:]:
        assert int(fx.recip(xi)) == (1 << 44) // int(xi)
    # negatives truncate toward zero; floor would be one lower for every non-exact quotient
    xn = -x[big][:100_000]
    assert np.array_equal(fx.recip(xn), -((1 << 44) // -xn))
    assert int(fx.recip(np.int64(0))) == 0


def test_trunc_div_rounds_toward_zero():
    a = np.array([7, -7, 7, -7, 6, -6])
    b = np.array([2, 2, -2, -2, 3, -3])
    assert list(fx.trunc_div(a, b)) == [3, -3, -3, 3, 2, 2]


def test_floor_shift_rounds_toward_minus_infinity():
    assert list(fx.floor_shift(np.array([5, -5, -1, -8, -9]), 2)) == [1, -2, -1, -2, -3]


# ----------------------------------------------------------------------------- worked examples
def test_spec_worked_examples_3_2():
    raw, _ = fx.quantize(-0.3, F.wt_linear)
    assert fx.to_float(raw, F.wt_linear) == -0.300048828125        # floor, not round
    raw, rep = fx.quantize(2.5, F.wt_linear)
    assert fx.to_float(raw, F.wt_linear) == -1.5 and rep.wrapped == 1
    raw, rep = fx.quantize(1.0, F.pixel)
    assert int(raw) == 0 and rep.wrapped == 1                       # pixel 1.0 wraps to 0
    assert int(fx.quantize(1.0 / 192, F.fm)[0]) == 21845 == fx.fm_from_float_const(1 / 192)
    assert int(fx.quantize(1e-6, F.fm)[0]) == 4 == fx.fm_from_float_const(1e-6)
    assert fx.to_float(np.int64(21845)) == pytest.approx(0.0052082538, abs=1e-10)


def test_spec_worked_examples_13_3():
    third = fx.div_fm(np.int64(ONE), np.int64(-3 * ONE))
    assert float(fx.to_float(third)) == pytest.approx(-0.33333325, abs=5e-9)
    assert int(third) == -(ONE // 3)                                # trunc toward zero
    assert fx.to_float(fx.wrap32(int(511.5 * ONE) + ONE)) == -511.5  # 511.5 + 1 wraps
    assert fx.to_float(fx.mul_fm(300 * ONE, 300 * ONE)) == -112.0   # 90000 mod 1024
    eighth = int(fx.quantize(0.125, F.fm)[0])
    assert int(fx.mul_fm(np.int64(-2), eighth)) == -1               # (-2 ULP) * 0.125 -> -1 ULP (floor)
    assert int(fx.mul_fm(np.int64(2), eighth)) == 0


def test_acc_plus_product_equals_floored_product():
    """Rule 6: floor(acc + p) == acc + floor(p) when acc is on the 2^-22 grid."""
    rng = np.random.default_rng(3)
    acc = rng.integers(-(1 << 31), 1 << 31, 100_000)
    x = rng.integers(-(1 << 31), 1 << 31, 100_000)
    w = rng.integers(-(1 << 15), 1 << 15, 100_000)
    wide = fx.wrap32(fx.floor_shift((acc << 14) + x * w, 14))
    assert np.array_equal(wide, fx.wrap32(acc + fx.mul_fm(x, w, 14)))


def test_sums_are_order_free_mod_2_32():
    rng = np.random.default_rng(4)
    v = rng.integers(-(1 << 31), 1 << 31, (50, 200))
    fwd = np.zeros(50, dtype=np.int64)
    for k in range(200):
        fwd = fx.wrap32(fwd + v[:, k])
    assert np.array_equal(fwd, fx.wrap32(v[:, ::-1].sum(axis=1)))


# ----------------------------------------------------------------------------- quantize/convert
def test_quantize_reports_wraps_and_worst_value():
    x = np.array([[0.0, 1.9], [2.5, -7.0]])
    raw, rep = fx.quantize(x, F.wt_linear, name="w")
    assert rep.wrapped == 2 and rep.worst_value == -7.0 and rep.worst_index == (1, 1)
    with pytest.raises(FormatRangeError, match=r"w: 2 of 4 values .*ap_fixed<16,2>.*worst -7"):
        fx.quantize(x, F.wt_linear, name="w", on_wrap="raise")
    with pytest.raises(FormatRangeError, match=r"w: 1 NaN/Inf"):
        fx.quantize(np.array([1.0, np.nan]), F.wt_linear, name="w")


def test_convert_floor_then_wrap():
    fm = F.fm
    # -1 ULP of fm_t to wt_linear (14 frac bits) floors to -1 ULP of wt_linear
    assert int(fx.convert(np.int64(-1), fm, F.wt_linear)) == -1
    assert int(fx.convert(np.int64(1), fm, F.wt_linear)) == 0
    # 2.0 wraps to -2.0 in ap_fixed<16,2>
    assert int(fx.convert(np.int64(2 * ONE), fm, F.wt_linear)) == -(1 << 15)
    # widening is exact
    b = np.arange(-(1 << 15), 1 << 15, 7)
    assert np.array_equal(fx.convert(b, F.wt_bias, F.wt_wbias), b)
    assert np.array_equal(fx.convert(fx.convert(b, F.wt_attn_bias, fm), fm, F.wt_attn_bias), b)


def test_to_ap_int_truncates_toward_zero():
    x = np.array([int(-153.9 * ONE), int(153.9 * ONE), -ONE // 2, 300 * ONE])
    assert list(fx.to_ap_int(x, F.fm, 8)) == [103, 153, 0, 44]
    assert list(fx.convert(x, F.fm, FixedFormat(8, 8, signed=False))) == [102, 153, 255, 44]
