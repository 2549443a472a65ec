"""cocotb testbench of the patch embedding (:class:`moevit.hw.units.patch_embed.PatchEmbed`).

The testbench plays the sequencer and DRAM (:mod:`moevit.sim.linear_host`): conv weights
[D][C·p·p] and bias as int16 beats, patch rows of uint8 pixels (32 per beat, (c, ky, kx)
order, token = 1 + patch index), pos_embed rows as the ``d`` stream, output rows scattered
at their token id.  Phases (``params["phases"]``):

``model``    three images under random back-pressure on every stream: the seeded network's
             image vs the ``patch_embed`` tap of ``GoldenModel``; an extreme image (pixels
             0 and 255, weights ±2^15, bias ±2^15, pos_embed ±2^31: sums wrap) loaded into
             the pong bank with ``keep``; a third image on those kept weights (no reload),
             each vs :func:`moevit.golden.patch_embed.patch_embed`.
``rate``     one image at full rate with the weights loaded: cycles vs
             :func:`~moevit.hw.units.linear_schedule.pass_cycles`.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from moevit.golden.patch_embed import patch_embed, patches
from moevit.hw.units.linear_schedule import geometry, pass_cycles, patch_in
from moevit.sim.linear_host import Pass, Program
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_linear import _mismatch, _preload, drive
from moevit.sim.tb_stream import start_clock_reset


def image_pass(cfg, pixels, w, b, pos, *, bank=0, keep=False, load=True, tag="img"):
    """One image: the pass, its memory (dst initialised with pos_embed) and the golden rows."""
    T = cfg.tokens
    px = np.zeros((T, cfg.image_channels * cfg.patch_size ** 2), np.int64)
    px[1:] = patches(pixels, cfg)
    mem = {f"{tag}_px": px, f"{tag}_out": np.array(pos, dtype=np.int64)}
    ps = Pass(tag, bank, np.asarray(w).reshape(cfg.dim, -1), np.asarray(b), f"{tag}_px",
              list(range(1, T)), f"{tag}_out", add=True, keep=keep, load=load, cls=True,
              pixel=True)
    want = {f"{tag}_out": patch_embed(pixels, w, b, pos, cfg, reference=True)}
    return ps, mem, want


def extreme_inputs(cfg, rng):
    f = cfg.formats
    C, H, Wd = cfg.image_channels, cfg.image_height, cfg.image_width
    pix = rng.integers(0, 256, size=(C, H, Wd))
    pix[:, :cfg.patch_size, :cfg.patch_size] = 255  # patch 0: all pixels at the maximum
    pix[:, :cfg.patch_size, cfg.patch_size:2 * cfg.patch_size] = 0
    w = rng.integers(f.wt_patch_embed.raw_min, f.wt_patch_embed.raw_max,
                     size=(cfg.dim, C, cfg.patch_size, cfg.patch_size), endpoint=True)
    w[0], w[1] = f.wt_patch_embed.raw_min, f.wt_patch_embed.raw_max
    b = rng.integers(f.wt_bias.raw_min, f.wt_bias.raw_max, size=cfg.dim, endpoint=True)
    b[0], b[1] = f.wt_bias.raw_min, f.wt_bias.raw_max
    pos = rng.integers(-(1 << 31), (1 << 31) - 1, size=(cfg.tokens, cfg.dim), endpoint=True)
    pos[:, 0], pos[:, 1] = (1 << 31) - 1, -(1 << 31)
    return pix, w, b, pos


def model_inputs(cfg, seed):
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    gm = GoldenModel(cfg, seeded_weights(cfg, seed), fast=cfg.tokens > 32)
    pix = gm.pixels(synthetic_image(cfg, seed))[0]
    res = gm.run(pix[None].astype(np.uint8), taps={"patch_embed"})
    w = gm.w
    return pix, w.patch_embed_weights, w.patch_embed_bias, w.pos_embed, res.taps["patch_embed"][0]


@cocotb.test()
async def patch_embed_bit_exact(dut):
    p = tb_params()
    cfg = tb_config()
    seed = int(p.get("seed", 1))
    rng = np.random.default_rng(seed)
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    g = geometry(cfg)
    await start_clock_reset(dut.clk, dut.rst)
    metrics = {"unit": "patch_embed", "preset": cfg.name, "mismatches": 0, "vectors": 0,
               "corner_vectors": 0, "outputs": 0, "phases": {}, "p_valid": pv, "p_ready": pr}
    errors = []
    t_all = time.monotonic()
    for phase in p.get("phases", ["model", "rate"]):
        t0 = time.monotonic()
        if phase == "model":
            pix, w, b, pos, tap = model_inputs(cfg, seed)
            ps1, mem, want = image_pass(cfg, pix, w, b, pos, tag="seeded")
            want_tap = {"seeded_out": tap}
            xp, xw, xb, xpos = extreme_inputs(cfg, rng)
            ps2, m2, w2 = image_pass(cfg, xp, xw, xb, xpos, bank=1, keep=True, tag="extreme")
            pix3 = rng.integers(0, 256, size=pix.shape)
            ps3, m3, w3 = image_pass(cfg, pix3, xw, xb, xpos, bank=1, load=False, tag="kept")
            passes = [ps1, ps2, ps3]
            mem.update(m2)
            mem.update(m3)
            want.update(w2)
            want.update(w3)
        elif phase == "rate":
            pix = rng.integers(0, 256, size=(cfg.image_channels, cfg.image_height,
                                             cfg.image_width))
            f = cfg.formats
            w = rng.integers(f.wt_patch_embed.raw_min, f.wt_patch_embed.raw_max,
                             size=(cfg.dim, cfg.image_channels * cfg.patch_size ** 2))
            b = rng.integers(-(1 << 12), 1 << 12, size=cfg.dim)
            pos = rng.integers(-(1 << 24), 1 << 24, size=(cfg.tokens, cfg.dim))
            ps, mem, want = image_pass(cfg, pix, w, b, pos, tag="rate")
            passes, want_tap = [ps], {}
        else:
            raise ValueError(f"unknown phase {phase!r}")
        if p.get("corrupt"):  # harness self-test: one wrong expectation must fail the run
            first = next(iter(want.values()))
            first[0, 0] ^= 1
        prog = Program(cfg, g, passes, mem)
        t_sim0 = time.monotonic()
        if phase == "rate":
            await _preload(dut, prog)
            prog.wcmd, prog.w, prog.b = [], [], []
            cycles, fired, errs = await drive(dut, prog)
        else:
            cycles, fired, errs = await drive(dut, prog, p_valid=pv, p_ready=pr, rng=rng)
        t_sim = max(time.monotonic() - t_sim0, 1e-9)
        errors += [f"{phase}: {e}" for e in errs]
        mism = 0
        for buf, exp in list(want.items()) + [(k, v) for k, v in want_tap.items()]:
            n, line = _mismatch(f"{buf} ({'golden model tap' if buf in want_tap else 'golden'})",
                                prog.mem.bufs[buf], exp)
            mism += n
            if line:
                errors.append(f"{phase}: {line}")
        n_out = int(sum(v.size for v in want.values()))
        steps = (cfg.tokens - 1) * (patch_in(cfg) // g.tile_in) * (cfg.dim // g.tile_out) \
            * len(passes)
        ph = {"passes": len(passes), "cycles": cycles, "tile_steps": steps, "mismatches": mism,
              "outputs": n_out, "sim_seconds": round(t_sim, 2),
              "golden_seconds": round(t_sim0 - t0, 2), "cycles_per_second": round(cycles / t_sim)}
        if phase == "rate":
            pc = pass_cycles(g, patch_in(cfg), cfg.dim, cfg.tokens - 1, pixel=True)
            c0 = fired["cmd"][0]
            ph.update(pass_cycles=fired["y"][-1] - c0 + 1, model_cycles=pc.cycles,
                      steps_per_cycle=round(steps / (fired["y"][-1] - c0 + 1), 4),
                      latency_cycles=fired["y"][0] - c0)
            metrics.update(cycles=ph["pass_cycles"], ideal_cycles=steps,
                           items_per_cycle=ph["steps_per_cycle"], model_cycles=pc.cycles,
                           latency_cycles=ph["latency_cycles"])
        else:
            metrics["corner_vectors"] += int(w2["extreme_out"].size)
        metrics["phases"][phase] = ph
        metrics["mismatches"] += mism
        metrics["vectors"] += n_out
        metrics["outputs"] += n_out
    metrics["tb_seconds"] = round(time.monotonic() - t_all, 2)
    metrics["errors"] = errors[:20]
    write_metrics(metrics)
    assert not errors, "; ".join(errors[:10])
