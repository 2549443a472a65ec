"""cocotb testbench of :class:`moevit.hw.units.residual.Residual` (spec §4.7,
``wrap32(x + y)``) and its vectors.

Phase 1 streams ``tokens`` rows of ``dim`` on ``x`` and ``y`` with random valid/ready
back-pressure on all three streams (corner rows first: format extremes and every wrap),
phase 2 streams the same amount unthrottled and measures cycles against
:func:`moevit.hw.units.residual.residual_cycles`.  After each phase ``o.ready`` is held high
with no input and no further output may arrive.  The expectation is the golden rule of
spec §4.7 (:func:`moevit.golden.fixed.wrap32` of the exact sum), the stage function the golden
model applies at its residual taps.

Parameters (``tb_params()``): ``seed``, ``p_valid``, ``p_ready``, ``tokens`` (default
``cfg.tokens``), ``vectors_npz`` (optional ``x``, ``y`` [T, dim] for phase 1, e.g. model taps).
"""

from __future__ import annotations

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from moevit.config import AcceleratorConfig
from moevit.golden.fixed import wrap32
from moevit.sim.blocks import block_beats, unpack
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_stream import start_clock_reset

FM_MIN, FM_MAX = -(1 << 31), (1 << 31) - 1


def residual_golden(x, y) -> np.ndarray:
    """Spec §4.7: out = wrap32(x + y) element-wise (raw fm_t)."""
    return wrap32(np.asarray(x, dtype=np.int64) + np.asarray(y, dtype=np.int64))


def corner_rows(cfg: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pairs covering the format limits and both wrap directions, one pair per lane."""
    edge = np.array([0, 1, -1, FM_MAX, FM_MIN, FM_MAX - 1, FM_MIN + 1, 1 << 22, -(1 << 22)],
                    dtype=np.int64)
    a, b = np.meshgrid(edge, edge)
    xs, ys = a.reshape(-1), b.reshape(-1)
    n = -(-len(xs) // cfg.dim) * cfg.dim
    xs, ys = np.resize(xs, n), np.resize(ys, n)
    return xs.reshape(-1, cfg.dim), ys.reshape(-1, cfg.dim)


def make_rows(cfg: AcceleratorConfig, tokens: int, rng, corners: bool):
    x = rng.integers(FM_MIN, FM_MAX, size=(tokens, cfg.dim), endpoint=True)
    y = rng.integers(FM_MIN, FM_MAX, size=(tokens, cfg.dim), endpoint=True)
    if corners:
        cx, cy = corner_rows(cfg)
        k = min(len(cx), tokens)
        x[:k], y[:k] = cx[:k], cy[:k]
    return x, y


async def _idle_check(dut, cycles: int) -> int:
    dut.x__valid.value = 0
    dut.y__valid.value = 0
    dut.o__ready.value = 1
    extra = 0
    for _ in range(cycles):
        await FallingEdge(dut.clk)
        await ReadOnly()
        extra += int(dut.o__valid.value)
    await FallingEdge(dut.clk)
    dut.o__ready.value = 0
    return extra


@cocotb.test()
async def residual_bit_exact(dut):
    from moevit.hw.units.residual import residual_cycles
    from moevit.sim.tb_attention import run_streams
    from moevit.sim.tb_stream import Port

    p = tb_params()
    cfg = tb_config()
    rng = np.random.default_rng(int(p.get("seed", 1)))
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    tokens = int(p.get("tokens", cfg.tokens))
    for port in ('x', 'y'):  # defined inputs before reset (Icarus starts them at X)
        getattr(dut, f"{port}__valid").value = 0
        getattr(dut, f"{port}__payload").value = 0
    dut.o__ready.value = 0
    await start_clock_reset(dut.clk, dut.rst)
    ports = {n: Port.amaranth(dut, n) for n in ("x", "y", "o")}
    z = np.load(p["vectors_npz"]) if p.get("vectors_npz") else None
    mism, outputs, extra, lines, m_rate, bp_cycles = 0, 0, 0, [], {}, 0
    corner_n = 0
    for phase in range(2):
        rate = phase == 1
        if phase == 0 and z is not None:
            x, y = (np.asarray(z[n], dtype=np.int64) for n in ("x", "y"))
        else:
            x, y = make_rows(cfg, tokens, rng, corners=phase == 0)
            if phase == 0:
                corner_n = min(len(corner_rows(cfg)[0]), tokens) * cfg.dim
        want = residual_golden(x, y)
        n_out = x.size // cfg.feature_block
        slack = 1.0 if rate else max(min(pv, pr), 0.05)
        outs, cycles, fired = await run_streams(
            dut, {ports["x"]: block_beats(x, cfg), ports["y"]: block_beats(y, cfg)},
            {ports["o"]: n_out}, p_valid=1.0 if rate else pv, p_ready=1.0 if rate else pr,
            rng=rng, max_cycles=int(4 * (n_out + 100) / slack) + 1000)
        got = unpack(outs[ports["o"]], cfg.formats.fm.width, cfg.feature_block).reshape(x.shape)
        bad = np.argwhere(got != want)
        mism += len(bad)
        outputs += want.size
        if len(bad):
            t, d = bad[0]
            lines.append(f"phase {phase}: {len(bad)} mismatches; first row {t} lane {d}: "
                         f"{int(x[t, d])} + {int(y[t, d])} -> got {int(got[t, d])}, "
                         f"want {int(want[t, d])}")
        extra += await _idle_check(dut, 100)
        if rate:
            xin, oout = fired[id(ports["x"])], fired[id(ports["o"])]
            m_rate = dict(cycles=int(oout[-1] - xin[0] + 1),
                          model_cycles=residual_cycles(cfg, n_out), ideal_cycles=n_out,
                          items_per_cycle=round(n_out / (oout[-1] - oout[0] + 1), 4),
                          latency_cycles=int(oout[0] - xin[0]))
        else:
            bp_cycles = cycles
    m = dict(unit="residual", preset=cfg.name, tokens=tokens, dim=cfg.dim, vectors=outputs,
             outputs=outputs, corner_vectors=corner_n, random_vectors=outputs - corner_n,
             mismatches=mism, extra_outputs=extra, backpressure_cycles=bp_cycles,
             p_valid=pv, p_ready=pr, mismatch_examples=lines, **m_rate)
    write_metrics(m)
    assert mism == 0, "; ".join(lines)
    assert extra == 0, f"{extra} output beats arrived after the last expected one"
