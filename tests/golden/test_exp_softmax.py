"""The single-pass (online) softmax update rule (spec §4.5.3) in golden/kernels.py."""
from __future__ import annotations

import numpy as np

from moevit.golden.exp import hls_exp
from moevit.golden.fixed import recip, wrap32
from moevit.golden.kernels import FM_MIN, ONE, online_softmax, online_softmax_step


def reference(scores):
    """Scalar transcription of the spec's pseudo-code, with Python ints."""
    total, bias = 0, FM_MIN
    for s in scores:
        d = bias - int(s)
        if d < 0:
            e = int(hls_exp(np.int64(wrap32(d))))
            total = int(wrap32(((total * e) >> 22) + ONE))
            bias = int(s)
        else:
            total = int(wrap32(total + int(hls_exp(np.int64(wrap32(-d))))))
    return total, bias


def test_first_key_leaves_one_and_bias_even_when_positive():
    for s in [0, -5 * ONE, 3 * ONE, 511 * ONE, (1 << 31) - 1, -(1 << 31) + 1]:
        total, bias = online_softmax_step(0, FM_MIN, s)
        assert int(total) == ONE and int(bias) == s
    # for s > 0 the first d = -512 - s wraps positive and exp saturates -- multiplied by sum 0
    assert int(hls_exp(wrap32(np.int64(FM_MIN - 3 * ONE)))) == (1 << 31) - 1


def test_first_key_equal_to_minus_512_is_a_tie():
    # s == -512 is not strictly greater than the initial bias: exp(0) = 1.0 is added to sum 0
    total, bias = online_softmax_step(0, FM_MIN, FM_MIN)
    assert int(total) == ONE and int(bias) == FM_MIN


def test_ties_add_exactly_one():
    s = np.full(7, 1234567)
    total, bias, r = online_softmax(s[None, :])
    assert int(total[0]) == 7 * ONE and int(bias[0]) == 1234567
    assert int(r[0]) == (1 << 44) // (7 * ONE)


def test_new_maximum_rescales_with_floor():
    # [0, 1.0]: sum = floor(1.0 * exp(-1)) + 1.0
    total, bias, _ = online_softmax(np.array([[0, ONE]]))
    e = int(hls_exp(np.int64(-ONE)))
    assert int(total[0]) == e + ONE and int(bias[0]) == ONE
    # [1.0, 0]: sum = 1.0 + exp(-1)   (same value here, but reached by the other branch)
    total2, _, _ = online_softmax(np.array([[ONE, 0]]))
    assert int(total2[0]) == ONE + e


def test_matches_scalar_reference_and_order_matters():
    rng = np.random.default_rng(0)
    s = rng.integers(-4 * ONE, 4 * ONE, size=(200, 40))
    total, bias, r = online_softmax(s)
    for row in range(20):
        assert (int(total[row]), int(bias[row])) == reference(s[row])
    assert np.array_equal(bias, s.max(axis=1))
    assert np.array_equal(r, recip(total))
    # visiting order changes the bits of the sum (not the max)
    total_rev, bias_rev, _ = online_softmax(s[:, ::-1])
    assert np.array_equal(bias_rev, bias)
    differ = np.count_nonzero(total_rev != total)
    assert differ > 20, differ
    # but the value stays close: the float sum of e^(s-max)
    want = np.exp((s - s.max(axis=1, keepdims=True)) / ONE).sum(axis=1)
    assert np.max(np.abs(total / ONE - want)) < 40 * 2.0 ** -22 * 40


def test_softmax_exp_argument_wrap():
    """s - max < -512 wraps to a positive exp argument: the weight saturates (spec §12.1)."""
    big, small = 300 * ONE, -300 * ONE       # difference -600 < -512
    total, bias, _ = online_softmax(np.array([[big, small]]))
    e = int(hls_exp(wrap32(np.int64(small - big))))
    assert e == (1 << 31) - 1               # wrap32(-600) = +424 -> saturates
    assert int(total[0]) == int(wrap32(ONE + e))
    # whereas without the wrap exp(-600) would be 0 and the sum exactly 1.0
    assert int(total[0]) != ONE
