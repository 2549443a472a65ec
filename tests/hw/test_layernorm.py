"""LayerNorm and residual units in Amaranth's own simulator (no Verilator/Icarus needed):
bit-exact against the golden stage functions and the golden model's taps, random valid/ready
back-pressure on every stream, nothing extra after the run, the cycle models exact against
the simulated cycle counts, and the configuration errors.  The cocotb suites
(tests/sim/test_layernorm_rtl.py) run the generated Verilog."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden.fixed import rsqrt_ln
from moevit.golden.layernorm import layernorm_stats
from moevit.golden.model import GoldenModel
from moevit.golden.weights import seeded_weights
from moevit.hw.units.layernorm import (LayerNorm, block_fifo_depth, layernorm_cycles,
                                       layernorm_latency)
from moevit.hw.units.residual import Residual, residual_cycles
from moevit.sim.blocks import block_beats, unpack_blocks
from moevit.sim.pysim import run_pysim
from moevit.sim.tb_layernorm import WRAP_EDGE_VARS, corner_tokens, expected, make_call, \
    param_beats
from moevit.sim.tb_residual import corner_rows, make_rows, residual_golden


def _run_ln(cfg, calls, *, p=1.0, seed=0, tokens=None):
    xs, ps = [], []
    for c in calls:
        xs += block_beats(c["x"], cfg)
        ps += param_beats(c["gain"], c["bias"], cfg)
    got, fired, extra = run_pysim(LayerNorm(cfg, tokens=tokens), {"x": xs, "p": ps},
                                  {"o": len(xs)}, p_valid=p, p_ready=p, seed=seed,
                                  idle_after=block_fifo_depth(cfg) + 50)
    return unpack_blocks(got["o"], cfg).reshape(-1, cfg.dim), fired, extra


def test_corner_tokens_hit_the_rstd_wrap_edge(tiny_cfg, edge_cfg):
    """The corner set has tokens at var = 15, 16 (r wraps to -2^31), 17 (first r without the
    wrap) and a constant token (var = eps -> r = 2^32 wraps to 0): spec §4.2 hazard."""
    for cfg in (tiny_cfg, edge_cfg):
        c = corner_tokens(cfg, np.random.default_rng(0))
        _, var, r = layernorm_stats(c, cfg)
        assert set(WRAP_EDGE_VARS) <= set(var.tolist())
        assert r[var == 16][0] == -(1 << 31) and r[var == 17][0] > 0
        assert r[var == 4][0] == 0 and rsqrt_ln(np.array([16]))[0] == -(1 << 31)
        assert (var < 0).any()                      # meansq - sqm wrapped: sqrt -> 0 -> r = 0


@pytest.mark.parametrize("p", [1.0, 0.6])
def test_layernorm_tiny_bit_exact(tiny_cfg, p):
    rng = np.random.default_rng(7)
    calls = [make_call(tiny_cfg, tiny_cfg.tokens, rng, corners=k == 0) for k in range(3)]
    got, _, extra = _run_ln(tiny_cfg, calls, p=p, seed=3)
    want = np.concatenate([expected(c, tiny_cfg) for c in calls])
    assert np.array_equal(got, want)
    assert extra == 0


def test_layernorm_matches_model_taps(tiny_cfg):
    """Layer 0's LN1 and LN2 from the golden model's own taps (seeded weights, an image)."""
    cfg = tiny_cfg
    model = GoldenModel(cfg, seeded_weights(cfg, 5))
    img = np.random.default_rng(1).integers(0, 256, (1, cfg.image_channels, cfg.image_height,
                                                     cfg.image_width)).astype(np.uint8)
    res = model.run(img, taps={"patch_embed", "l0.ln1", "l0.resid1", "l0.ln2", "l0.proj"})
    t = {k: v[0] for k, v in res.taps.items()}
    w = model.w
    calls = [{"x": t["patch_embed"], "gain": w.norm_weights[0, 0], "bias": w.norm_bias[0, 0]},
             {"x": t["l0.resid1"], "gain": w.norm_weights[0, 1], "bias": w.norm_bias[0, 1]}]
    got, _, _ = _run_ln(cfg, calls, p=0.8, seed=4)
    assert np.array_equal(got, np.concatenate([t["l0.ln1"], t["l0.ln2"]]))
    # and the residual add between them
    g, _, extra = run_pysim(Residual(cfg), {"x": block_beats(t["patch_embed"], cfg),
                                            "y": block_beats(t["l0.proj"], cfg)},
                            {"o": cfg.tokens * cfg.feature_blocks}, p_valid=0.8, p_ready=0.8,
                            seed=2, idle_after=20)
    assert np.array_equal(unpack_blocks(g["o"], cfg).reshape(t["l0.resid1"].shape),
                          t["l0.resid1"])
    assert extra == 0


@pytest.mark.parametrize("name,calls", [("tiny", 3),
                                        pytest.param("edge-moe", 2, marks=pytest.mark.slow)])
def test_layernorm_cycle_model(name, calls):
    """Back-to-back calls, unthrottled: one block per clock, and the RTL's first-input to
    last-output cycles equal the cycle model exactly (the test allows 1 %)."""
    cfg = preset(name)
    rng = np.random.default_rng(11)
    cs = [make_call(cfg, cfg.tokens, rng, corners=False) for _ in range(calls)]
    got, fired, extra = _run_ln(cfg, cs)
    assert np.array_equal(got, np.concatenate([expected(c, cfg) for c in cs]))
    xin, out = fired["x"], fired["o"]
    model = layernorm_cycles(cfg, calls * cfg.tokens)
    span = out[-1] - xin[0] + 1
    assert abs(span - model["cycles"]) <= 0.01 * model["cycles"], (span, model)
    assert out[0] - xin[cfg.feature_blocks - 1] == layernorm_latency(cfg)
    assert out[-1] - out[0] + 1 == len(out) == model["ideal"]        # one block per clock
    assert xin[-1] - xin[0] + 1 == len(xin)                          # input never stalls
    assert extra == 0


@pytest.mark.parametrize("tokens", [1, 2])
def test_layernorm_short_calls_and_parameter_banks(tiny_cfg, tokens):
    """Calls of 1 or 2 tokens: the parameters of the next call load into the other bank while
    the current call drains; a third call must wait for the first bank to be released."""
    rng = np.random.default_rng(3)
    calls = [make_call(tiny_cfg, tokens, rng, corners=False) for _ in range(5)]
    got, _, extra = _run_ln(tiny_cfg, calls, p=0.7, seed=9, tokens=tokens)
    assert np.array_equal(got, np.concatenate([expected(c, tiny_cfg) for c in calls]))
    assert extra == 0


def test_layernorm_config_errors(tiny_cfg):
    with pytest.raises(ConfigError, match="tokens per call must be >= 1"):
        LayerNorm(tiny_cfg, tokens=0)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_residual_bit_exact_and_cycles(tiny_cfg, p):
    cfg = tiny_cfg
    x, y = make_rows(cfg, cfg.tokens, np.random.default_rng(1), corners=True)
    cx, cy = corner_rows(cfg)
    assert (residual_golden(cx, cy) != cx + cy).any()        # the corners do wrap
    n = x.size // cfg.feature_block
    got, fired, extra = run_pysim(Residual(cfg), {"x": block_beats(x, cfg),
                                                  "y": block_beats(y, cfg)}, {"o": n},
                                  p_valid=p, p_ready=p, seed=5, idle_after=20)
    assert np.array_equal(unpack_blocks(got["o"], cfg).reshape(x.shape), residual_golden(x, y))
    assert extra == 0
    if p == 1.0:
        assert fired["o"][-1] - fired["x"][0] + 1 == residual_cycles(cfg, n)
