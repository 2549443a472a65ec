"""The GELU δ-table and the table GELU (spec §4.4, §13.1-2), checked against exact erf."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import torch

from moevit.config import preset
from moevit.golden.fixed import FM_FRAC
from moevit.golden.kernels import GeluSpec, gelu, gelu_table

ONE = 1 << FM_FRAC


def exact_delta(i: int, rounding) -> int:
    """rounding((i/32) * Phi(-i/32) * 2^22) with 50-digit erfc."""
    with mpmath.workdps(50):
        x = mpmath.mpf(i) / 32
        v = x * mpmath.erfc(x / mpmath.sqrt(2)) / 2 * ONE
        return int(rounding(v))


def test_table_shape_and_landmarks():
    t = gelu_table()
    assert t.shape == (177,)
    assert t[0] == 0 and t[176] == 0
    assert int(np.argmax(t)) == 24
    assert abs(t[24] / ONE - 0.16997) < 5e-6
    assert np.all(t >= 0) and np.all(t < ONE)  # fits ap_ufixed<22,0>


def test_table_is_round_to_nearest_of_exact_erf():
    t = gelu_table()
    rn = [exact_delta(i, lambda v: mpmath.floor(v + mpmath.mpf(1) / 2)) for i in range(177)]
    fl = [exact_delta(i, mpmath.floor) for i in range(177)]
    ce = [exact_delta(i, mpmath.ceil) for i in range(177)]
    assert list(t) == rn
    # spec §13.1: floor would give 91 mismatches and ceil 85 -- the rounding rule matters
    assert sum(a != b for a, b in zip(t, fl)) == 91
    assert sum(a != b for a, b in zip(t, ce)) == 85


def test_table_follows_config():
    spec = GeluSpec.from_config(preset("edge-moe"))
    assert spec.index_shift == 17 and spec.cutoff_raw == 176 << 17 and spec.index_bits == 8
    assert np.array_equal(spec.table, gelu_table())


def _exact_gelu(x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(x)
    return (0.5 * xt * (1.0 + torch.erf(xt / math.sqrt(2.0)))).numpy()


def test_gelu_accuracy_matches_spec():
    """Grid of 97 raw steps over [-8, 8] (spec §13.2)."""
    raw = np.arange(-8 * ONE, 8 * ONE + 1, 97, dtype=np.int64)
    x = raw / ONE
    err = np.abs(gelu(raw) / ONE - _exact_gelu(x))
    imax = int(np.argmax(err))
    assert 9.7e-5 < err[imax] < 9.85e-5
    assert abs(x[imax] - (-0.0156)) < 0.002
    assert 7.5e-6 < err.mean() < 7.9e-6
    beyond = np.abs(x) >= 5.5
    assert err[beyond].max() < 1.1e-7


def test_gelu_both_signs_and_cutoff():
    # relu beyond |x| >= 5.5, exact
    raw = np.array([176 << 17, (176 << 17) + 1, 100 * ONE, -(176 << 17), -100 * ONE])
    assert list(gelu(raw)) == [176 << 17, (176 << 17) + 1, 100 * ONE, 0, 0]
    # table points: gelu(i/32) = i/32 - T[i], gelu(-i/32) = -T[i]
    t = gelu_table()
    i = np.arange(176)
    assert np.array_equal(gelu(i << 17), (i << 17) - t[:176])
    assert np.array_equal(gelu(-(i << 17)), -t[:176])


def test_gelu_interpolation_floors():
    """Between table points δ = floor(a + t(b-a)) (t in 2^-22 units), also for falling segments."""
    t = gelu_table()
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 176 << 17, 100_000)
    idx, frac = raw >> 17, (raw & ((1 << 17) - 1)) << 5
    a, b = t[idx], t[idx + 1]
    want_delta = [(int(ai) * ONE + int(fi) * (int(bi) - int(ai))) // ONE for ai, bi, fi in zip(a, b, frac)]
    assert np.array_equal(raw - gelu(raw), np.array(want_delta))
    assert np.any(b < a)  # falling segments (negative slope) were exercised
