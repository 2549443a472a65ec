"""cocotb testbench of the attention unit (Amaranth :class:`moevit.hw.units.attention.Attention`,
or HLS-exported Verilog of ``hw/hls/attention.cpp`` with ``params["style"] == "hls"``).

The testbench plays the host memory: it streams Q/K blocks in the staggered schedule order,
collects the score buffer and softmax-info rows, streams them back with V for the softmax·V
phase, and compares everything bit for bit with :mod:`moevit.golden.attention` configured
with the same P.  Every stream gets random valid/ready back-pressure (``p_valid``,
``p_ready``).  Metrics: mismatches per stage, cycles per phase, handshakes per cycle.

Parameters (``tb_params()``): ``seed``, ``p_valid``, ``p_ready``, ``vectors_npz`` (file with
raw ``q``, ``k``, ``v`` [T, D] and optionally the golden taps ``score_buffer``,
``softmax_info``, ``av`` to compare with; random Q/K/V in ±``amplitude`` otherwise),
``style`` (``amaranth`` or ``hls``), ``dump_npz`` (write what the DUT produced),
``record_q_cycles`` (report the cycle of every q and k handshake, relative to the first k
one),
``layers`` (run that many layers back to back without reset; the first from ``vectors_npz``),
``idle_cycles`` (after each phase every output stream is held ready that long: any beat
that still arrives is an *extra output* and fails the test),
``overlap`` (random layers, the Q·Kᵀ streams of layer n+1 fed together with the softmax·V
streams of layer n: both phases compete for the shared multiplier array).

Besides the mismatches, the metrics hold what was observed on the ports: ``extra_outputs``
and ``q_off_schedule`` (q beats taken other than with the k beat of a q-loading step).
"""

from __future__ import annotations

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from moevit.golden import attention as ga
from moevit.hw.units.attention_schedule import geometry, qk_steps
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_stream import (IDLE_CYCLES, Port, StreamSink, StreamSource, drive_streams,
                                  expect_idle, extra_output_message, start_clock_reset)

FM_MASK = (1 << 32) - 1


#: Amaranth port -> HLS axis port base name
HLS_PORTS = {"q": "q", "k": "k", "s_out": "scores_out", "i_out": "info_out", "v": "v",
             "s_in": "scores_in", "i_in": "info_in", "o": "out"}


def pack_words(words) -> list[int]:
    """int words (any length, multiple of 8) -> 256-bit beats, word j at bits 32j."""
    w = np.asarray(words, dtype=np.int64).reshape(-1, 8) & FM_MASK
    return [sum(int(x) << (32 * j) for j, x in enumerate(row)) for row in w]


def unpack_beats(beats) -> np.ndarray:
    out = np.array([[(b >> (32 * j)) & FM_MASK for j in range(8)] for b in beats], dtype=np.int64)
    return np.where(out >= 1 << 31, out - (1 << 32), out).reshape(-1)


def input_streams(q, k, v, cfg):
    """Beats of the q, k and v streams in schedule order."""
    fb = cfg.feature_block
    qs, ks, vs = [], [], []
    for st in qk_steps(cfg):
        sl = slice(st.db * fb, (st.db + 1) * fb)
        ks.append(k[st.k_row, sl])
        vs.append(v[st.k_row, sl])
        if st.q_row is not None:
            qs.append(q[st.q_row, sl])
    return pack_words(np.array(qs)), pack_words(np.array(ks)), pack_words(np.array(vs))


def port(dut, name, style) -> Port:
    """The stream port ``name`` (Amaranth name) of the DUT, in either style."""
    if style == "hls":
        base = HLS_PORTS[name]
        return Port(*(getattr(dut, f"{base}_T{s}") for s in ("VALID", "READY", "DATA")),
                    name=name)
    return Port.amaranth(dut, name)


#: output ports (checked for extra beats after each phase)
OUTPUT_PORTS = ("s_out", "i_out", "o")


async def run_streams(dut, sources, sinks, *, p_valid, p_ready, rng, max_cycles):
    """Drive ``sources`` {Port: beats} and drain ``sinks`` {Port: n_expected} with random
    back-pressure (:mod:`moevit.sim.tb_stream` parts); returns ({Port: beats}, cycles,
    {id(Port): handshake cycles})."""
    clk = dut.clk if hasattr(dut, "clk") else dut.ap_clk
    src = {p: StreamSource(p, items, p_valid, rng) for p, items in sources.items()}
    snk = {p: StreamSink(p, n, p_ready, rng) for p, n in sinks.items()}
    cycles = await drive_streams(clk, list(src.values()) + list(snk.values()),
                                 max_cycles=max_cycles, what="attention streams")
    fired = {id(p): s.cycles for p, s in list(src.items()) + list(snk.items())}
    return {p: s.items for p, s in snk.items()}, cycles, fired


def q_off_schedule(q_cycles, k_cycles, cfg) -> int:
    """q beats the DUT took other than together with the k beat of a step that loads a q
    block (spec §4.5.2: one q and one k block per step at most, q only at k == lane)."""
    k_at = {c: i for i, c in enumerate(k_cycles)}
    loads = [st.q_row is not None for st in qk_steps(cfg)]
    return sum(1 for c in q_cycles if c not in k_at or not loads[k_at[c]])


#: input ports (driven idle from the start: both phases' ports reach the shared multiplier
#: array's arbiter, so an undriven phase would read X in 4-state simulators)
INPUT_PORTS = ("q", "k", "v", "s_in", "i_in")


async def start(dut, style):
    for name in INPUT_PORTS:
        port(dut, name, style).valid.value = 0
    for name in OUTPUT_PORTS:
        port(dut, name, style).ready.value = 0
    if style == "hls":
        dut.ap_start.value = 0
        await start_clock_reset(dut.ap_clk, dut.ap_rst_n, active=0)
    else:
        await start_clock_reset(dut.clk, dut.rst)


async def hls_start(dut, mode):
    """ap_ctrl_hs: present ``mode`` and hold ap_start until ap_ready."""
    dut.mode.value = mode
    dut.ap_start.value = 1
    while True:
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        if dut.ap_ready.value:
            break
    await FallingEdge(dut.ap_clk)
    dut.ap_start.value = 0


def _out_latency(cfg, v_cycles, out_cycles) -> int:
    """Min cycles from the V handshake of a step to the handshake of the output beat that
    step produces (output beats leave at each lane's last key, see attention_schedule)."""
    g = geometry(cfg)
    out_steps = []
    for i, st in enumerate(qk_steps(cfg)):
        for o in range(g.lanes):
            if st.k == g.last_key(o) and g.valid(st.b, st.k, o):
                out_steps.append(i)
    return int(min(oc - v_cycles[i] for oc, i in zip(out_cycles, out_steps)))


def mismatch_report(name, got, want, mask=None) -> tuple[int, str]:
    got, want = np.asarray(got), np.asarray(want)
    if mask is None:
        mask = np.ones(want.shape, dtype=bool)
    bad = np.argwhere((got != want) & mask)
    if len(bad) == 0:
        return 0, ""
    i = tuple(bad[0])
    return len(bad), (f"{name}: {len(bad)} mismatches; first at {i}: got {int(got[i])}, "
                      f"want {int(want[i])} ({abs(int(got[i]) - int(want[i]))} ULP)")


@cocotb.test()
async def attention_bit_exact(dut):
    """Both phases under random back-pressure, bit-exact against the golden model."""
    p = tb_params()
    cfg = tb_config()
    style = p.get("style", "amaranth")
    rng = np.random.default_rng(p.get("seed", 1))
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    await start(dut, style)
    P_ = {n: port(dut, n, style) for n in HLS_PORTS}
    layers = int(p.get("layers", 1))
    totals = dict(mismatches_scores=0, mismatches_junk=0, mismatches_info=0, mismatches_av=0,
                  mismatches=0, vectors=0, extra_outputs=0, q_off_schedule=0)
    errors = []
    if p.get("overlap"):
        metrics, errors = await _overlapped_layers(dut, cfg, P_, rng, pv, pr, layers,
                                                   int(p.get("idle_cycles", IDLE_CYCLES)))
        metrics.update(layers=layers)
        write_metrics(metrics)
        assert not errors, "; ".join(errors)
        return
    for layer in range(layers):  # back to back, no reset in between
        metrics, checks = await _one_layer(dut, p, cfg, style, P_, rng, pv, pr,
                                           use_file=layer == 0)
        for key in totals:
            totals[key] += metrics[key]
        errors += [f"layer {layer}: {msg}" for n, msg in checks if n]
    metrics.update(totals, outputs=totals["vectors"], layers=layers)
    write_metrics(metrics)
    assert not errors, "; ".join(errors)


async def _overlapped_layers(dut, cfg, P_, rng, pv, pr, layers, idle):
    """Random layers with the Q·Kᵀ streams of layer n+1 fed while softmax·V of layer n
    runs (both phases want the shared multiplier array at once): every layer's score
    buffer, softmax info and output bit-exact, no extra output."""
    g = geometry(cfg)
    T, D = cfg.tokens, cfg.dim
    amp = 2 << 22
    data = [tuple(rng.integers(-amp, amp, size=(T, D)) for _ in range(3)) for _ in range(layers)]
    streams = [input_streams(q, k, v, cfg) for q, k, v in data]
    max_cyc = int(4 * (g.steps + g.score_beats + T) / max(min(pv, pr), 0.05)) + 2000
    errors, extra, mism = [], [], 0
    got_av, pending = {}, None  # pending: (layer, score beats, info beats) awaiting softmax·V
    for n in range(layers + 1):
        sources, sinks = {}, {}
        if n < layers:
            sources |= {P_["q"]: streams[n][0], P_["k"]: streams[n][1]}
            sinks |= {P_["s_out"]: g.score_beats, P_["i_out"]: T}
        if pending:
            sources |= {P_["v"]: streams[pending[0]][2], P_["s_in"]: pending[1],
                        P_["i_in"]: pending[2]}
            sinks |= {P_["o"]: T * cfg.feature_blocks}
        outs, _, _ = await run_streams(dut, sources, sinks, p_valid=pv, p_ready=pr, rng=rng,
                                       max_cycles=max_cyc)
        extra += await expect_idle(dut.clk, [P_[x] for x in OUTPUT_PORTS], idle)
        if pending:
            got_av[pending[0]] = unpack_beats(outs[P_["o"]]).reshape(T, D)
        pending = (n, outs[P_["s_out"]], outs[P_["i_out"]]) if n < layers else None
        if n < layers:
            want_sb, want_info, _ = ga.attention_buffers(*data[n], cfg)
            got_sb = unpack_beats(pending[1])[:g.score_words].reshape(want_sb.shape)
            got_info = unpack_beats(pending[2]).reshape(want_info.shape)
            checks = [mismatch_report("score buffer", got_sb, want_sb),
                      mismatch_report("softmax info", got_info, want_info)]
            errors += [f"layer {n}: {msg}" for k, msg in checks if k]
            mism += sum(k for k, _ in checks)
    for n, av in got_av.items():
        k, msg = mismatch_report("softmax·V", av, ga.attention_buffers(*data[n], cfg)[2])
        mism += k
        if k:
            errors.append(f"layer {n}: {msg}")
    if extra:
        errors.append(extra_output_message(extra))
    return dict(style="amaranth", preset=cfg.name, P=g.lanes, overlap=True, mismatches=mism,
                extra_outputs=len(extra), layers_checked=len(got_av)), errors


async def _one_layer(dut, p, cfg, style, P_, rng, pv, pr, use_file):
    g = geometry(cfg)
    T, D = cfg.tokens, cfg.dim
    z = np.load(p["vectors_npz"]) if use_file and p.get("vectors_npz") else None
    if z is not None:
        q, k, v = (np.asarray(z[n], dtype=np.int64) for n in ("q", "k", "v"))
    else:
        amp = int(p.get("amplitude", 2.0) * (1 << 22))
        q, k, v = (rng.integers(-amp, amp, size=(T, D)) for _ in range(3))
    if z is not None and "av" in z:  # golden-model taps of the same layer
        want_sb, want_info, want_av = (np.asarray(z[n], dtype=np.int64)
                                       for n in ("score_buffer", "softmax_info", "av"))
    else:
        want_sb, want_info, want_av = ga.attention_buffers(q, k, v, cfg)

    qs, ks, vs = input_streams(q, k, v, cfg)
    slack = max(min(pv, pr), 0.05)
    max_cyc = int(2 * (g.steps + g.score_beats + T) / slack) + 2000
    if style == "hls":
        cocotb.start_soon(hls_start(dut, 0))
    outs, qk_cycles, fired_qk = await run_streams(
        dut, {P_["q"]: qs, P_["k"]: ks}, {P_["s_out"]: g.score_beats, P_["i_out"]: T},
        p_valid=pv, p_ready=pr, rng=rng, max_cycles=max_cyc)
    idle = int(p.get("idle_cycles", IDLE_CYCLES))
    clk = dut.clk if style != "hls" else dut.ap_clk
    extra = await expect_idle(clk, [P_[n] for n in OUTPUT_PORTS], idle)
    s_beats, i_beats = outs[P_["s_out"]], outs[P_["i_out"]]
    got_sb = unpack_beats(s_beats)[:g.score_words].reshape(want_sb.shape)
    got_info = unpack_beats(i_beats).reshape(want_info.shape)
    if style == "hls":
        await RisingEdge(dut.ap_clk)
        cocotb.start_soon(hls_start(dut, 1))
    outs, av_cycles, fired_av = await run_streams(
        dut, {P_["v"]: vs, P_["s_in"]: s_beats, P_["i_in"]: i_beats},
        {P_["o"]: T * cfg.feature_blocks}, p_valid=pv, p_ready=pr, rng=rng, max_cycles=max_cyc)
    got_av = unpack_beats(outs[P_["o"]]).reshape(T, D)
    extra += await expect_idle(clk, [P_[n] for n in OUTPUT_PORTS], idle)

    valid = ga.score_buffer_valid(cfg)
    checks = [mismatch_report("score buffer (valid entries)", got_sb, want_sb, valid),
              mismatch_report("score buffer (junk slots zeroed)", got_sb, want_sb, ~valid),
              mismatch_report("softmax info", got_info, want_info),
              mismatch_report("softmax·V", got_av, want_av),
              (len(extra), extra_output_message(extra) if extra else "")]
    q_off = q_off_schedule(fired_qk[id(P_["q"])], fired_qk[id(P_["k"])], cfg)
    if style != "hls":  # HLS-scheduled Verilog may take q ahead of k
        checks.append((q_off, f"{q_off} q beats taken off the schedule (not with the k "
                              f"beat of a q-loading step)"))
    k_span = fired_qk[id(P_["k"])][-1] - fired_qk[id(P_["k"])][0] + 1
    q_cycles_rel = (np.asarray(fired_qk[id(P_["q"])]) - fired_qk[id(P_["k"])][0]).tolist()
    metrics = dict(
        style=style, preset=cfg.name, P=g.lanes, tokens=T, dim=D, heads=cfg.heads,
        p_valid=pv, p_ready=pr,
        vectors=int(want_sb[valid].size + want_info.size + want_av.size), corner_vectors=0,
        outputs=int(want_sb[valid].size + want_info.size + want_av.size),
        mismatches_scores=checks[0][0], mismatches_junk=checks[1][0],
        mismatches_info=checks[2][0], mismatches_av=checks[3][0],
        mismatches=checks[0][0] + checks[2][0] + checks[3][0],
        qk_cycles=qk_cycles, av_cycles=av_cycles, layer_cycles=qk_cycles + av_cycles,
        steps_per_phase=g.steps, k_span_cycles=int(k_span),
        q_off_schedule=q_off, extra_outputs=len(extra),
        q_beats=len(fired_qk[id(P_["q"])]), k_beats=len(fired_qk[id(P_["k"])]),
        q_handshake_cycles=q_cycles_rel if p.get("record_q_cycles") else None,
        k_handshake_cycles=((np.asarray(fired_qk[id(P_["k"])]) - fired_qk[id(P_["k"])][0])
                            .tolist() if p.get("record_q_cycles") else None),
        latency_cycles=_out_latency(cfg, fired_av[id(P_["v"])], fired_av[id(P_["o"])]),
        overhead_cycles=int(qk_cycles + av_cycles - 2 * g.steps),
        items_per_cycle=round(2 * g.steps / (qk_cycles + av_cycles), 4))
    if p.get("dump_npz") and use_file:
        np.savez(p["dump_npz"], score_buffer=got_sb, softmax_info=got_info, av=got_av)
    return metrics, checks

