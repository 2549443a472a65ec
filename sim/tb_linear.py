"""cocotb testbench of the unified linear engine (:class:`moevit.hw.units.linear.Linear`).

The testbench plays the accelerator's sequencer and DRAM (:mod:`moevit.sim.linear_host`):
it streams weight/bias loads into the ping/pong banks, compute commands, input rows (direct
or gathered by token id) and destination rows (accumulate), and scatters the output rows at
the token id the engine returns.  Phases (``params["phases"]``, default all three):

``model``    passes of the golden model's own layers on a seeded network
             (``GoldenModel``, ``seeded_weights``, ``synthetic_image``): layer 0 Q (attention
             bias format) vs tap ``l0.q``, dense FC1+GELU vs ``l0.hidden``, FC2 vs
             ``l0.mlp_out``; the first MoE layer's experts (gather / scatter /
             score-accumulate from ``route()`` of the ``gate_logits`` tap) vs ``mlp_out``.
``corners``  format extremes and wraps (x = ±2^31, weights ±2^15, biases ±2^15, both bias
             formats) through every mode, and a routing with an expert holding every token,
             an expert with none and tied logits, vs ``linear_ref`` / ``moe_forward``; between
             them two patch-embedding passes in pixel + cls mode on the patch bank (extreme
             pixels / weights / bias / pos_embed; the second reuses the kept bank after
             linear passes ran in ping and pong), vs the golden ``patch_embed``.
``rate``     full-rate FC1 (+GELU) then FC2 with FC2's weights loading during FC1: cycles
             per pass vs :func:`~moevit.hw.units.linear_schedule.pass_cycles`, tile steps
             per cycle.

``model`` and ``corners`` run under random valid/ready back-pressure on every stream
(``p_valid``, ``p_ready``); after each phase the output is held ready for a while and no
further beat may arrive.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from moevit.golden import linear as gl
from moevit.golden.kernels import GeluSpec, gelu
from moevit.golden.moe import moe_forward, route
from moevit.hw.units.linear_schedule import (
    geometry, load_cycles, pass_cycles)
from moevit.sim.linear_host import Pass, Program, expert_passes
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_stream import start_clock_reset

SOURCES = ("wcmd", "w", "b", "cmd", "x", "d")
IDLE_CHECK_CYCLES = 64


class Ports:
    def __init__(self, dut, names):
        self.h = {n: tuple(getattr(dut, f"{n}__{s}") for s in ("valid", "ready", "payload"))
                  for n in names}


async def drive(dut, prog: Program, *, p_valid=1.0, p_ready=1.0, rng=None, max_cycles=None,
                sources=SOURCES):
    """Run ``prog``'s streams to completion; returns (cycles, handshake cycles per port,
    error texts).  Offered items stay valid until taken; lazy items (callables) that return
    None are not offered that cycle."""
    clk = dut.clk
    fall, ro = FallingEdge(clk), ReadOnly()
    ports = Ports(dut, list(sources) + ["y"])
    items = {n: getattr(prog, n) for n in sources}
    srcs = [[n, *ports.h[n], items[n], 0, False] for n in sources if items[n]]
    for n in sources:
        if not items[n]:
            ports.h[n][0].value = 0
    yv, yr, yp = ports.h["y"]
    n_y = len(prog.y_expected)
    if max_cycles is None:
        total = sum(len(s[4]) for s in srcs) + n_y + sum(
            len(ps.rows) * (ps.n_in // prog.g.tile_in) * (ps.n_out // prog.g.tile_out)
            for ps in prog.passes)
        max_cycles = int(4 * total / max(min(p_valid, p_ready), 0.05)) + 5000
    full = p_valid >= 1.0 and p_ready >= 1.0
    coins = None if full else rng.random((max_cycles, len(srcs) + 1))
    fired = {n: [] for n in list(sources) + ["y"]}
    errors = []
    cycle = 0
    y_ready = None
    while any(s[5] < len(s[4]) for s in srcs) or prog.y_done < n_y:
        if cycle >= max_cycles:
            state = ", ".join(f"{s[0]} {s[5]}/{len(s[4])}" for s in srcs)
            raise TimeoutError(f"linear streams stalled after {cycle} cycles: {state}, "
                               f"y {prog.y_done}/{n_y}")
        await fall
        for j, s in enumerate(srcs):
            if s[6]:
                continue
            name, v, r, pl, its, idx, _ = s
            if idx < len(its) and (full or coins[cycle, j] < p_valid):
                it = its[idx]
                if callable(it):
                    it = it()
                if it is not None:
                    pl.value = it
                    v.value = 1
                    s[6] = True
                    continue
            v.value = 0
        rdy = full or coins[cycle, -1] < p_ready
        if rdy is not y_ready:
            yr.value = int(rdy)
            y_ready = rdy
        await ro
        for s in srcs:
            if s[6] and s[2].value:
                fired[s[0]].append(cycle)
                s[5] += 1
                s[6] = False
        if rdy and yv.value:
            err = prog.take_y(int(yp.value))
            fired["y"].append(cycle)
            if err:
                errors.append(err)
        cycle += 1
    await fall
    for s in srcs:
        s[1].value = 0
    yr.value = 1
    extra = 0
    for _ in range(IDLE_CHECK_CYCLES):  # the engine is idle: nothing more may arrive
        await ro
        extra += int(yv.value)
        await fall
    if extra:
        errors.append(f"{extra} extra output beats after the last expected one")
    return cycle, fired, errors


def _mismatch(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    bad = np.argwhere(got != want)
    if len(bad) == 0:
        return 0, None
    i = tuple(bad[0])
    return len(bad), (f"{name}: {len(bad)} of {want.size} differ; first at {i}: got "
                      f"{int(got[i])}, want {int(want[i])}")


def _gelu_fn(cfg):
    spec = GeluSpec.from_config(cfg)
    return lambda v: gelu(v, spec)


# ---------------------------------------------------------------------------- phases
def model_phase(cfg, seed):
    """Passes and golden expectations from the golden model of a seeded network."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    gm = GoldenModel(cfg, seeded_weights(cfg, seed), fast=cfg.tokens > 32)  # no JIT on tiny
    res = gm.run(synthetic_image(cfg, seed), taps=True)
    taps = {k: v[0] for k, v in res.taps.items()}
    w = gm.w
    T = cfg.tokens
    L0 = cfg.dense_layers[0]
    di = cfg.dense_index(L0)
    allrows = list(range(T))
    mem = {"ln1": taps[f"l{L0}.ln1"], "ln2": taps[f"l{L0}.ln2"],
           "q": np.zeros((T, cfg.dim), np.int64), "hidden": np.zeros((T, cfg.mlp_hidden), np.int64),
           "mlp": np.zeros((T, cfg.dim), np.int64)}
    passes = [
        Pass("q", 0, w.attn_weights[L0, 0], w.attn_bias[L0, 0], "ln1", allrows, "q",
             attn_bias=True),
        Pass("fc1", 1, w.vit_weights_l1[di], w.vit_bias_l1[di], "ln2", allrows, "hidden",
             gelu=True),
        Pass("fc2", 0, w.vit_weights_l2[di], w.vit_bias_l2[di], "hidden", allrows, "mlp")]
    checks = [("q", f"l{L0}.q"), ("hidden", f"l{L0}.hidden"), ("mlp", f"l{L0}.mlp_out")]
    if cfg.moe_layers:
        L1 = cfg.moe_layers[0]
        mi = cfg.moe_index(L1)
        rt = route(taps[f"l{L1}.gate_logits"], cfg)
        mem.update({"moe_in": taps[f"l{L1}.ln2"],
                    "moe_hidden": np.zeros((T, cfg.expert_hidden), np.int64),
                    "moe_out": np.zeros((T, cfg.dim), np.int64)})
        passes += expert_passes(rt, w.moe_weights_l1[mi], w.moe_bias_l1[mi],
                                w.moe_weights_l2[mi], w.moe_bias_l2[mi], src="moe_in",
                                hidden="moe_hidden", dst="moe_out")
        checks.append(("moe_out", f"l{L1}.mlp_out"))
    want = {buf: taps[tap] for buf, tap in checks}
    return passes, mem, want


def corner_routing_logits(cfg, rng):
    """Gate logits with expert 0 first for every token, the last expert never chosen, and
    ties for the second place between experts 1 and 2 (lower index wins) on even tokens."""
    T, E = cfg.tokens, cfg.num_experts
    one = 1 << cfg.formats.fm.frac
    lg = rng.integers(-3 * one, 3 * one, size=(T, E))
    lg[:, 0] = 100 * one
    lg[:, E - 1] = -100 * one
    if E > 3:
        lg[::2, 2] = lg[::2, 1] = 50 * one
    return lg


def corner_phase(cfg, rng):
    """Extreme values through every mode, checked against linear_ref / moe_forward."""
    T, D, H, Dh = cfg.tokens, cfg.dim, cfg.mlp_hidden, cfg.expert_hidden
    f = cfg.formats
    lo, hi = -(1 << 31), (1 << 31) - 1
    wlo, whi = f.wt_linear.raw_min, f.wt_linear.raw_max

    def acts(n):
        x = rng.integers(lo, hi, size=(T, n), endpoint=True)
        x[0], x[1] = hi, lo  # format extremes: every product and the sums wrap
        x[2] = rng.integers(-(1 << 24), 1 << 24, size=n)  # moderate values
        x[3] = 0
        return x

    def weights(o, i):
        w = rng.integers(wlo, whi, size=(o, i), endpoint=True)
        w[0], w[1] = wlo, whi
        return w

    def bias(o):
        b = rng.integers(-(1 << 15), (1 << 15) - 1, size=o, endpoint=True)
        b[0], b[1] = -(1 << 15), (1 << 15) - 1
        return b

    x = acts(D)
    allrows = list(range(T))
    gather = [int(t) for t in rng.permutation(T)[:max(1, T // 2)]]
    mem = {"x": x, "a": np.zeros((T, D), np.int64), "h": np.zeros((T, H), np.int64),
           "acc": rng.integers(lo, hi, size=(T, D), endpoint=True)}
    w_a, b_a = weights(D, D), bias(D)
    w_1, b_1 = weights(H, D), bias(H)
    w_2, b_2 = weights(D, H), bias(D)
    sc = rng.integers(lo, hi, size=len(gather), endpoint=True)
    sc[0] = lo
    patch1, patch2, want = patch_cls_passes(cfg, rng, mem)
    # patch2 runs long enough for the next two loads (the first expert's FC1 and FC2) to
    # finish during it: the expert's FC1 then frees ping with the next load waiting, the
    # case where a load starts while the freed bank's last biases are still being read
    passes = [Pass("attn_bias", 0, w_a, b_a, "x", allrows, "a", attn_bias=True), patch1,
              Pass("fc1_gelu_gather", 1, w_1, b_1, "x", gather, "h", gelu=True),
              Pass("fc2_score_acc", 0, w_2, b_2, "h", gather, "acc", score=True, add=True,
                   scores=[int(s) for s in sc]), patch2]
    gf = _gelu_fn(cfg)
    want["a"] = gl.linear_ref(x, w_a, b_a, w_frac=f.wt_linear.frac,
                              bias_frac=f.wt_attn_bias.frac)
    h = np.zeros((T, H), np.int64)
    h[gather] = gl.linear_ref(x[gather], w_1, b_1, w_frac=f.wt_linear.frac,
                              bias_frac=f.wt_bias.frac, gelu=gf)
    want["h"] = h
    y2 = gl.linear_ref(h[gather], w_2, b_2, w_frac=f.wt_linear.frac, bias_frac=f.wt_bias.frac)
    acc = mem["acc"].copy()
    prod = (y2 * sc[:, None]) >> f.fm.frac
    acc[gather] = ((acc[gather] + prod + (1 << 31)) % (1 << 32)) - (1 << 31)
    want["acc"] = acc

    # MoE routing corners through the expert loop, vs the golden moe_forward
    E = cfg.num_experts
    rt = route(corner_routing_logits(cfg, rng), cfg)
    w1 = np.stack([weights(Dh, D) for _ in range(E)])
    b1 = np.stack([bias(Dh) for _ in range(E)])
    w2 = np.stack([weights(D, Dh) for _ in range(E)])
    b2 = np.stack([bias(D) for _ in range(E)])
    xm = acts(D)
    mem.update({"xm": xm, "hm": np.zeros((T, Dh), np.int64), "om": np.zeros((T, D), np.int64)})
    passes += expert_passes(rt, w1, b1, w2, b2, src="xm", hidden="hm", dst="om")
    wf, bf = f.wt_linear.frac, f.wt_bias.frac
    want["om"] = moe_forward(
        xm, rt, lambda e, xx, rows: gl.linear_ref(xx[rows], w1[e], b1[e], w_frac=wf,
                                                  bias_frac=bf, gelu=gf),
        lambda e, hh: gl.linear_ref(hh, w2[e], b2[e], w_frac=wf, bias_frac=bf))
    info = {"experts_with_all_tokens": int(sum(len(q) == T for q in rt.queues)),
            "experts_without_tokens": int(sum(len(q) == 0 for q in rt.queues))}
    return passes, mem, want, info


def patch_cls_passes(cfg, rng, mem):
    """Two patch embeddings on the engine as the accelerator top runs them: pixel mode, the
    patch bank kept, rows 0..T-1 with an all-zero row 0 and ``cls`` (token 0 gets no bias,
    so it is pos_embed[0]); the second image on the kept weights.  Adds the rows to ``mem``;
    returns the passes and the golden ``patch_embed`` rows."""
    from moevit.golden.patch_embed import patch_embed, patches
    from moevit.hw.units.linear_schedule import PATCH_BANK
    from moevit.sim.tb_patch_embed import extreme_inputs
    pix, w, b, pos = extreme_inputs(cfg, rng)
    pix2 = rng.integers(0, 256, size=pix.shape)
    pos2 = rng.integers(-(1 << 31), (1 << 31) - 1, size=pos.shape, endpoint=True)
    rows, want, passes = list(range(cfg.tokens)), {}, []
    for k, (px, ps) in enumerate(((pix, pos), (pix2, pos2))):
        x = np.zeros((cfg.tokens, cfg.image_channels * cfg.patch_size ** 2), np.int64)
        x[1:] = patches(px, cfg)
        mem[f"px{k}"], mem[f"pe{k}"] = x, np.array(ps, dtype=np.int64)
        passes.append(Pass(f"patch_cls{k}", PATCH_BANK, w.reshape(cfg.dim, -1), b, f"px{k}",
                           rows, f"pe{k}", add=True, keep=True, load=k == 0, pixel=True,
                           cls_row=True))
        want[f"pe{k}"] = patch_embed(px, w, b, ps, cfg, reference=True)
    return passes[0], passes[1], want


def rate_phase(cfg, rng, layer="fc1"):
    """Full-rate FC1 (+GELU) over every token, then FC2 whose weights load during FC1."""
    T, D, H = cfg.tokens, cfg.dim, cfg.mlp_hidden
    f = cfg.formats
    amp = 4 << f.fm.frac
    x = rng.integers(-amp, amp, size=(T, D))
    w1 = rng.integers(-(1 << 13), 1 << 13, size=(H, D))
    w2 = rng.integers(-(1 << 13), 1 << 13, size=(D, H))
    b1, b2 = rng.integers(-(1 << 12), 1 << 12, size=H), rng.integers(-(1 << 12), 1 << 12, size=D)
    rows = list(range(T))
    # FC2 reads a separate buffer: its rows do not wait for FC1's last outputs (a data
    # dependency of the layer, not of the engine), so the pass measures the engine alone
    h2 = rng.integers(-amp, amp, size=(T, H))
    passes = [Pass("fc1", 0, w1, b1, "x", rows, "h", gelu=True)]
    if layer == "fc1+fc2":
        passes.append(Pass("fc2", 1, w2, b2, "h2", rows, "y"))
    mem = {"x": x, "h": np.zeros((T, H), np.int64), "h2": h2, "y": np.zeros((T, D), np.int64)}
    gf = _gelu_fn(cfg)
    want = {"h": gl.linear_ref(x, w1, b1, w_frac=f.wt_linear.frac, bias_frac=f.wt_bias.frac,
                               gelu=gf)}
    if layer == "fc1+fc2":
        want["y"] = gl.linear_ref(h2, w2, b2, w_frac=f.wt_linear.frac, bias_frac=f.wt_bias.frac)
    return passes, mem, want


async def _preload(dut, prog, ps_index=0):
    """Load the first pass's weights alone (so the measured pass starts with them loaded)."""
    sub = Program(prog.cfg, prog.g, [prog.passes[ps_index]], {})
    sub.cmd, sub.x, sub.d, sub.y_expected = [], [], [], []
    return await drive(dut, sub, sources=("wcmd", "w", "b"))


def _check(prog, want):
    mism, lines = 0, []
    for buf, exp in want.items():
        n, line = _mismatch(buf, prog.mem.bufs[buf], exp)
        mism += n
        if line:
            lines.append(line)
    return mism, lines


@cocotb.test()
async def linear_bit_exact(dut):
    """Golden-model layers, corners and every mode under back-pressure; full-rate cycles."""
    p = tb_params()
    cfg = tb_config()
    seed = int(p.get("seed", 1))
    rng = np.random.default_rng(seed)
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    phases = p.get("phases", ["model", "corners", "rate"])
    g = geometry(cfg)
    await start_clock_reset(dut.clk, dut.rst)
    metrics = {"unit": "linear", "preset": cfg.name, "tile_in": g.tile_in,
               "tile_out": g.tile_out, "p_valid": pv, "p_ready": pr, "mismatches": 0,
               "vectors": 0, "corner_vectors": 0, "outputs": 0, "phases": {}}
    errors = []
    t_start = time.monotonic()
    for phase in phases:
        t0 = time.monotonic()
        info = {}
        if phase == "model":
            passes, mem, want = model_phase(cfg, seed)
        elif phase == "corners":
            passes, mem, want, info = corner_phase(cfg, rng)
        elif phase == "rate":
            passes, mem, want = rate_phase(cfg, rng, p.get("rate_layer", "fc1+fc2"))
        else:
            raise ValueError(f"unknown phase {phase!r}")
        if p.get("corrupt"):  # harness self-test: one wrong expectation must fail the run
            first = next(iter(want.values()))
            first[0, 0] ^= 1
        prog = Program(cfg, g, passes, mem)
        t_golden = time.monotonic() - t0
        t0 = time.monotonic()
        if phase == "rate":
            await _preload(dut, prog)
            prog.wcmd, prog.w, prog.b = prog.wcmd[1:], prog.w[len(_weights_beats(g, passes[0])):], \
                prog.b[g.bias_beats(passes[0].n_out):]
            cycles, fired, errs = await drive(dut, prog)
        else:
            cycles, fired, errs = await drive(dut, prog, p_valid=pv, p_ready=pr, rng=rng)
        t_sim = max(time.monotonic() - t0, 1e-9)
        errors += [f"{phase}: {e}" for e in errs]
        mism, lines = _check(prog, want)
        errors += [f"{phase}: {ln}" for ln in lines]
        n_out = int(sum(v.size for v in want.values()))
        steps = sum(len(ps.rows) * (ps.n_in // g.tile_in) * (ps.n_out // g.tile_out)
                    for ps in passes)
        ph = {"passes": len(passes), "cycles": cycles, "tile_steps": steps,
              "mismatches": mism, "outputs": n_out, "golden_seconds": round(t_golden, 2),
              "sim_seconds": round(t_sim, 2), "cycles_per_second": round(cycles / t_sim),
              **info}
        if phase == "rate":
            ph.update(_rate_metrics(g, prog, fired))
        metrics["phases"][phase] = ph
        metrics["mismatches"] += mism
        metrics["vectors"] += n_out
        metrics["outputs"] += n_out
        if phase == "corners":
            metrics["corner_vectors"] += n_out
    metrics["tb_seconds"] = round(time.monotonic() - t_start, 2)
    if "rate" in metrics["phases"]:
        r = metrics["phases"]["rate"]
        metrics.update(cycles=r["cycles"], ideal_cycles=r["tile_steps"],
                       items_per_cycle=r["steps_per_cycle"], model_cycles=r["model_cycles"],
                       latency_cycles=r["latency_cycles"])
    metrics["errors"] = errors[:20]
    write_metrics(metrics)
    assert not errors, "; ".join(errors[:10])


def _weights_beats(g, ps):
    return range(g.weight_beats(ps.n_in, ps.n_out))


def _rate_metrics(g, prog, fired):
    """Per pass: measured cycles from its command handshake to its last output beat vs the
    model; the next pass's command handshake follows the previous pass's last step."""
    out = {"pass_cycles": [], "model_pass_cycles": []}
    y_end = {}
    for n, c in enumerate(fired["y"]):
        y_end[prog.pass_of_beat(n)] = c
    first_y = fired["y"][0]
    model = 0
    out["weights_load_hidden"] = []
    for k, ps in enumerate(prog.passes):
        c0 = fired["cmd"][k]
        # pass 0's weights were preloaded; pass k > 0 loads from the k-1'th weight command
        ready = 0 if k == 0 else \
            fired["wcmd"][k - 1] + load_cycles(g, ps.n_in, ps.n_out) - c0
        pc = pass_cycles(g, ps.n_in, ps.n_out, len(ps.rows), gelu=ps.gelu,
                         weights_ready=max(0, ready))
        out["pass_cycles"].append(y_end[k] - c0 + 1)
        out["model_pass_cycles"].append(pc.cycles)
        out["weights_load_hidden"].append(ready <= g.in_beats(ps.n_in) + 1)
        model += pc.issue_cycles if k < len(prog.passes) - 1 else pc.cycles
    steps = sum(len(ps.rows) * (ps.n_in // g.tile_in) * (ps.n_out // g.tile_out)
                for ps in prog.passes)
    span = y_end[len(prog.passes) - 1] - fired["cmd"][0] + 1
    out.update(span_cycles=span, model_cycles=model, steps_per_cycle=round(steps / span, 4),
               cmd_cycles=[c - fired["cmd"][0] for c in fired["cmd"]],
               latency_cycles=first_y - fired["cmd"][0])
    return out
