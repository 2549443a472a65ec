"""The RTL top's cycle model (hw/perf/top_model.py) against RTL cycle counts and its own
properties.

The recorded RTL numbers (bench/top_tiny_cycles.json: the ``cycles`` register at every debug
stop and at the end of runs of 1 and 2 images, Verilator + cocotbext-axi AxiRam; ``held_out``:
tiny-e8, other expert/MLP widths and 8 experts -- measured after the constants were fixed on
tiny, its 0.1 % residual then led to replaying the scatter beat by beat, so it is calibration
data now too) are checked without a simulator; the ``rtl`` test measures tiny again.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from moevit import tools
from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden.weights import seeded_weights
from moevit.hw.perf import top_model as TM
from moevit.hw.top.program import R_A, R_B, program

BENCH = Path(__file__).resolve().parents[2] / "bench"
RECORDED = BENCH / "top_tiny_cycles.json"
#: the core before the MoE weight streamer: tiny, tiny-e8 and a whole edge-moe image
PRE_STREAMER = BENCH / "top_pre_streamer_cycles.json"
#: the core with the MoE weight streamer but before the patch embedding moved onto the
#: linear engine (``patch_on_linear=False``): edge-moe up to the end of MoE layer 1
#: (in-design DRAM harness)
EDGE_MOE_L1 = BENCH / "top_edge_moe_layer1_cycles.json"
#: the same core, a whole edge-moe image (same harness)
EDGE_MOE_FULL = BENCH / "top_edge_moe_cycles.json"


def recorded_core(rec: dict) -> dict:
    """The top_cycles options of the core a recording was made on (its feature flags; a
    record without a flag predates that feature)."""
    return {k: bool(rec.get(k, False)) for k in ("kv_replay", "weight_prefetch",
                                                 "patch_on_linear")}


#: issue #11: the model within 2 % of the RTL's cycle counts
TOLERANCE = 0.02


def tb_images(cfg, seed: int, n: int):
    """The images sim/tb_top_e2e.py feeds (its seed recipe)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, cfg.image_channels, cfg.image_height,
                                      cfg.image_width), dtype=np.uint8)


def tb_routing(cfg, seed=1, task=0, n=1):
    return TM.golden_routing(cfg, tb_images(cfg, seed, n), seeded_weights(cfg, seed), task)


#: cycles a stage may differ between the model (a fresh run) and the RTL's stops measured
#: one run after another: a run stopped after Q·Kᵀ leaves the attention's shared multiplier
#: array granted to Q·Kᵀ, and the next run's hand-over to softmax·V then takes 3 more cycles
#: (tiny, measured: stop 5 = 3,095 cycles in a fresh simulation = the model, 3,098 after a
#: run stopped at 4; the whole-image runs are equal to the model)
STOP_SEQUENCE_SLACK = 3


def _compare(cfg, stops: dict, routing, **kw) -> list[str]:
    """Model vs RTL at every stop (cumulative) and per stage (stop differences)."""
    model = TM.top_cycles(cfg, routing=routing, **kw).stop_cycles()
    bad, prev_r, prev_m = [], 0, 0
    for k, rtl in stops.items():
        m = model[int(k)]
        if abs(m - rtl) > TOLERANCE * rtl:
            bad.append(f"stop {k}: model {m:.0f}, RTL {rtl}")
        if abs((m - prev_m) - (rtl - prev_r)) > max(TOLERANCE * (rtl - prev_r),
                                                    STOP_SEQUENCE_SLACK):
            bad.append(f"stage {k}: model {m - prev_m:.0f}, RTL {rtl - prev_r}")
        prev_r, prev_m = rtl, m
    return bad


@pytest.fixture(scope="module")
def recorded():
    return json.loads(RECORDED.read_text())


def test_recorded_tiny_stops_and_run(recorded):
    cfg = preset("tiny")
    assert recorded["config_digest"] == cfg.digest, "bench/top_tiny_cycles.json is stale"
    assert set(recorded["stops"]) == {str(s.debug_id) for s in program(cfg)}
    routing = tb_routing(cfg)
    assert _compare(cfg, recorded["stops"], routing[0]) == []
    run = TM.top_cycles(cfg, routing=routing[0]).cycles
    assert abs(run - recorded["run_cycles"]) <= TOLERANCE * recorded["run_cycles"]


def test_recorded_held_out_config(recorded):
    """tiny-e8 (FC1 scatter-bound, FC2 engine-bound with out-tiles draining apart, 8
    experts): its stops and a run of 2 images of task 1 (each image routed differently)."""
    h = recorded["held_out"]
    cfg = TM.held_out_config()
    assert h["config_digest"] == cfg.digest
    assert _compare(cfg, h["stops"], tb_routing(cfg)[0]) == []
    two = tb_routing(cfg, task=1, n=2)
    run = TM.top_cycles(cfg, routing=two, num_images=2).cycles
    assert abs(run - h["run_2_images_task_1"]) <= TOLERANCE * h["run_2_images_task_1"]


def test_memory_latencies_match_the_measurement(recorded):
    """The ideal memory's latencies are what the trace measured on the AxiRam ports."""
    ideal = TM.Memory.ideal()
    for port in recorded["axi_measured"]:
        assert port["read_latency"]["min"] == ideal.read_latency
        assert port["read_burst_gap"]["min"] == 1        # bursts back to back
        if port["write_b_latency"]["count"]:
            assert port["write_b_latency"]["min"] == port["write_b_latency"]["max"] \
                == ideal.write_latency


@pytest.fixture(scope="module")
def pre_streamer():
    return json.loads(PRE_STREAMER.read_text())


@pytest.mark.parametrize("name", ["tiny", "tiny_e8"])
def test_pre_streamer_core_tiny(pre_streamer, name):
    """The core before the MoE weight streamer, as recorded then (every stop, 2 images)."""
    rec = pre_streamer[name]
    cfg = preset("tiny") if name == "tiny" else TM.held_out_config()
    assert rec["config_digest"] == cfg.digest
    old = {"moe_weight_streamer": False, "weight_prefetch": False, "kv_replay": False,
           "patch_on_linear": False}
    assert _compare(cfg, rec["stops"], tb_routing(cfg)[0], **old) == []
    two = TM.top_cycles(cfg, routing=tb_routing(cfg, task=1, n=2), num_images=2, **old).cycles
    assert abs(two - rec["run_2_images_task_1"]) <= TOLERANCE * rec["run_2_images_task_1"]


def test_pre_streamer_core_edge_moe_image(pre_streamer):
    """A whole edge-moe image (5.9 M cycles, recorded by another helper with the in-design
    DRAM) and its layer-1 stop; per stage within the recording's sampling of the stage
    register (every ``stage_sample_every`` cycles)."""
    rec = pre_streamer["edge_moe"]
    cfg = preset("edge-moe")
    assert rec["config_digest"] == cfg.digest
    routing = tb_routing(cfg)[0]
    res = TM.top_cycles(cfg, routing=routing, moe_weight_streamer=False, weight_prefetch=False,
                        kv_replay=False, patch_on_linear=False)
    assert abs(res.cycles - rec["full_cycles"]) <= TOLERANCE * rec["full_cycles"]
    stop = res.stop_cycles()[28]
    assert abs(stop - rec["layer1_stop_28_cycles"]) <= TOLERANCE * rec["layer1_stop_28_cycles"]
    assert _check_sampled(res, rec) == []


def _check_sampled(res, rec) -> list:
    """Stages whose modelled cycles differ from a sampled recording by more than its grain."""
    model = {s.debug_id: s.cycles for s in res.stages}
    model[0] = res.preload_cycles
    grain = 2 * rec["stage_sample_every"] + 10
    return [(d, n, c, model[d]) for d, n, c in rec["stage_cycles"] if abs(model[d] - c) > grain]


def test_edge_moe_layer1_streamer_core():
    """The MoE weight streamer core (with the separate patch engine) on edge-moe shapes: the
    layer-1 stop (1.04 M cycles, measured after the model was fixed on tiny) and each stage
    up to it."""
    rec = json.loads(EDGE_MOE_L1.read_text())
    cfg = preset("edge-moe")
    assert rec["config_digest"] == cfg.digest and rec["bit_exact"]
    res = TM.top_cycles(cfg, routing=tb_routing(cfg)[0], debug_id=28, **recorded_core(rec))
    want = rec["layer1_stop_28_cycles"]
    assert abs(res.cycles - want) <= TOLERANCE * want
    assert _check_sampled(res, rec) == []


def test_edge_moe_image_streamer_core():
    """The same core, a whole edge-moe image (5.7 M cycles) and each of its stages."""
    rec = json.loads(EDGE_MOE_FULL.read_text())
    cfg = preset("edge-moe")
    assert rec["config_digest"] == cfg.digest and rec["bit_exact"]
    res = TM.top_cycles(cfg, routing=tb_routing(cfg)[0], **recorded_core(rec))
    want = rec["stop_0_cycles"]
    assert abs(res.cycles - want) <= TOLERANCE * want
    assert _check_sampled(res, rec) == []


@pytest.mark.rtl
def test_tiny_rtl_cycles_against_model():
    """Measure tiny again (every debug stop and one full run) and compare."""
    tools.require_simulator("verilator")
    from moevit.sim.top_run import run_top
    cfg = preset("tiny")
    m = run_top(cfg, params={"runs": [{"task": 0, "num_images": 1, "reload": 1}],
                             "stops": "all"})
    assert m["mismatches"] == 0, m["errors"]
    routing = tb_routing(cfg)[0]
    assert _compare(cfg, {k: v["cycles"] for k, v in m["stops"].items()}, routing) == []
    run = m["runs"][0]["cycles"]
    assert abs(TM.top_cycles(cfg, routing=routing).cycles - run) <= TOLERANCE * run


# ------------------------------------------------------------------------ properties
def test_debug_stop_is_the_cumulative_count():
    cfg = preset("tiny")
    full = TM.top_cycles(cfg)
    for st in program(cfg):
        assert TM.top_cycles(cfg, debug_id=st.debug_id).cycles == full.stop_cycles()[st.debug_id]
    assert full.cycles == full.stop_cycles()[program(cfg)[-1].debug_id]


def test_images_repeat_the_stages_and_preload_once():
    cfg = preset("tiny")
    one, two = TM.top_cycles(cfg), TM.top_cycles(cfg, num_images=2)
    per_image = one.cycles - one.preload_cycles - TM.RUN_EDGES
    assert two.cycles == pytest.approx(one.cycles + per_image)
    assert two.ms_per_image < one.ms_per_image
    warm = TM.top_cycles(cfg, reload=False)
    assert warm.cycles == pytest.approx(one.cycles - one.preload_cycles)


def test_moe_cost_follows_routing():
    """Unused experts cost nothing; a token more on an expert costs cycles."""
    cfg = preset("tiny")
    T = cfg.tokens
    one = TM.top_cycles(cfg, routing={1: [T, T, 0, 0]})
    spread = TM.top_cycles(cfg, routing={1: [T, T - 6, 3, 3]})
    moe = {r.name: r for r in spread.stages if r.kind == "moe"}["mlp_out"]
    moe1 = {r.name: r for r in one.stages if r.kind == "moe"}["mlp_out"]
    # each extra expert loads FC1 and FC2 weights again: more cycles, more bytes read
    assert moe.cycles > moe1.cycles and moe.bytes_read > moe1.bytes_read
    w_expert = 2 * 2 * cfg.dim * cfg.expert_hidden + 2 * (cfg.dim + cfg.expert_hidden)
    assert moe.bytes_read - moe1.bytes_read == 2 * w_expert
    a = TM.top_cycles(cfg, routing={1: [5, 5, 4, 4]}).cycles
    b = TM.top_cycles(cfg, routing={1: [6, 4, 4, 4]}).cycles
    assert a == b          # same experts, same tokens in all: the passes' sum is equal


def test_stage_bytes_are_the_tensors_moved():
    cfg = preset("tiny")
    T, D = cfg.tokens, cfg.dim
    rows = {r.name: r for r in TM.top_cycles(cfg, debug_id=12).stages}
    # a linear stage: int16 weights + biases and the fm_t input rows in, output rows out
    assert rows["q"].bytes_read == D * D * 2 + D * 2 + T * D * 4
    assert rows["q"].bytes_written == T * D * 4
    assert rows["resid1"].bytes_read == 2 * T * D * 4
    assert rows["hidden"].bytes_written == T * cfg.mlp_hidden * 4


def test_kv_replay_reads_k_and_v_once():
    """K (qk) and V (av) come from DRAM once per stage; the attention still takes them once
    per query block (from the replay buffer).  On the testbench memory (1 beat/cycle per
    port) that changes no cycle; on the board it saves the DRAM passes."""
    for name in ("tiny", "edge-moe"):
        cfg = preset(name)
        T, D, qb = cfg.tokens, cfg.dim, cfg.query_blocks
        act = T * D * 4
        st = {s.name: s for s in program(cfg) if s.layer == 0}
        assert st["score_buffer"].unit_beats(R_B) == qb * T * cfg.feature_blocks
        assert st["av"].unit_beats(R_A) == qb * T * cfg.feature_blocks
        # (without the weight prefetch, so the stages read only their own operands)
        new, old = (TM.top_cycles(cfg, debug_id=7, kv_replay=kv, weight_prefetch=False)
                    for kv in (True, False))
        rows, old_rows = ({r.name: r for r in x.stages} for x in (new, old))
        assert rows["score_buffer"].bytes_read == 2 * act                 # Q and K once
        assert old_rows["score_buffer"].bytes_read == act + qb * act
        assert old_rows["av"].bytes_read - rows["av"].bytes_read == (qb - 1) * act
        assert new.cycles == old.cycles
        bn, bo = (TM.top_cycles(cfg, memory="board", debug_id=7, kv_replay=kv,
                                weight_prefetch=False)
                  for kv in (True, False))
        bn_rows, bo_rows = ({r.name: r for r in x.stages} for x in (bn, bo))
        for k in ("score_buffer", "av"):     # tiny is compute-bound on the board too
            assert bn_rows[k].cycles <= bo_rows[k].cycles
            assert (bn_rows[k].cycles < bo_rows[k].cycles) == (name == "edge-moe")
            assert bn_rows[k].cycles >= rows[k].cycles


def test_board_memory_is_slower_and_named():
    cfg = preset("edge-moe")
    b = TM.Memory.board(cfg)
    assert b.beat_cycles == cfg.axi_width / cfg.hp_port_width
    assert b.shared_bytes_per_cycle == pytest.approx(
        cfg.dram_peak_gbs * 1e9 * cfg.dram_efficiency / cfg.clock_hz)
    tiny = preset("tiny")
    ideal, board = TM.top_cycles(tiny), TM.top_cycles(tiny, memory="board")
    for i, bo in zip(ideal.stages, board.stages):
        assert bo.cycles >= i.cycles, bo.name
    assert board.summary()["memory"]["name"] == "board"


def test_linear_stage_weights_load_in_the_stage_before():
    """With the prefetch a linear stage starts on its first input row; the stage before it
    carries its weight beats (and is at least that long).  Without it (the earlier core) a
    linear stage is at least its weight stream plus its compute."""
    cfg = preset("tiny")
    w_beats = (cfg.dim * cfg.dim + cfg.dim) * 2 // (cfg.axi_width // 8)
    now = {r.name: r for r in TM.top_cycles(cfg, debug_id=3).stages}
    assert now["q"].memory_cycles < w_beats
    assert now["ln1"].bytes_read >= w_beats * cfg.axi_width // 8 and now["ln1"].cycles > w_beats
    old = {r.name: r for r in TM.top_cycles(cfg, debug_id=2, weight_prefetch=False).stages}
    assert old["q"].memory_cycles >= w_beats
    assert old["q"].cycles >= w_beats + old["q"].compute_cycles
    assert now["q"].cycles < old["q"].cycles


def test_uniform_routing_is_said():
    r = TM.top_cycles(preset("tiny"))
    assert "uniform" in r.summary()["routing"]
    assert sum(TM.uniform_routing(preset("tiny"))[1]) == 9 * 2


@pytest.mark.parametrize("kw, msg", [
    ({"memory": "fast"}, "memory"),
    ({"routing": {1: [18, 0, 0]}}, "routing of layer 1"),
    ({"routing": {1: [18, 0, 0, 0]}}, "distinct experts"),
    ({"routing": {0: [9, 9, 0, 0]}}, "MoE layers"),
    ({"debug_id": 13}, "debug_id 13"),
    ({"num_images": 0}, "num_images"),
    ({"num_images": 2, "routing": [{1: [9, 9, 0, 0]}]}, "per-image"),
])
def test_bad_arguments(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TM.top_cycles(preset("tiny"), **kw)
