"""Linear engine and patch embedding without a simulator: geometry from the config, the
configuration errors, the cycle model's structure, the host-side stream items and memory
model, and elaboration for a wider (32 × 32) engine."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden import linear as gl
from moevit.hw.units.linear_schedule import (
    BANKS, PATCH_BANK, geometry, layer_shapes, linear_format, pass_cycles, patch_format)
from moevit.sim.linear_host import Pass, Program, golden_pass, pack, unpack


def test_edge_moe_geometry_matches_the_spec():
    cfg = preset("edge-moe")
    g = geometry(cfg)
    # spec §4.3: 576 tiles of 16x16 per bank (768x192), bias up to 48 tiles, 16 weights/beat
    assert (g.tile_in, g.tile_out, g.max_tiles, g.max_out_tiles) == (16, 16, 576, 48)
    assert g.w_per_beat == 16 and g.x_per_beat == 8 and g.max_in == 768
    assert g.weight_beats(192, 768) == 9216 and g.in_beats(192) == 24
    assert g.beats_per_xword == 2 and g.tiles_per_xword == 1
    # the patch embedding runs on the same engine: a 768-pixel row in pixel mode, its
    # weights (192 x 768 = 576 tiles) in a bank of their own
    assert layer_shapes(cfg)["patch_embed"] == (768, 192) and (BANKS, PATCH_BANK) == (3, 2)
    assert patch_format(cfg).shift == 2 and linear_format(cfg).shift == 14  # §4.1 / §4.3 floors
    assert g.pixel_lshift == 12  # a pixel P enters its lane as P·2^12: ⌊P·2^12·W/2^14⌋ = ⌊P·W/4⌋
    assert g.pixel_per_beat == 32 and g.pixel_tiles_per_beat == 2 and g.in_beats(768, True) == 24
    assert g.x_words == 48  # one bank of the row cache: a 768-input fm row (a pixel row: 24)


def test_tile_widths_come_from_the_config():
    cfg = preset("tiny").replace(linear_tile_in=32, linear_tile_out=32)
    g = geometry(cfg)
    assert (g.tile_in, g.tile_out, g.out_beats_per_tile) == (32, 32, 4)
    with pytest.raises(ConfigError, match="multiple of the 16 weights"):
        geometry(preset("tiny").replace(linear_tile_in=8))


def test_pass_shape_errors_name_the_limit():
    g = geometry(preset("edge-moe"))
    with pytest.raises(ConfigError, match="24 inputs"):
        g.check_shape(24, 192, 10)
    with pytest.raises(ConfigError, match="130 tokens"):
        g.check_shape(192, 192, 130)


def test_cycle_model_structure():
    g = geometry(preset("edge-moe"))
    fc1 = pass_cycles(g, 192, 768, 129, gelu=True)
    assert fc1.steps == 129 * 48 * 12
    assert fc1.per_token == 48 * 12 and fc1.steps_per_cycle >= 0.98
    # the next command is taken right after the last step: issue = first + steps
    assert fc1.issue_cycles == fc1.first_step + fc1.steps
    # an input-bound pass (one out-tile, many input beats) runs at the row-load rate
    gt = geometry(preset("tiny"))
    small = pass_cycles(gt, 64, 16, 9)
    assert small.per_token == gt.in_beats(64) > 4


def test_pack_unpack_round_trip():
    vals = np.array([-(1 << 31), (1 << 31) - 1, 0, -1, 5, 7, 9, 11])
    assert np.array_equal(unpack(pack(vals, 32), 32, 8), vals)
    assert np.array_equal(unpack(pack([255, 0, 17], 8), 8, 3, signed=False), [255, 0, 17])


def test_program_items_and_read_after_write_ordering():
    cfg = preset("tiny")
    g = geometry(cfg)
    rng = np.random.default_rng(0)
    T, D, H = cfg.tokens, cfg.dim, cfg.expert_hidden
    w1, b1 = rng.integers(-99, 99, (H, D)), rng.integers(-99, 99, H)
    w2, b2 = rng.integers(-99, 99, (D, H)), rng.integers(-99, 99, D)
    rows = [1, 4, 6]
    mem = {"x": rng.integers(-1 << 20, 1 << 20, (T, D)), "h": np.zeros((T, H), np.int64),
           "o": np.zeros((T, D), np.int64)}
    passes = [Pass("fc1", 0, w1, b1, "x", rows, "h", gelu=True),
              Pass("fc2", 1, w2, b2, "h", rows, "o", score=True, add=True, scores=[1, 2, 3])]
    prog = Program(cfg, g, passes, mem)
    assert len(prog.w) == 2 * H * D // 16 and len(prog.b) == (H + D) // 16
    assert len(prog.x) == len(rows) * (D + H) // 8 and len(prog.d) == len(rows) * D // 8
    assert len(prog.y_expected) == len(rows) * (H + D) // 8
    fc2_x0 = prog.x[len(rows) * D // 8]
    assert fc2_x0() is None  # FC2 reads h[1] before FC1 wrote it: not offered yet
    for _ in range(H // 8):  # FC1's output row for token 1
        assert prog.take_y(prog.fy.pack(data=0, token=1)) is None
    assert fc2_x0() is not None
    assert "token id 9" in prog.take_y(prog.fy.pack(data=0, token=9))  # wrong id reported


def test_golden_pass_accumulates_with_wrap():
    cfg = preset("tiny")
    T, D = cfg.tokens, cfg.dim
    w = np.eye(D, dtype=np.int64) << 14  # identity weights (1.0 in wt_linear)
    b = np.zeros(D, np.int64)
    x = np.full((T, D), (1 << 31) - 1, np.int64)
    mem = {"x": x, "o": x.copy()}
    ps = Pass("acc", 0, w, b, "x", [0, 2], "o", add=True)
    y = golden_pass(cfg, ps, mem, w_frac=14)
    assert np.array_equal(y, gl.linear_ref(x[[0, 2]], w, b, w_frac=14))
    assert mem["o"][0, 0] == -2 and mem["o"][1, 0] == (1 << 31) - 1  # wrapped; row 1 untouched


def test_wider_engine_elaborates():
    from moevit.hw.units.linear import Linear
    from moevit.hw.verilog import verilog_text
    cfg = preset("tiny").replace(linear_tile_in=32, linear_tile_out=32)
    text = verilog_text(Linear(cfg), "linear")
    assert "wbank31" in text and "p31_31" in text


def test_pixel_lane_shift_gives_the_patch_floor():
    """Pixel mode puts P at P·2^lshift in a signed 32-bit lane; the engine's one product
    floor (>> the linear shift) must equal the patch floor ⌊P·W / 2^(8+16−22)⌋ of spec §4.1
    for every pixel and weight (the lane stays positive, the product is exact)."""
    cfg = preset("edge-moe")
    g = geometry(cfg)
    f = cfg.formats
    pix = np.arange(256, dtype=np.int64)[:, None]
    w = np.arange(f.wt_patch_embed.raw_min, f.wt_patch_embed.raw_max + 1, dtype=np.int64)[None]
    lane = pix << g.pixel_lshift
    assert lane.max() < 2 ** 31
    shift_patch = f.pixel.frac + f.wt_patch_embed.frac - f.fm.frac
    assert np.array_equal((lane * w) >> linear_format(cfg).shift, (pix * w) >> shift_patch)


def test_pixel_mode_config_errors_name_the_fix():
    # a 64-wide tile of pixels (512 bits) does not fit a 256-bit beat
    with pytest.raises(ConfigError, match="pixel mode.*linear_tile_in <= 32"):
        geometry(preset("edge-moe").replace(linear_tile_in=64))
