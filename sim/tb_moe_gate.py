"""cocotb testbench of the MoE gate (:class:`moevit.hw.units.moe_gate.MoeGate`, spec §4.6).

The testbench plays the host and the linear engine: per layer it streams the gate weights
(``w``) and the LN2 rows (``x``), collects the non-empty-expert list (``meta``), reads every
queue entry back through ``rd_req``/``rd_resp`` (while the next layer's weights already load)
and hands the queues back (``release``).  Expected values come from the golden stage
functions: logits ``linear_ref`` (no bias), then ``moe.route`` (online softmax, strict top-k,
trunc0 division, queues, metaqueue); when the vectors carry golden-model taps (``experts``,
``probs`` of the layer), the DUT's routing is compared with them too.  Every stream gets random
valid/ready back-pressure.  A final layer repeats the first one unthrottled and measures the
cycles from the first x handshake to the release handshake; then the outputs are watched
with ready held high to check that nothing extra arrives.

Parameters (``tb_params()``): ``seed``, ``p_valid``, ``p_ready``, ``vectors_npz`` (arrays
``x{i}`` [T, dim] and ``wg{i}`` [E, dim] raw for layers i = 0..n-1, optional taps
``experts{i}``, ``probs{i}``; default: :func:`moevit.sim.moe_gate_vectors.default_layers`
with ``vectors`` random tokens and ``model_taps``), ``idle_cycles`` (end-of-run watch,
default 200).
"""

from __future__ import annotations

import time

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from moevit.golden.linear import linear_ref
from moevit.golden.moe import route
from moevit.hw.units.moe_gate import gate_model
from moevit.hw.units.moe_gate_geometry import MoeGateGeometry
from moevit.sim.moe_gate_vectors import default_layers, save_layers
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_attention import run_streams
from moevit.sim.tb_stream import Port
from moevit.sim.tb_stream import start_clock_reset

FM_MASK = (1 << 32) - 1


def pack_x(x) -> list[int]:
    """[T, dim] raw fm_t -> beats of 8 words (word j at bits 32j), token order."""
    w = np.asarray(x, dtype=np.int64).reshape(-1, 8) & FM_MASK
    return [sum(int(v) << (32 * j) for j, v in enumerate(row)) for row in w]


def pack_weights(wg, per_beat: int) -> list[int]:
    """[E, dim] raw int16 -> 256-bit beats of ``per_beat`` int16 (spec §7 row-major)."""
    w = np.asarray(wg, dtype=np.int64).reshape(-1, per_beat) & 0xFFFF
    return [sum(int(v) << (16 * j) for j, v in enumerate(row)) for row in w]


def expected(x, wg, cfg):
    """Golden routing of one layer from the stage functions."""
    logits = linear_ref(x, wg, None, w_frac=cfg.formats.wt_linear.frac)
    return route(logits, cfg)


class GateLayout:
    """Bit positions of the meta / request / entry payloads (Amaranth struct order)."""

    def __init__(self, g: MoeGateGeometry):
        self.eb, self.lb, self.tb = g.expert_bits, g.length_bits, g.token_bits

    def meta(self, v: int):
        e = v & ((1 << self.eb) - 1)
        n = (v >> self.eb) & ((1 << self.lb) - 1)
        return e, n, (v >> (self.eb + self.lb)) & 1

    def req(self, e: int, i: int) -> int:
        return e | (i << self.eb)

    def entry(self, v: int):
        t = v & ((1 << self.tb) - 1)
        s = (v >> self.tb) & FM_MASK
        return t, s - (1 << 32) if s >> 31 else s


def compare_layer(rt, meta, entries, taps=None) -> tuple[dict, list[str]]:
    """Mismatch counts of one layer: meta list, queue tokens, queue scores (and taps)."""
    errs = []
    want_meta = [(e, len(rt.queues[e]), int(i == len(rt.metaqueue) - 1))
                 for i, e in enumerate(rt.metaqueue)]
    bad_meta = sum(a != b for a, b in zip(meta, want_meta)) + abs(len(meta) - len(want_meta))
    if bad_meta:
        errs.append(f"meta: got {meta}, want {want_meta}")
    bad_tok = bad_score = 0
    got_q = {}
    for (e, n, _), ent in zip(meta, entries):
        got_q[e] = ent
        wt, wp = rt.queues[e].tolist(), rt.queue_probs[e].tolist()
        for i, (t, s) in enumerate(ent):
            if i >= len(wt):
                bad_tok += 1
                continue
            if t != wt[i]:
                bad_tok += 1
                if len(errs) < 8:
                    errs.append(f"queue {e}[{i}]: token {t}, want {wt[i]}")
            if s != wp[i]:
                bad_score += 1
                if len(errs) < 8:
                    errs.append(f"queue {e}[{i}] (token {t}): score {s}, want {wp[i]} "
                                f"({abs(s - wp[i])} ULP)")
    bad_tap = 0
    if taps is not None:  # golden-model taps: experts/probs per token
        ex, pr = taps
        T, K = ex.shape
        for t in range(T):
            for j in range(K):
                e = int(ex[t, j])
                ent = got_q.get(e, [])
                if not any(tt == t and s == int(pr[t, j]) for tt, s in ent):
                    bad_tap += 1
        if bad_tap:
            errs.append(f"{bad_tap} (token, choice) pairs of the model taps not in the queues")
    return dict(mismatches_meta=bad_meta, mismatches_tokens=bad_tok,
                mismatches_scores=bad_score, mismatches_taps=bad_tap), errs


async def watch_idle(dut, ports, cycles: int) -> int:
    """Hold every sink ready for ``cycles`` cycles; count valid beats that appear."""
    extra = 0
    for p in ports:
        p.ready.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
        await ReadOnly()
        extra += sum(int(p.valid.value) for p in ports)
    await FallingEdge(dut.clk)
    for p in ports:
        p.ready.value = 0
    return extra


@cocotb.test()
async def moe_gate_bit_exact(dut):
    """Layers under random back-pressure, bit-exact; one unthrottled layer for cycles."""
    p = tb_params()
    cfg = tb_config()
    g = MoeGateGeometry.from_config(cfg)
    lay = GateLayout(g)
    seed = int(p.get("seed", 1))
    rng = np.random.default_rng(seed)
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    if p.get("vectors_npz"):
        z = np.load(p["vectors_npz"])
    else:  # moevit sim moe_gate: model layer, corner layers, vectors // T random layers
        save_layers(default_layers(cfg, seed, int(p.get("vectors", 0)),
                                   with_model=bool(p.get("model_taps", True))),
                    "moe_gate_vectors.npz")
        z = np.load("moe_gate_vectors.npz")
    names = [str(n) for n in z["names"]] if "names" in z.files else []
    n_layers = len([k for k in z.files if k.startswith("x")])
    xs = [np.asarray(z[f"x{i}"], dtype=np.int64) for i in range(n_layers)]
    wgs = [np.asarray(z[f"wg{i}"], dtype=np.int64) for i in range(n_layers)]
    taps = [(np.asarray(z[f"experts{i}"]), np.asarray(z[f"probs{i}"]))
            if f"experts{i}" in z.files else None for i in range(n_layers)]
    for p_ in ("x", "w", "rd_req", "release"):     # drive inputs only (Icarus keeps a
        getattr(dut, f"{p_}__valid").value = 0     # value written to an output net)
    for p_ in ("meta", "rd_resp"):
        getattr(dut, f"{p_}__ready").value = 0
    await start_clock_reset(dut.clk, dut.rst)
    P = {n: Port.amaranth(dut, n) for n in ("x", "w", "meta", "rd_req", "rd_resp", "release")}
    slack = max(min(pv, pr), 0.05)
    t0 = time.monotonic()
    totals = dict(mismatches_meta=0, mismatches_tokens=0, mismatches_scores=0,
                  mismatches_taps=0)
    errors, overflow_seen = [], []
    beats = [pack_weights(w, g.weights_per_beat) for w in wgs]
    sim_cycles = 0
    # weights of layer 0; later layers' weights load while the previous queues are read
    _, c, _ = await run_streams(dut, {P["w"]: beats[0]}, {}, p_valid=pv, p_ready=pr, rng=rng,
                                max_cycles=int(4 * len(beats[0]) / slack) + 200)
    sim_cycles += c
    for li in range(n_layers):
        rt = expected(xs[li], wgs[li], cfg)
        n_meta = len(rt.metaqueue)
        budget = int(4 * (g.ideal_cycles + 4 * g.groups * g.experts * g.slots) / slack) + 2000
        outs, c, _ = await run_streams(dut, {P["x"]: pack_x(xs[li])}, {P["meta"]: n_meta},
                                       p_valid=pv, p_ready=pr, rng=rng, max_cycles=budget)
        sim_cycles += c
        meta = [lay.meta(v) for v in outs[P["meta"]]]
        reqs = [lay.req(e, i) for e, n, _ in meta for i in range(n)]
        nxt = {P["w"]: beats[li + 1]} if li + 1 < n_layers else {}
        if li + 1 == n_layers:   # the measured rerun of layer 0 needs its weights again
            nxt = {P["w"]: beats[0]}
        outs, c, _ = await run_streams(dut, {P["rd_req"]: reqs, **nxt}, {P["rd_resp"]: len(reqs)},
                                       p_valid=pv, p_ready=pr, rng=rng,
                                       max_cycles=int(4 * (len(reqs) + 300) / slack) + 500)
        sim_cycles += c
        got = [lay.entry(v) for v in outs[P["rd_resp"]]]
        entries, k = [], 0
        for _, n, _ in meta:
            entries.append(got[k:k + n])
            k += n
        overflow_seen.append(int(dut.overflow.value))
        if overflow_seen[-1] != int(any(len(q) > g.tokens for q in rt.queues)):
            errors.append(f"layer {li}: overflow flag {overflow_seen[-1]}, queue lengths "
                          f"{[len(q) for q in rt.queues]}")
        _, c, _ = await run_streams(dut, {P["release"]: [0]}, {}, p_valid=pv, p_ready=pr,
                                    rng=rng, max_cycles=1000)
        sim_cycles += c
        mm, errs = compare_layer(rt, meta, entries, taps[li])
        for key in totals:
            totals[key] += mm[key]
        errors += [f"layer {li} ({names[li] if names else li}): {e}" for e in errs]

    # ---- unthrottled rerun of layer 0 (weights loaded above): cycles to the release
    rt = expected(xs[0], wgs[0], cfg)
    outs, c, fired = await run_streams(
        dut, {P["x"]: pack_x(xs[0]), P["release"]: [0]}, {P["meta"]: len(rt.metaqueue)},
        p_valid=1.0, p_ready=1.0, rng=rng, max_cycles=4 * g.ideal_cycles + 5000)
    sim_cycles += c
    x_fire = fired[id(P["x"])]
    cycles = fired[id(P["release"])][0] - x_fire[0] + 1
    meta = [lay.meta(v) for v in outs[P["meta"]]]
    mm, errs = compare_layer(rt, meta, [[]] * len(meta))
    totals["mismatches_meta"] += mm["mismatches_meta"]
    errors += [f"rerun: {e}" for e in errs if e.startswith("meta")]
    extra = await watch_idle(dut, [P["meta"], P["rd_resp"]], int(p.get("idle_cycles", 200)))
    model = gate_model(cfg, nonempty=len(rt.metaqueue))
    wall = time.monotonic() - t0
    outputs = sum(len(q) for q in rt.queues)
    corner = sum(not n.startswith(("random", "golden")) for n in names)
    metrics = dict(
        preset=cfg.name, tokens=g.tokens, experts=g.experts, top_k=g.top_k, dim=g.dim,
        slots=g.slots, layers=n_layers, layer_names=names, p_valid=pv, p_ready=pr, **totals,
        mismatches=sum(totals.values()), extra_outputs=extra,
        overflow_flags=overflow_seen,
        vectors=n_layers * g.tokens, corner_vectors=corner * g.tokens,
        random_vectors=sum(n.startswith("random") for n in names) * g.tokens,
        outputs=outputs,
        cycles=int(cycles), model_cycles=model["cycles"], ideal_cycles=g.ideal_cycles,
        latency_cycles=int(fired[id(P["release"])][0] - x_fire[-1]),
        latency_max_cycles=int(fired[id(P["release"])][0] - x_fire[-1]),
        model=model, input_span_cycles=int(x_fire[-1] - x_fire[0] + 1),
        items_per_cycle=round(len(x_fire) / (x_fire[-1] - x_fire[0] + 1), 4),
        blocks_per_cycle_overall=round(g.ideal_cycles / cycles, 4),
        sim_cycles=sim_cycles, tb_seconds=round(wall, 2),
        sim_cycles_per_second=round(sim_cycles / max(wall, 1e-9), 1),
        mismatch_examples=errors[:20])
    write_metrics(metrics)
    assert not errors and extra == 0, "; ".join(errors) + f"; {extra} extra output beats"
