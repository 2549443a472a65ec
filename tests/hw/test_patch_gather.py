"""Patch gather (im2col, :mod:`moevit.hw.units.patch_gather`) in Amaranth's simulator.

The input stream is built here the way the top's AXI reader fetches the DRAM image (spec §7,
uint8 [C][H][W]): per strip ``py``, per channel ``c``, the ``p`` image rows of the strip as
little-endian beats.  Checked: the rows of :func:`moevit.golden.patch_embed.patches` (with
the leading zero row); a coordinate image whose pixels name their own (c, y, x), decoded
beat by beat from the output position alone; random, bursty and long-stall back-pressure on
both streams; nothing more out after the last row; geometries with 1, 2 and 4 banks and
2 beats per patch row; the cycle model at full rate; configuration errors; and the rows fed
to the patch embedding (:class:`PatchEmbed`) end to end against the golden model.
"""

import numpy as np
import pytest
from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden.patch_embed import patch_embed, patches
from moevit.hw.units.patch_gather import (READ_LATENCY, PatchGather, gather_geometry,
                                          patch_gather_cycles)
from moevit.sim.tb_stream import (Bursts, LongStalls, SimSink, SimSource, sim_drive_streams,
                                  sim_expect_idle)

TINY = preset("tiny")
#: geometry variants: 4 banks (p = 8), 1 bank (p = 32 = pixels per beat), 2 beats per patch
#: row (p = 64), one channel, one beat per image row, a one-patch image (one strip per image,
#: the zero row as long as the strip)
VARIANTS = {"p8": TINY.replace(patch_size=8), "p32": TINY.replace(patch_size=32),
            "p64": preset("edge-moe").replace(patch_size=64),
            "mono": TINY.replace(image_channels=1), "narrow": TINY.replace(image_width=32),
            "one_patch": TINY.replace(patch_size=32, image_width=32)}


def _beats(values, pixels_per_beat: int) -> list[int]:
    """uint8 values (flat, in stream order) -> little-endian beats (pixel j at bits 8j)."""
    flat = np.asarray(values, dtype=np.uint8).reshape(-1, pixels_per_beat)
    return [int.from_bytes(row.tobytes(), "little") for row in flat]


def dram_strip_beats(img, cfg) -> list[int]:
    """What the AXI reader delivers: per strip, per channel, p contiguous image rows."""
    p, B = cfg.patch_size, cfg.axi_width // 8
    out = []
    for py in range(cfg.image_height // p):
        for c in range(cfg.image_channels):
            out += _beats(img[c, py * p:(py + 1) * p, :], B)
    return out


def expected_rows(img, cfg, zero_row=True) -> list[int]:
    """Zero row, then the golden patches() rows, as beats."""
    rows = patches(img, cfg)
    if zero_row:
        rows = np.vstack([np.zeros((1, rows.shape[1]), rows.dtype), rows])
    return _beats(rows.reshape(-1), cfg.axi_width // 8)


def run_gather(comp, inputs, n_out, *, p_in=1.0, p_out=1.0, seed=0, lead_in=0, idle=None):
    """Drive ``pix``/``rows``; returns (rows beats, extra beats after the run, input
    handshake cycles, output handshake cycles, rows beats during a lead-in with no input)."""
    rng = np.random.default_rng(seed)
    src = SimSource(comp.pix, inputs, p_in, rng)
    snk = SimSink(comp.rows, n_out, p_out, rng)
    extra, early = [], []
    idle = idle if idle is not None else 2 * comp.geom.strip_beats + 50

    async def bench(ctx):
        if lead_in:
            early.extend(await sim_expect_idle(ctx, [comp.rows], lead_in))
        await sim_drive_streams(ctx, [src, snk], max_cycles=60 * (len(inputs) + n_out) + 2000,
                                what="patch gather")
        extra.extend(await sim_expect_idle(ctx, [comp.rows], idle))

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(src.cycles) == len(inputs), "not every input beat was taken"
    return snk.items, extra, src.cycles, snk.cycles, early


def _first_mismatch(got, want, cfg) -> str:
    bad = [k for k in range(min(len(got), len(want))) if got[k] != want[k]]
    if not bad and len(got) == len(want):
        return ""
    k = bad[0] if bad else min(len(got), len(want))
    rb = gather_geometry(cfg).patch_beats
    return f"{len(bad)} of {len(want)} beats differ; first at beat {k} (row {k // rb}, " \
           f"beat {k % rb} of the row)"


def _check(got, extra, want, cfg):
    msg = _first_mismatch(got, want, cfg)
    assert not msg, msg
    assert not extra, f"{len(extra)} extra rows beat(s) after the last expected one " \
                      f"(first {extra[0][0]} cycles after)"


def random_image(cfg, seed):
    return np.random.default_rng(seed).integers(
        0, 256, size=(cfg.image_channels, cfg.image_height, cfg.image_width))


# ------------------------------------------------------------------ bit-exact, back-pressure
@pytest.mark.parametrize("name,images", [("tiny", 3), ("edge-moe", 2), ("zcu104", 1)])
def test_rows_match_golden_patches_under_random_backpressure(name, images):
    """Images back to back (each reuses both halves) under Bernoulli valid/ready on both
    streams; no rows before the first pixel beat, nothing after the last row."""
    cfg = preset(name)
    imgs = [random_image(cfg, 1 + k) for k in range(images)]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    want = sum((expected_rows(im, cfg) for im in imgs), [])
    got, extra, _, _, early = run_gather(PatchGather(cfg), inputs, len(want),
                                         p_in=0.7, p_out=0.6, seed=3, lead_in=30)
    assert not early, "rows left before any pixel beat arrived"
    _check(got, extra, want, cfg)


@pytest.mark.parametrize("pattern", ["bursts", "stalls"])
def test_bursts_and_long_ready_stalls(pattern):
    """Bursty traffic, or ready/valid held low for longer than a strip (both halves full,
    the reader frozen with a beat in each stage): still exact, nothing extra."""
    cfg = TINY
    g = gather_geometry(cfg)
    pi, po = ((Bursts(20, 8), Bursts(12, 12)) if pattern == "bursts" else
              (LongStalls(0.9, every=150, length=2 * g.strip_beats),
               LongStalls(0.9, every=120, length=2 * g.strip_beats + 7)))
    imgs = [random_image(cfg, s) for s in (4, 5, 6)]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    want = sum((expected_rows(im, cfg) for im in imgs), [])
    got, extra, *_ = run_gather(PatchGather(cfg), inputs, len(want), p_in=pi, p_out=po, seed=7)
    _check(got, extra, want, cfg)


def _coordinate_images(cfg):
    """Three images whose pixels hold their own c, y and x (each fits in 8 bits)."""
    C, H, W = cfg.image_channels, cfg.image_height, cfg.image_width
    assert max(C, H, W) <= 256
    c, y, x = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    return {"c": c, "y": y, "x": x}


@pytest.mark.parametrize("name", ["tiny", "edge-moe"])
def test_every_pixel_lands_where_the_engine_expects_it(name):
    """Independent of patches(): decode each output pixel's expected (c, y, x) from its
    position alone (token t, beat k, lane j -> i = k·B + j in the row; c = i // p², ky, kx;
    patch (py, px) = divmod(t - 1, W/p)) and compare with the coordinate images; the zero
    row is all zero."""
    cfg = preset(name)
    g = gather_geometry(cfg)
    p, B, Gw = cfg.patch_size, g.beat_pixels, g.grid_w
    coords = _coordinate_images(cfg)
    imgs = [coords[k] for k in "cyx"]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    n_rows = cfg.num_patches + 1
    got, extra, *_ = run_gather(PatchGather(cfg), inputs, 3 * n_rows * g.patch_beats,
                                p_in=0.8, p_out=0.7, seed=11)
    assert not extra
    lanes = np.array([[(w >> (8 * j)) & 0xFF for j in range(B)] for w in got])
    lanes = lanes.reshape(3, n_rows, g.patch_beats * B)  # [coordinate image, token, i]
    i = np.arange(g.patch_beats * B)
    c, ky, kx = i // (p * p), (i // p) % p, i % p
    assert not lanes[:, 0].any(), "the zero (cls) row is not all zero"
    for t in range(1, n_rows):
        py, px = divmod(t - 1, Gw)
        want = {"c": c, "y": py * p + ky, "x": px * p + kx}
        for n, name_ in enumerate("cyx"):
            wrong = np.flatnonzero(lanes[n, t] != want[name_])
            assert not wrong.size, (
                f"token {t} (patch py={py}, px={px}) row position {wrong[0]} "
                f"(c={c[wrong[0]]}, ky={ky[wrong[0]]}, kx={kx[wrong[0]]}): got {name_} = "
                f"{lanes[n, t, wrong[0]]}, expected {want[name_][wrong[0]]}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_other_geometries(variant):
    """1 bank (a beat is one patch row), 4 banks, 2 beats per patch row, one channel, one
    beat per image row, one patch per image; three images back to back."""
    cfg = VARIANTS[variant]
    g = gather_geometry(cfg)
    assert (g.banks, g.beats_per_row, g.row_beats, g.grid_h * g.grid_w) == {
        "p8": (4, 1, 2, 32), "p32": (1, 1, 2, 2), "p64": (1, 2, 8, 8), "mono": (2, 1, 2, 8),
        "narrow": (2, 1, 1, 4), "one_patch": (1, 1, 1, 1)}[variant]
    imgs = [random_image(cfg, 8 + k) for k in range(3)]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    want = sum((expected_rows(im, cfg) for im in imgs), [])
    got, extra, *_ = run_gather(PatchGather(cfg), inputs, len(want), p_in=0.75, p_out=0.65,
                                seed=12)
    _check(got, extra, want, cfg)


def test_without_the_zero_row():
    cfg = TINY
    imgs = [random_image(cfg, 13), random_image(cfg, 14)]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    want = sum((expected_rows(im, cfg, zero_row=False) for im in imgs), [])
    got, extra, *_ = run_gather(PatchGather(cfg, zero_row=False), inputs, len(want),
                                p_in=0.7, p_out=0.7, seed=15)
    _check(got, extra, want, cfg)
    assert PatchGather.LEADING_ZERO_ROW  # the default a top reads


# ------------------------------------------------------------------ rate and cycle model
@pytest.mark.parametrize("name,images,zero_row", [
    ("tiny", 1, True), ("tiny", 3, True), ("edge-moe", 1, True), ("edge-moe", 2, True),
    ("edge-moe", 1, False), ("p8", 2, True), ("p32", 2, True), ("p64", 1, True),
    ("mono", 2, False), ("narrow", 2, True), ("one_patch", 3, True), ("one_patch", 3, False)])
def test_full_rate_and_cycle_model(name, images, zero_row):
    """Input always valid, output always ready: the cycles from the first pixel beat to the
    last row beat agree with patch_gather_cycles within 1 %; pixels are taken one per cycle
    throughout (a half is always free in time) and the patch rows leave one beat per cycle
    from the first patch beat to the last (no bubble between patches, strips or images)."""
    cfg = VARIANTS.get(name) or preset(name)
    g = gather_geometry(cfg)
    imgs = [random_image(cfg, 20 + k) for k in range(images)]
    inputs = sum((dram_strip_beats(im, cfg) for im in imgs), [])
    want = sum((expected_rows(im, cfg, zero_row) for im in imgs), [])
    got, extra, cin, cout, _ = run_gather(PatchGather(cfg, zero_row=zero_row), inputs,
                                          len(want))
    _check(got, extra, want, cfg)
    measured = cout[-1] - cin[0] + 1
    model = patch_gather_cycles(cfg, images, zero_row=zero_row)
    assert abs(measured - model) <= 0.01 * model, (measured, model)
    assert np.all(np.diff(cin[:2 * g.strip_beats]) == 1), "input not taken 1 beat/cycle"
    # from the first patch beat of image 0 on, one beat per cycle (1 image: all of them)
    first_patch = g.patch_beats if zero_row else 0
    gaps = np.diff(cout[first_patch:len(want) // images]) - 1
    assert gaps.sum() == 0, f"{gaps.sum()} idle output cycles within image 0's patch rows"
    if images > 1:   # back to back: the output is busy every cycle after the first strip
        assert np.all(np.diff(cout[first_patch:]) == 1)
    if not zero_row:  # output beats = input beats: both run in lockstep, no input bubble
        assert np.all(np.diff(cin) == 1)


def test_cycle_model_closed_form():
    """With the zero row shorter than a strip, the patch rows of strip k leave during the
    arrival of strip k + 1: the last read is issued at cycle (H/p + 1)·S - 1 (S the strip's
    beats, cycle 0 the first pixel beat) and leaves READ_LATENCY cycles later, so one image
    takes (H/p + 1)·S + READ_LATENCY cycles, with or without the zero row (it hides under
    strip 0's arrival)."""
    for cfg in (TINY, preset("edge-moe"), *VARIANTS.values()):
        g = gather_geometry(cfg)
        if g.patch_beats + 1 > g.strip_beats:
            continue
        S = g.strip_beats
        assert patch_gather_cycles(cfg) == (g.grid_h + 1) * S + READ_LATENCY
        assert patch_gather_cycles(cfg, zero_row=False) == (g.grid_h + 1) * S + READ_LATENCY


# ------------------------------------------------------------------ configuration errors
@pytest.mark.parametrize("changes,match", [
    ({"image_width": 48}, r"image_width 48 is not a multiple of the 32 pixels"),
    ({"patch_size": 24, "image_height": 48, "image_width": 96},
     r"patch_size 24 neither divides nor is a multiple of the 32 pixels"),
    ({"patch_size": 4, "image_height": 8, "image_width": 32},
     r"4x4 = 16 pixels is not a whole number of 32-pixel beats"),
])
def test_unsupported_geometries_raise_config_error(changes, match):
    cfg = TINY.replace(**changes)
    with pytest.raises(ConfigError, match=match) as exc:
        PatchGather(cfg)
    assert "patch gather" in str(exc.value) and "use " in str(exc.value)  # names the fix


def test_presets_geometry():
    """edge-moe: 2 banks (a beat = 2 patches' rows in, 2 ky rows of a patch out), 384 beats
    per strip, 24 per row (spec §3.4/§4.1: 768 pixels = 24 beats per token)."""
    g = gather_geometry(preset("edge-moe"))
    assert (g.banks, g.row_beats, g.strip_beats, g.patch_beats, g.half_depth) == \
        (2, 8, 384, 24, 192)
    assert g.input_beats == 128 * 256 * 3 // 32 and g.output_beats == 129 * 24
    t = gather_geometry(TINY)
    assert (t.grid_h, t.grid_w, t.strip_beats, t.patch_beats) == (2, 4, 96, 24)


# ------------------------------------------------------------------ into the patch embedding
class _GatherEmbed(wiring.Component):
    """PatchGather (no zero row) -> PatchEmbed.x, token = 1 + patch index: the wiring a top
    needs (tb_patch_embed.image_pass streams x rows for tokens 1..T-1 only)."""

    def __init__(self, cfg):
        from moevit.hw.units.linear import engine_signature
        from moevit.hw.units.patch_embed import PatchEmbed
        self.cfg = cfg
        self.pe = PatchEmbed(cfg)
        self.pg = PatchGather(cfg, zero_row=False)
        eng = engine_signature(self.pe.g)
        sig = {n: eng[n] for n in ("wcmd", "w", "b", "cmd", "d", "y")}
        sig["pix"] = In(stream.Signature(cfg.axi_width))
        self.geom = self.pg.geom
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe, m.submodules.pg = pe, pg = self.pe, self.pg
        for n in ("wcmd", "w", "b", "cmd", "d"):
            wiring.connect(m, wiring.flipped(getattr(self, n)), getattr(pe, n))
        wiring.connect(m, wiring.flipped(self.pix), pg.pix)
        wiring.connect(m, pe.y, wiring.flipped(self.y))
        beat = Signal(range(self.geom.patch_beats))
        token = Signal(range(self.cfg.tokens + 1), init=1)
        m.d.comb += [pe.x.payload.data.eq(pg.rows.payload), pe.x.payload.token.eq(token),
                     pe.x.payload.score.eq(0), pe.x.valid.eq(pg.rows.valid),
                     pg.rows.ready.eq(pe.x.ready)]
        with m.If(pe.x.valid & pe.x.ready):
            last = beat == self.geom.patch_beats - 1
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            with m.If(last):
                m.d.sync += token.eq(token + 1)
        return m


def test_gathered_rows_through_the_patch_embedding():
    """DRAM-order image beats -> PatchGather -> PatchEmbed (tiny) under back-pressure:
    token rows equal golden patch_embed (the gather feeds the engine exactly its x rows)."""
    from moevit.hw.units.linear_schedule import geometry
    from moevit.sim.linear_host import Program
    from moevit.sim.tb_patch_embed import extreme_inputs, image_pass
    cfg = TINY
    rng = np.random.default_rng(30)
    pix, w, b, pos = extreme_inputs(cfg, rng)
    ps, mem, want = image_pass(cfg, pix, w, b, pos, tag="img")
    prog = Program(cfg, geometry(cfg), [ps], mem)
    d_items = [it() for it in prog.d]
    assert None not in d_items
    comp = _GatherEmbed(cfg)
    srcs = {"wcmd": prog.wcmd, "w": prog.w, "b": prog.b, "cmd": prog.cmd, "d": d_items,
            "pix": dram_strip_beats(pix, cfg)}
    parts = [SimSource(getattr(comp, n), v, 0.8, np.random.default_rng(k))
             for k, (n, v) in enumerate(srcs.items())]
    snk = SimSink(comp.y, len(prog.y_expected), 0.7, np.random.default_rng(99))
    extra = []

    async def bench(ctx):
        await sim_drive_streams(ctx, parts + [snk], max_cycles=40_000, what="gather+embed")
        extra.extend(await sim_expect_idle(ctx, [comp.y], 200))

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    errs = [e for e in (prog.take_y(wd) for wd in snk.items) if e]
    assert not errs, errs[:3]
    got = prog.mem.bufs["img_out"]
    assert np.array_equal(got, want["img_out"]), \
        f"{int((got != want['img_out']).sum())} token values differ from golden patch_embed"
    assert np.array_equal(want["img_out"], patch_embed(pix, w, b, pos, cfg))
    assert not extra


# ------------------------------------------------------------------ resources / timing proxy
def _sta_limit_ps() -> int:
    """The project's timing-proxy budget (scripts/synth_estimate.py STA_LIMIT_PS)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "scripts" / "synth_estimate.py"
    spec = importlib.util.spec_from_file_location("_synth_estimate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.STA_LIMIT_PS


def test_edge_moe_strips_sit_in_block_ram_within_the_timing_proxy(tmp_path):
    """Yosys synth_xilinx (xcup): the two strip halves of both banks are block RAM
    (2 banks x 256 bits x 384 words -> 8 BRAM36 as 512x72), not LUT RAM or flip-flops, no
    DSP, and the logic-only latest arrival is within the project's budget."""
    import warnings

    from moevit.errors import ToolNotFoundError
    from moevit.hw.verilog import write_verilog, yosys_estimate
    from moevit.tools import find_yosys
    try:
        find_yosys()
    except ToolNotFoundError as exc:
        pytest.skip(str(exc))
    cfg = preset("edge-moe")
    g = gather_geometry(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = write_verilog(PatchGather(cfg), tmp_path / "patch_gather.v", "patch_gather")
    res = yosys_estimate(v, "patch_gather", log=tmp_path / "patch_gather.log")
    bram36_per_bank = -(-cfg.axi_width // 72)    # 512 x 72 per BRAM36; 2·D = 384 <= 512
    assert 2 * g.half_depth <= 512
    assert res["BRAM36"] == g.banks * bram36_per_bank
    assert res["LUTRAM"] == 0 and res["DSP48E2"] == 0
    assert res["FF"] < 2 * cfg.axi_width, res["FF"]  # output register + control only
    assert res["sta_ps"] <= _sta_limit_ps(), res
