"""Golden-model building blocks against brute-force Python-int statements of the spec."""

import math

import numpy as np

from moevit.config import preset
from moevit.golden.fixed import quantize, to_float, FM
from moevit.golden.kernels import GeluSpec, gelu
from moevit.golden.layernorm import inv_dim_raw, layernorm, layernorm_stats
from moevit.golden.linear import linear_ref
from moevit.golden.patch_embed import patch_embed


def w32(v):
    return (v + 2**31) % 2**32 - 2**31


def test_linear_reference_brute_force_python_ints():
    rng = np.random.default_rng(0)
    x = rng.integers(-2**31, 2**31, (3, 32))
    w = rng.integers(-2**15, 2**15, (16, 32))
    b = rng.integers(-2**15, 2**15, 16)
    y = linear_ref(x, w, b, w_frac=14, bias_frac=9)
    for t in range(3):
        for o in range(16):
            acc = int(b[o]) << 13
            for i in range(32):
                acc += (int(x[t, i]) * int(w[o, i])) >> 14  # Python >> floors
            assert y[t, o] == w32(acc)


def test_linear_floor_per_product_not_per_sum():
    # x*w = -0.5 ULP each: per-product floor gives -1 per term, flooring the sum only -n/2
    x = np.full((1, 16), 1, dtype=np.int64)
    w = np.full((1, 16), -(1 << 13), dtype=np.int64)
    assert linear_ref(x, w, None, w_frac=14)[0, 0] == -16


def test_gelu_linear_output():
    spec = GeluSpec.from_config(preset("edge-moe"))
    x = np.array([[1 << 22]], dtype=np.int64)  # 1.0
    w = np.array([[1 << 14]] * 16, dtype=np.int64).reshape(16, 1)  # weights 1.0
    y = linear_ref(x, w, None, w_frac=14, gelu=lambda v: gelu(v, spec))
    assert abs(to_float(y[0, 0]) - 0.8413447) < 1e-4


def _ln_python(xrow, g, b, cfg):
    c = inv_dim_raw(cfg)
    t = [(int(v) * c) >> 22 for v in xrow]
    mean = w32(sum(t))
    meansq = w32(sum((int(v) * ti) >> 22 for v, ti in zip(xrow, t)))
    var = w32(meansq - w32((mean * mean) >> 22) + cfg.layernorm_eps_raw)
    s = 0 if var < 0 else (math.isqrt(var << 24) + 1) >> 1
    r = 0 if s == 0 else w32((1 << 44) // s)
    out = []
    for v, gi, bi in zip(xrow, g, b):
        y = w32(int(v) - mean)
        y = w32((y * r) >> 22)
        y = w32((y * int(gi)) >> 11)
        out.append(w32(y + (int(bi) << 11)))
    return out, r


def test_layernorm_brute_force_and_float(edge_cfg):
    cfg = edge_cfg
    rng = np.random.default_rng(3)
    xf = rng.normal(0.5, 2.0, (6, cfg.dim))
    x, _ = quantize(xf, FM)
    g, _ = quantize(rng.normal(1.0, 0.2, cfg.dim), cfg.formats.wt_norm)
    b, _ = quantize(rng.normal(0.0, 0.2, cfg.dim), cfg.formats.wt_bias)
    y = layernorm(x, g, b, cfg)
    for t in range(6):
        ref, _ = _ln_python(x[t], g, b, cfg)
        assert list(y[t]) == ref
    # against float LayerNorm on the quantised inputs
    xv, gv, bv = to_float(x), to_float(g, cfg.formats.wt_norm), to_float(b, cfg.formats.wt_bias)
    mu, var = xv.mean(-1, keepdims=True), xv.var(-1, keepdims=True)
    yf = (xv - mu) / np.sqrt(var + cfg.layernorm_eps) * gv + bv
    assert np.max(np.abs(to_float(y) - yf)) < 2e-4


def test_layernorm_rstd_wraps_for_near_constant_token(edge_cfg):
    """Spec §4.2 / §12.1: var <= 3.8e-6 makes 1/sqrt(var) exceed 512 and wrap."""
    cfg = edge_cfg
    x = np.zeros((1, cfg.dim), dtype=np.int64)
    x[0, :3] = [64, -64, 32]  # tiny deviations of a constant token
    mean, var, r = layernorm_stats(x, cfg)
    assert 0 < var[0] <= 16  # raw variance, 16 * 2^-22 = 3.8e-6
    true_rstd = 1 / math.sqrt(var[0] * 2**-22)
    assert true_rstd > 512  # not representable: the hardware wraps
    s = (math.isqrt(int(var[0]) << 24) + 1) >> 1
    assert r[0] == w32((1 << 44) // s) and r[0] != (1 << 44) // s
    g = np.full(cfg.dim, 1 << 11)
    b = np.zeros(cfg.dim, dtype=np.int64)
    y = layernorm(x, g, b, cfg)
    assert list(y[0]) == _ln_python(x[0], g, b, cfg)[0]


def test_patch_embed_brute_force(tiny_cfg):
    cfg = tiny_cfg
    rng = np.random.default_rng(4)
    C, H, W, p, D = cfg.image_channels, cfg.image_height, cfg.image_width, cfg.patch_size, cfg.dim
    px = rng.integers(0, 256, (C, H, W))
    w = rng.integers(-2**15, 2**15, (D, C, p, p))
    b = rng.integers(-2**15, 2**15, D)
    pos = rng.integers(-2**31, 2**31, (cfg.tokens, D))
    fast = patch_embed(px, w, b, pos, cfg)
    ref = patch_embed(px, w, b, pos, cfg, reference=True)
    assert np.array_equal(fast, ref)
    assert np.array_equal(fast[0], pos[0])  # cls row = pos_embed[0] (cls folded in)
    for t, (py, pxx) in [(1, (0, 0)), (1 + cfg.grid_w + 2, (1, 2)), (cfg.tokens - 1,
                                                                    (cfg.grid_h - 1, cfg.grid_w - 1))]:
        for d in (0, D - 1):
            acc = int(b[d]) << 11
            for c in range(C):
                for ky in range(p):
                    for kx in range(p):
                        acc += (int(px[c, py * p + ky, pxx * p + kx]) * int(w[d, c, ky, kx])) >> 2
            assert fast[t, d] == w32(acc + int(pos[t, d]))
