"""The fast whole-accelerator harness (sim/top_fast.py + sim/tb_top_fast.py): moevit_top with the
simulated DRAM in the design, compared with the golden model."""

import os

import numpy as np
import pytest

from moevit import tools
from moevit.config import preset
from moevit.errors import ConfigError, ShapeError
from moevit.golden.weights import seeded_weights
from moevit.host.layout import buffer_layout, stage_by_id, stages
from moevit.sim.top_fast import (GUARD, PAGE, compare, memory_words_log2, place_buffers,
                                 run_top_fast, stage_cycles_from_trace, check_run)

#: opt-in for the edge-moe RTL runs (a cold Verilog export + Verilator build of the edge-moe top: ~6 min
#: on 2 cores, over the CI budget for one test; results are recorded in bench/top_edge_moe.json)
EDGE_MOE_ENV = "MOEVIT_TOP_EDGE_MOE"


def _images(cfg, n=1, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, cfg.image_channels, cfg.image_height, cfg.image_width),
                        dtype=np.uint8)


# ---------------------------------------------------------------------------- pure Python
@pytest.mark.parametrize("name", ["tiny", "edge-moe"])
def test_placement_is_aligned_disjoint_and_guarded(name):
    cfg = preset(name)
    place = place_buffers(cfg, 2, {"extra": ((3, 5), np.int16)})
    assert set(place.layout) == set(buffer_layout(cfg, 2)) | {"extra"}
    spans = sorted((a, a + place.nbytes(n)) for n, a in place.addr.items())
    for (a0, e0), (a1, _) in zip(spans, spans[1:]):
        assert a1 % PAGE == 0 and a1 >= e0 + GUARD
    assert place.end >= spans[-1][1]
    first = min(place.addr, key=place.addr.get)
    assert place.owner(place.addr[first], place.nbytes(first)) == first
    assert place.owner(place.addr[first], place.nbytes(first) + 1) is None
    words, word_bytes = 1 << memory_words_log2(cfg, place), cfg.axi_width // 8
    assert words * word_bytes >= place.end                     # everything fits
    assert words == 1 << 16 or words // 2 * word_bytes < place.end   # and no larger than needed


def test_compare_reports_count_index_and_values():
    assert compare("x", np.arange(6), np.arange(6).reshape(2, 3)) is None
    got = np.array([0, 5, 2, 7])
    msg = compare("x", got, np.arange(4))
    assert msg == "x: 2/4 words differ; first at flat index 1: got 5, want 1"
    assert compare("x", np.arange(3), np.arange(4)) == "x: 3 words read back, 4 expected"


def test_stage_cycles_from_trace():
    cfg = preset("tiny")
    ids = [s.debug_id for s in stages(cfg)]
    # run starts at memory cycle 100; register: 0 (preload), then stages; one stage missed
    trace = [(110, 0), (130, 0), (150, ids[0]), (170, ids[0]), (190, ids[1]), (210, ids[3])]
    out = stage_cycles_from_trace(cfg, trace, start=100, total=150)
    assert [(s.debug_id, s.start, s.cycles) for s in out] == [
        (0, 0, 50), (ids[0], 50, 40), (ids[1], 90, 20), (ids[3], 110, 40)]
    assert sum(s.cycles for s in out) == 150 and out[0].name == "preload"
    # a second image's patch embedding starts image 1
    out = stage_cycles_from_trace(cfg, trace + [(230, ids[0]), (240, ids[1])], 100, 160)
    assert [s.image for s in out] == [0, 0, 0, 0, 1, 1]


def test_check_run_refuses_bad_inputs():
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match=r"--debug-id 13 is no stage of preset 'tiny'"):
        check_run(cfg, _images(cfg), 0, 13)
    with pytest.raises(ConfigError, match=r"task 2 is not a task"):
        check_run(cfg, _images(cfg), 2, 0)
    with pytest.raises(ShapeError, match=r"expected uint8 \[N, 3, "):
        check_run(cfg, _images(cfg)[:, :, :-1], 0, 0)
    check_run(cfg, _images(cfg), 1, stages(cfg)[3].debug_id)


# ---------------------------------------------------------------------------- RTL
def _check(r, want_taps):
    assert r.ok, r.mismatches
    assert set(r.mismatches) == set(want_taps)
    assert all(r.words[k] > 0 for k in want_taps)
    assert r.cycles > 0 and r.run_wall_s > 0 and sum(r.beats["written"]) > 0


@pytest.mark.rtl
def test_tiny_full_run_and_stops_bit_exact():
    """Two images (task 1) end to end, then a stop with two taps and a stop on the last
    stage, with memory stalls and latency on one of them."""
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    w = seeded_weights(cfg, 3)
    imgs = _images(cfg, 2, seed=3)
    r = run_top_fast(cfg, w, imgs, task=1, sample_every=None)
    _check(r, ["x"])
    assert r.stage == stages(cfg)[-1].debug_id
    # per-stage cycles cover the run; both images' stages were sampled
    assert sum(s.cycles for s in r.stage_cycles) == r.cycles
    assert {s.image for s in r.stage_cycles} == {0, 1}
    assert r.stage_cycles[0].name == "preload"
    full = r.cycles

    scores = next(s for s in stages(cfg) if len(s.taps) == 2)
    r = run_top_fast(cfg, w, imgs[:1], task=0, debug_id=scores.debug_id, stall=60,
                     latency=12)
    _check(r, [f"{t} ({p})" for t, p in scores.taps])
    assert r.stage == scores.debug_id and r.cycles < full / 2
    assert r.stage_cycles == []        # sample_every=0: no samples


@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_with_the_zcu104_engine_shapes_bit_exact():
    """The top built with the zcu104 preset's parallelism (its linear tile and attention
    lanes) on tiny's model: two images end to end, bit-exact, cycles equal to the model."""
    tools.require_simulator("verilator")
    from moevit.hw.perf import top_model as TM
    z = preset("zcu104")
    cfg = preset("tiny").replace(name="tiny-zcu104-shapes", linear_tile_in=z.linear_tile_in,
                                 linear_tile_out=z.linear_tile_out,
                                 attn_parallel=z.attn_parallel)
    w = seeded_weights(cfg, 3)
    imgs = _images(cfg, 2, seed=3)
    r = run_top_fast(cfg, w, imgs, task=1)
    _check(r, ["x"])
    routing = TM.golden_routing(cfg, imgs, w, 1)
    assert r.cycles == pytest.approx(TM.top_cycles(cfg, routing=routing, num_images=2).cycles,
                                     rel=0.02)


@pytest.mark.rtl
def test_tiny_mismatch_is_reported(monkeypatch):
    """The comparison is live: the RTL gets other weights than the golden model."""
    tools.require_simulator("verilator")
    import moevit.host.packing as packing
    cfg = preset("tiny")
    w, other = seeded_weights(cfg, 3), seeded_weights(cfg, 4)
    orig = packing.pack_weights
    monkeypatch.setattr(packing, "pack_weights", lambda _w, c, **kw: orig(other, c, **kw))
    r = run_top_fast(cfg, w, _images(cfg), debug_id=stages(cfg)[0].debug_id)
    assert not r.ok
    (msg,) = r.mismatches.values()
    assert "words differ" in msg


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(EDGE_MOE_ENV),
                    reason=f"edge-moe top: set {EDGE_MOE_ENV}=1 (cold build ~6 min + ~1 min run "
                           f"on 2 cores; results in bench/top_edge_moe.json)")
def test_edge_moe_layer1_from_a_weight_folder(tmp_path):
    """Patch embedding, dense layer 0 and MoE layer 1 (debug_id 28) bit-exact, with the
    weights read from an Edge-MoE folder (*.float32.bin) written from seeded weights."""
    tools.require_simulator("verilator")
    from moevit.golden.cli import load_weights
    from moevit.golden.weight_io import save_folder
    cfg = preset("edge-moe")
    assert not cfg.is_moe(0) and cfg.is_moe(1)
    save_folder(seeded_weights(cfg, 5), tmp_path / "w", cfg)
    assert list((tmp_path / "w").glob("*.float32.bin"))
    w = load_weights(cfg, tmp_path / "w")
    stop = stage_by_id(cfg, 16 * 1 + 12)
    r = run_top_fast(cfg, w, _images(cfg, 1, seed=5), debug_id=stop.debug_id)
    _check(r, [f"{t} ({p})" for t, p in stop.taps])
    assert r.stage == stop.debug_id
