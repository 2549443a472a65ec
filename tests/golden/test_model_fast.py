"""The numba kernels (golden/_fast.py) equal their numpy references, extremes included."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.golden import _fast, attention as att
from moevit.golden.exp import hls_exp
from moevit.golden.linear import linear, linear_ref
from moevit.golden.kernels import GeluSpec, gelu

FM_LO, FM_HI = -2**31, 2**31


def test_mul_shift_against_python_ints():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        a = int(rng.integers(0, 2**52))
        b = int(rng.integers(0, 2**50))
        s = int(rng.integers(49, 56))
        assert _fast._mul_shift(a, b, s) == (a * b) >> s


EXP_SPECIALS = np.array([0, -1, 1, FM_LO, FM_HI - 1, -(16 << 22), -(16 << 22) - 1,
                         (6 << 22) + 1000000, 26166291, 26166290, (15 << 22), 2**27, -2**27],
                        dtype=np.int64)
# the saturation/overflow edges (+16, 15.94239 = the range check, ln 512, -16) and neighbours
EXP_SPECIALS = np.unique(np.concatenate([EXP_SPECIALS] + [
    e + np.arange(-2, 3) for e in (16 << 22, (15 << 22) + 0x78A014 // 2,
                                   int(np.ceil(9 * np.log(2) * (1 << 22))), -(16 << 22), 0)]))


def test_exp_numba_equals_numpy_grid_and_random():
    grid = np.arange(-(16 << 22) - 64, (1 << 22) + 1, 61, dtype=np.int64)  # 1.17 M points
    assert np.array_equal(_fast.exp_array(grid), hls_exp(grid))
    rng = np.random.default_rng(1)
    r = np.concatenate([rng.integers(FM_LO, FM_HI, 2_000_000), EXP_SPECIALS])
    assert np.array_equal(_fast.exp_array(r), hls_exp(r))
    assert np.array_equal(_fast.exp_array(EXP_SPECIALS), hls_exp(EXP_SPECIALS))


@pytest.mark.slow
def test_exp_numba_equals_numpy_exhaustive():
    """Every fm_t input in [-16 - 2^-20, 1] (71.3 M values; ~20 s)."""
    lo, hi = -(16 << 22) - 4, (1 << 22)
    step = 1 << 22
    for start in range(lo, hi + 1, step):
        x = np.arange(start, min(start + step, hi + 1), dtype=np.int64)
        assert np.array_equal(_fast.exp_array(x), hls_exp(x)), start


def _extreme_ints(rng, shape, lo, hi):
    a = rng.integers(lo, hi, shape)
    flat = a.reshape(-1)
    idx = rng.choice(flat.size, max(1, flat.size // 10), replace=False)
    flat[idx] = rng.choice([lo, hi - 1, 0, -1, 1], idx.size)
    return a


@pytest.mark.parametrize("shape", [(9, 32, 16), (5, 768, 192), (7, 48, 384), (1, 30, 20),
                                   (4, 3, 5)])
def test_linear_fast_equals_reference_extremes(shape):
    rng = np.random.default_rng(shape[1])
    n, nin, nout = shape
    x = _extreme_ints(rng, (n, nin), FM_LO, FM_HI)
    w = _extreme_ints(rng, (nout, nin), -2**15, 2**15)
    b = _extreme_ints(rng, (nout,), -2**15, 2**15)
    spec = GeluSpec.from_config(preset("edge-moe"))
    g = lambda y: gelu(y, spec)
    for bf in (9, 11):
        assert np.array_equal(linear(x, w, b, w_frac=14, bias_frac=bf, gelu=g),
                              linear_ref(x, w, b, w_frac=14, bias_frac=bf, gelu=g))
    rows = np.array([0, 2, 2, n - 1])[:max(1, n - 1)] % n  # gathered rows, duplicates
    assert np.array_equal(linear(x, w, None, w_frac=14, rows=rows),
                          linear_ref(x[rows], w, None, w_frac=14))


@pytest.mark.parametrize("scale", ["normal", "extreme"])
def test_attention_kernels_equal_reference(scale):
    cfg = preset("edge-moe")
    rng = np.random.default_rng(7)
    T, D = cfg.tokens, cfg.dim
    if scale == "normal":
        q, k, v = (rng.normal(0, 2**23, (T, D)).astype(np.int64) for _ in range(3))
    else:  # full-range values: block accumulators, scores and exp arguments wrap
        q, k, v = (_extreme_ints(rng, (T, D), FM_LO, FM_HI) for _ in range(3))
    s_ref = att.qk_scores(q, k, cfg)
    s = _fast.qk_scores(q, k, cfg.heads, cfg.head_dim, cfg.feature_block, cfg.attn_scale_shift)
    assert np.array_equal(s, s_ref)
    s2 = _fast.qk_scores_split(q, np.ascontiguousarray(k.T), cfg.heads, cfg.head_dim,
                               cfg.feature_block, cfg.attn_scale_shift)
    assert np.array_equal(s2, s_ref)
    if scale == "extreme":
        s = _extreme_ints(rng, s.shape, FM_LO, FM_HI)
    for order in ("cyclic", "natural"):
        r_ref, m_ref = att.softmax_stats(s, cfg, order)
        r, m = _fast.softmax_stats(s, att.key_orders(cfg, order).astype(np.int64))
        assert np.array_equal(r, r_ref) and np.array_equal(m, m_ref)
    av_ref = att.attention_av(v, s, r, m, cfg)
    assert np.array_equal(_fast.attention_av(v, s, r, m, cfg.head_dim), av_ref)
    assert np.array_equal(_fast.attention_av_split(v, s, r, m, cfg.head_dim), av_ref)
    # recips from real statistics as well (the extreme case above uses random ones too)
    r2 = _extreme_ints(rng, r.shape, FM_LO, FM_HI)
    assert np.array_equal(_fast.attention_av_split(v, s, r2, m, cfg.head_dim),
                          att.attention_av(v, s, r2, m, cfg))


def test_gelu_numba_equals_numpy():
    spec = GeluSpec.from_config(preset("edge-moe"))
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.integers(FM_LO, FM_HI, 500_000),
                        np.arange(-(6 << 22), 6 << 22, 997),  # dense over the table range
                        [FM_LO, FM_LO + 1, FM_HI - 1, 0, -1, 1, 176 << 17, (176 << 17) - 1,
                         -(176 << 17), -(176 << 17) + 1]]).astype(np.int64).reshape(-1, 2)
    got = _fast.gelu_array(x, spec.table, spec.index_shift, spec.cutoff_raw, spec.index_bits)
    assert np.array_equal(got, gelu(x, spec))
