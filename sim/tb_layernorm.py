"""cocotb testbench of :class:`moevit.hw.units.layernorm.LayerNorm` (spec §4.2) and the
vectors it uses (also used by the Amaranth-simulator tests).

The testbench plays the sequencer: for each call it streams the parameter beats (gains then
biases, int16, as in DRAM) on ``p`` and the token blocks on ``x``, drains ``o`` with random
valid/ready back-pressure on every stream, compares every output with
:func:`moevit.golden.layernorm.layernorm`, then holds ``o.ready`` high for a while and checks
that nothing extra arrives.  A second, unthrottled call measures cycles against the cycle
model (:func:`moevit.hw.units.layernorm.layernorm_cycles`).

Parameters (``tb_params()``): ``seed``, ``p_valid``, ``p_ready``, ``calls`` (back-to-back
calls under back-pressure, default 2; the first carries the corner tokens), ``tokens``
(tokens per call; the unit is built for the same number), ``vectors_npz`` (optional file with
``x`` [T, dim], ``gain``, ``bias`` raw, e.g. golden model taps; used for the first call).
"""

from __future__ import annotations

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from moevit.config import AcceleratorConfig
from moevit.golden.layernorm import layernorm, layernorm_stats
from moevit.sim.blocks import block_beats, pack, unpack
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_stream import start_clock_reset

FM_MIN, FM_MAX = -(1 << 31), (1 << 31) - 1
#: var values of the rstd wrap edge: sqrt_rhu(16) = 2^13 -> 2^44 / 2^13 = 2^31 wraps to -2^31;
#: var 17 is the first that does not wrap; var 4 (eps only) gives 2^32 -> 0
WRAP_EDGE_VARS = (4, 15, 16, 17, 18)


def param_beats(gain, bias, cfg: AcceleratorConfig) -> list[int]:
    """Gains then biases as int16 beats (spec §7 rows norm_weights[l][n], norm_bias[l][n])."""
    per = cfg.axi_width // cfg.formats.wt_norm.width
    return pack(gain, cfg.formats.wt_norm.width, per) + pack(bias, cfg.formats.wt_bias.width, per)


def _token_with_var(cfg, target: int) -> np.ndarray | None:
    """A token with one non-zero element a whose variance is exactly ``target`` (searched
    with the golden statistics around a ~ sqrt(var·2^2F / c))."""
    from moevit.golden.layernorm import inv_dim_raw
    frac = cfg.formats.fm.frac
    guess = int(np.sqrt(max(target - cfg.layernorm_eps_raw, 0) * 2.0 ** (2 * frac)
                        / inv_dim_raw(cfg)))
    for lo in range(max(0, guess - 8192), guess + 8192, 1024):
        x = np.zeros((1024, cfg.dim), dtype=np.int64)
        x[:, 0] = np.arange(lo, lo + 1024)
        hit = np.flatnonzero(layernorm_stats(x, cfg)[1] == target)
        if len(hit):
            return x[hit[0]]
    return None


def corner_tokens(cfg: AcceleratorConfig, rng) -> np.ndarray:
    """Format extremes, wraps, constant tokens (rstd wrap) and the var wrap edge."""
    d = cfg.dim
    rows = [np.full(d, v, dtype=np.int64) for v in (0, 1, -1, FM_MAX, FM_MIN, 5 << 22,
                                                     -(3 << 22) + 7)]          # constant
    rows.append(np.where(np.arange(d) % 2, FM_MAX, FM_MIN))                   # alternating
    rows.append(np.where(np.arange(d) < d // 2, FM_MAX, 0))                  # X - mean wraps
    rows.append(np.where(np.arange(d) == 0, FM_MIN, 1 << 20))
    for v in WRAP_EDGE_VARS:
        tok = _token_with_var(cfg, v)
        if tok is not None:
            rows.append(tok)
            rows.append(np.roll(tok, d - 1))                                 # at the last lane
    rows.append(rng.integers(-(1 << 12), 1 << 12, size=d))                   # tiny variance
    rows.append(rng.integers(FM_MIN, FM_MAX, size=d, endpoint=True))         # full range
    return np.array(rows, dtype=np.int64)


def make_call(cfg: AcceleratorConfig, tokens: int, rng, *, corners: bool,
              amplitude: float = 8.0) -> dict:
    """One call: ``x`` [tokens, dim], ``gain``, ``bias`` raw; corner tokens first (cycled to
    fill ``tokens``) and extreme parameters in some lanes when ``corners``."""
    amp = int(amplitude * (1 << cfg.formats.fm.frac))
    x = rng.integers(-amp, amp, size=(tokens, cfg.dim))
    g = rng.integers(-(1 << 15), 1 << 15, size=cfg.dim)
    b = rng.integers(-(1 << 15), 1 << 15, size=cfg.dim)
    if corners:
        c = corner_tokens(cfg, rng)
        k = min(len(c), tokens)
        x[:k] = c[:k]
        g[:4] = [-(1 << 15), (1 << 15) - 1, 0, 1 << cfg.formats.wt_norm.frac]
        b[:4] = [(1 << 15) - 1, -(1 << 15), 0, -1]
    return {"x": x.astype(np.int64), "gain": g.astype(np.int64), "bias": b.astype(np.int64)}


def expected(call: dict, cfg: AcceleratorConfig) -> np.ndarray:
    return layernorm(call["x"], call["gain"], call["bias"], cfg)


# ------------------------------------------------------------------------------- cocotb

async def _idle_check(dut, clk, cycles: int) -> int:
    """Hold o.ready high with no input for ``cycles``; count output beats (must be 0)."""
    dut.x__valid.value = 0
    dut.p__valid.value = 0
    dut.o__ready.value = 1
    extra = 0
    for _ in range(cycles):
        await FallingEdge(clk)
        await ReadOnly()
        extra += int(dut.o__valid.value)
    await FallingEdge(clk)
    dut.o__ready.value = 0
    return extra

@cocotb.test()
async def layernorm_bit_exact(dut):
    """Calls under back-pressure (corners first), then an unthrottled call."""
    from moevit.hw.units.layernorm import layernorm_cycles
    from moevit.sim.tb_attention import run_streams
    from moevit.sim.tb_stream import Port

    p = tb_params()
    cfg = tb_config()
    rng = np.random.default_rng(int(p.get("seed", 1)))
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    tokens = int(p.get("tokens", cfg.tokens))
    calls = int(p.get("calls", 2))
    for port in ('x', 'p'):  # defined inputs before reset (Icarus starts them at X)
        getattr(dut, f"{port}__valid").value = 0
        getattr(dut, f"{port}__payload").value = 0
    dut.o__ready.value = 0
    await start_clock_reset(dut.clk, dut.rst)
    ports = {n: Port.amaranth(dut, n) for n in ("x", "p", "o")}
    fb = cfg.feature_blocks
    mism, outputs, corner_n, lines, extra = 0, 0, 0, [], 0
    z = np.load(p["vectors_npz"]) if p.get("vectors_npz") else None
    bp_cycles = 0
    for k in range(calls + 1):
        rate = k == calls                      # the last call: unthrottled, timed
        if k == 0 and z is not None:
            call = {n: np.asarray(z[n], dtype=np.int64) for n in ("x", "gain", "bias")}
        else:
            call = make_call(cfg, tokens, rng, corners=k == 0)
        if k == 0 and z is None:
            corner_n = min(len(corner_tokens(cfg, rng)), tokens) * cfg.dim
        want = expected(call, cfg)
        n_out = tokens * fb
        slack = 1.0 if rate else max(min(pv, pr), 0.05)
        outs, cycles, fired = await run_streams(
            dut, {ports["x"]: block_beats(call["x"], cfg),
                  ports["p"]: param_beats(call["gain"], call["bias"], cfg)},
            {ports["o"]: n_out}, p_valid=1.0 if rate else pv, p_ready=1.0 if rate else pr,
            rng=rng, max_cycles=int(4 * (n_out + 400) / slack) + 2000)
        got = unpack(outs[ports["o"]], cfg.formats.fm.width, cfg.feature_block)
        got = got.reshape(tokens, cfg.dim)
        bad = np.argwhere(got != want)
        mism += len(bad)
        outputs += want.size
        if len(bad):
            t, d = bad[0]
            lines.append(f"call {k}: {len(bad)} mismatches; first token {t} lane {d}: got "
                         f"{int(got[t, d])}, want {int(want[t, d])}")
        extra += await _idle_check(dut, dut.clk, 4 * cfg.feature_blocks + 200)
        if rate:
            xin, oout = fired[id(ports["x"])], fired[id(ports["o"])]
            span = oout[-1] - xin[0] + 1
            model = layernorm_cycles(cfg, tokens)
            first_out = oout[0] - xin[fb - 1]
            m_rate = dict(cycles=int(span), model_cycles=model["cycles"],
                          ideal_cycles=model["ideal"],
                          items_per_cycle=round(n_out / (oout[-1] - oout[0] + 1), 4),
                          blocks_per_cycle_in=round(n_out / (xin[-1] - xin[0] + 1), 4),
                          latency_cycles=int(first_out), model_latency=model["latency"])
        else:
            bp_cycles += cycles
    m = dict(unit="layernorm", preset=cfg.name, tokens=tokens, dim=cfg.dim, calls=calls + 1,
             vectors=outputs, outputs=outputs, corner_vectors=corner_n,
             random_vectors=outputs - corner_n, mismatches=mism, extra_outputs=extra,
             backpressure_cycles=bp_cycles, p_valid=pv, p_ready=pr,
             mismatch_examples=lines, **m_rate)
    write_metrics(m)
    assert mism == 0, "; ".join(lines)
    assert extra == 0, f"{extra} output beats arrived after the last expected one"
