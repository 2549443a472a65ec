"""The numba scalar kernels of golden/_fast.py, driven directly, against Python-int references.

The array kernels are compared with the numpy model elsewhere (test_model_fast.py); these
tests pin the scalar building blocks on the values where an off-by-one shows: reciprocals of
softmax sums that are powers of two (one key dominating a row, exact ties), sums at exact
divisions of 2^44, the exp saturation edges, and the signed-32-bit wrap boundaries.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from moevit.config import preset
from moevit.golden import _fast, attention as att
from moevit.golden.exp import hls_exp
from moevit.golden.fixed import FM_FRAC

ONE = 1 << FM_FRAC
FM_MAX = (1 << 31) - 1
FM_MIN = -(1 << 31)


# ---------------------------------------------------------------------------- references
def py_wrap32(v: int) -> int:
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def py_recip(x: int) -> int:
    """hls::recip by the rule: 0 for 0, else wrap32(trunc0(2^44 / x)) in Python ints."""
    if x == 0:
        return 0
    q = (1 << 2 * FM_FRAC) // abs(x)
    return py_wrap32(-q if x < 0 else q)


def py_exp(x: int) -> int:
    return int(hls_exp(np.int64(x)))


def py_softmax_step(total: int, bias: int, s: int) -> tuple[int, int]:
    """Spec §4.5.3 with Python ints (exp from the property-tested numpy hls_exp)."""
    d = bias - s
    if d < 0:
        return py_wrap32(((total * py_exp(py_wrap32(d))) >> FM_FRAC) + ONE), s
    return py_wrap32(total + py_exp(py_wrap32(-d))), bias


def recip_probes() -> list[int]:
    """Powers of two (the sums of rows with 1, 2, 4, ... tied maxima), exact divisors of
    2^44 and their neighbours, quotient boundaries 2^44 // n ± 1, wrap edges, random."""
    xs = {0, 1, -1, 2, -2, 3, FM_MAX, FM_MIN, FM_MIN + 1, FM_MAX - 1}
    for k in range(31):
        for d in (-1, 0, 1):
            xs.update({(1 << k) + d, -((1 << k) + d)})
    for n in (1, 2, 3, 5, 7, 100, 129, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1):
        base = (1 << 44) // n
        for d in (-1, 0, 1):
            if -(1 << 31) <= base + d < (1 << 31):
                xs.update({base + d, -(base + d)})
    for m in (ONE, 2 * ONE, 3 * ONE, 129 * ONE, ONE + 1, ONE - 1):  # typical softmax sums
        xs.update({m, -m})
    rng = np.random.default_rng(3)
    xs.update(int(v) for v in rng.integers(FM_MIN, FM_MAX, 3000))
    return sorted(x for x in xs if FM_MIN <= x <= FM_MAX)


# ---------------------------------------------------------------------------- scalars
def test_wrap32_scalar_at_the_boundaries():
    for v in (0, 1, -1, FM_MAX, FM_MIN, FM_MAX + 1, FM_MIN - 1, 1 << 32, -(1 << 32),
              (1 << 40) + 5, -(1 << 40) - 5, 3 << 31, (1 << 62) - 1, -(1 << 62)):
        assert _fast.wrap32(v) == py_wrap32(v), v


def test_recip_scalar_powers_of_two_and_exact_divisions():
    for x in recip_probes():
        assert _fast.recip_scalar(x) == py_recip(x), x
    # the worked values: a sum of exactly 1.0 (one dominating key) gives exactly 1.0
    assert _fast.recip_scalar(ONE) == ONE
    assert _fast.recip_scalar(2 * ONE) == ONE // 2
    assert _fast.recip_scalar(1) == py_wrap32(1 << 44) == 0       # 2^44 wraps to 0
    assert _fast.recip_scalar(-3) == py_wrap32(-((1 << 44) // 3))


def test_exp_scalar_saturation_edges():
    sat_ln512 = math.ceil(9 * math.log(2) * ONE)        # first raw with x >= ln 512
    ovf = (15 << FM_FRAC) + 0x78A014 // 2                # 15.94239...: the range check
    edges = [0, 1, -1, ONE, -ONE, 16 << FM_FRAC, (16 << FM_FRAC) - 1, (16 << FM_FRAC) + 1,
             ovf - 1, ovf, ovf + 1, sat_ln512 - 1, sat_ln512, sat_ln512 + 1,
             -(16 << FM_FRAC), -(16 << FM_FRAC) - 1, -(16 << FM_FRAC) + 1, FM_MAX, FM_MIN]
    for x in edges:
        assert _fast.exp_scalar(x) == py_exp(x), x
    # independent facts: e^x saturates at and above ln 512, is 0 below -16, and below the
    # saturation it is floor(e^x * 2^22) or one less
    for x in (16 << FM_FRAC, (16 << FM_FRAC) - 1, ovf, ovf - 1, sat_ln512, FM_MAX):
        assert _fast.exp_scalar(x) == FM_MAX, x
    for x in (-(16 << FM_FRAC) - 1, FM_MIN):
        assert _fast.exp_scalar(x) == 0, x
    for x in (sat_ln512 - 1, 0, -ONE, ONE, -(16 << FM_FRAC) + (1 << 22)):
        fl = math.floor(math.exp(x / ONE) * ONE)
        assert _fast.exp_scalar(x) in (fl, fl - 1), x


def test_softmax_step_scalar_against_python_ints():
    rng = np.random.default_rng(4)
    cases = [(0, FM_MIN, 0), (0, FM_MIN, FM_MIN), (ONE, 0, 0), (ONE, 0, 1), (ONE, 1, 0),
             (ONE, 0, -(16 << FM_FRAC) - 1), (ONE, 0, 17 << FM_FRAC), (FM_MAX, 0, 0),
             (FM_MAX, 0, 1), (3 * ONE, FM_MAX, FM_MIN), (3 * ONE, FM_MIN, FM_MAX)]
    cases += [tuple(int(v) for v in rng.integers([0, FM_MIN, FM_MIN], [FM_MAX, FM_MAX, FM_MAX]))
              for _ in range(2000)]
    for total, bias, s in cases:
        assert tuple(_fast.softmax_step(total, bias, s)) == py_softmax_step(total, bias, s), \
            (total, bias, s)


# ---------------------------------------------------------------------------- softmax rows
def _dominated_scores(cfg, rng, ties):
    """Scores [T, T, H] where, in every (row, head), ``ties`` keys share the maximum and the
    others are more than 16 below it: the softmax sum is exactly ties * 1.0."""
    T, H = cfg.tokens, cfg.heads
    s = rng.integers(-(40 << FM_FRAC), -(20 << FM_FRAC), (T, T, H))
    for q in range(T):
        for h in range(H):
            top = rng.choice(T, ties, replace=False)
            s[q, top, h] = int(rng.integers(-(4 << FM_FRAC), 4 << FM_FRAC))
    return s


@pytest.mark.parametrize("ties", [1, 2, 4])
def test_softmax_sums_that_are_powers_of_two(ties):
    """One dominating key (sum = 1.0), 2 or 4 tied maxima: recip = 2^22 / ties exactly, in
    the numba kernels and in the numpy reference."""
    cfg = preset("edge-moe")
    s = _dominated_scores(cfg, np.random.default_rng(ties), ties)
    order = att.key_orders(cfg, "cyclic").astype(np.int64)
    r, m = _fast.softmax_stats(s, order)
    r_ref, m_ref = att.softmax_stats(s, cfg)
    assert np.all(r == ONE // ties) and np.all(r_ref == ONE // ties)
    assert np.array_equal(m, s.max(axis=1)) and np.array_equal(m_ref, m)
    total, mx = _fast.online_softmax_rows(np.ascontiguousarray(s[:, :, 0]))
    assert np.all(total == ties * ONE) and np.array_equal(mx, s[:, :, 0].max(axis=1))


def test_model_attention_with_a_dominating_key_fast_equals_reference():
    """GoldenModel's attention (numba path vs numpy path) on Q/K where one key dominates
    every row: the sums are exactly 1.0, the reciprocals exactly 1.0, the outputs V of the
    dominating key (A = 1.0)."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weights import seeded_weights
    cfg = preset("tiny")
    T, D = cfg.tokens, cfg.dim
    rng = np.random.default_rng(9)
    q = np.full((T, D), 2 << FM_FRAC, dtype=np.int64)
    k = rng.integers(-(1 << 16), 1 << 16, (T, D))
    dom = 5
    k[dom] = 3 << FM_FRAC                    # q·k_dom > 16 above every other score
    v = rng.integers(-(3 << FM_FRAC), 3 << FM_FRAC, (T, D))
    w = seeded_weights(cfg, 0)
    s, r, m, av = GoldenModel(cfg, w)._attention(q, k, v)
    s2, r2, m2, av2 = GoldenModel(cfg, w, fast=False)._attention(q, k, v)
    for a, b in ((s, s2), (r, r2), (m, m2), (av, av2)):
        assert np.array_equal(a, b)
    assert np.all(s[:, dom, :] - np.delete(s, dom, axis=1).max(axis=1) > 16 << FM_FRAC)
    assert np.all(r == ONE)
    assert np.array_equal(av, np.broadcast_to(v[dom], (T, D)))
