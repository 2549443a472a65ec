"""Attention unit: the schedule model, the combinational exp/recip, and the Amaranth RTL under
cocotb (tiny on Verilator in CI, every P on Icarus, a full edge-moe layer as ``slow``)."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden import attention as ga
from moevit.hw.units.attention_schedule import (A_PIPE_STAGES, AV_STEP_STAGES,
                                                bandwidth_profile, cycles_per_layer, geometry,
                                                qk_step_cycles, qk_step_stages, qk_steps,
                                                softmax_latency)

PS = [1, 2, 4, 8]


# ---------------------------------------------------------------------------- schedule model
@pytest.mark.parametrize("name", ["tiny", "edge-moe"])
@pytest.mark.parametrize("P", PS)
def test_schedule_reads_at_most_one_q_and_one_k_block_per_step(name, P):
    cfg = preset(name).replace(attn_parallel=P)
    prof = bandwidth_profile(cfg)
    assert prof["max_q_blocks_per_step"] == 1 and prof["max_k_blocks_per_step"] == 1
    # every q row is read exactly once (block by block), K once per query block
    assert prof["q_blocks"] == cfg.tokens * cfg.feature_blocks
    assert prof["k_blocks"] == prof["steps"] == cfg.query_blocks * cfg.tokens * cfg.feature_blocks


@pytest.mark.parametrize("P", PS)
def test_schedule_lane_rows_follow_the_golden_score_buffer_layout(P):
    cfg = preset("edge-moe").replace(attn_parallel=P)
    g = geometry(cfg)
    rows, valid = ga.score_buffer_rows(cfg)
    for b in range(g.query_blocks):
        for k in range(g.tokens):
            for o in range(P):
                assert g.valid(b, k, o) == valid[b, k, o]
                if valid[b, k, o]:
                    assert g.row(b, k, o) == rows[b, k, o]
    # each row's visiting order ends at last_key(q mod P): the cyclic order of the spec
    for q in range(g.tokens):
        assert ga.key_order(q, cfg)[-1] == g.last_key(q % P)


def test_cycle_formula_edge_moe_p4():
    c = cycles_per_layer(preset("edge-moe"))
    assert c["ideal_layer_cycles"] == 2 * 33 * 129 * 24 == 204_336


def test_geometry_rejects_more_lanes_than_tokens():
    # a 16x32 image: 2 patches + cls = 3 tokens, fewer than P = 4 lanes
    cfg = preset("tiny").replace(image_height=16, image_width=32)
    with pytest.raises(ConfigError, match="attn_parallel 4 exceeds the 3 tokens"):
        geometry(cfg)


# ---------------------------------------------------------------------------- cycle model
@pytest.mark.parametrize("P", PS)
def test_cycle_model_edge_moe_retires_one_step_per_clock(P):
    """edge-moe: the shared softmax unit and the A pipeline keep up (no stall cycles): every
    Q·Kᵀ step retires on its own clock, only fill/drain latency is added."""
    cfg = preset("edge-moe").replace(attn_parallel=P)
    g = geometry(cfg)
    assert qk_step_cycles(cfg) == list(range(g.steps))
    c = cycles_per_layer(cfg)
    sm_tail = softmax_latency(cfg) + 1
    # + the step pipeline, the nxt registers and the softmax input register
    assert c["qk_cycles"] <= g.steps + sm_tail + 1 + qk_step_stages(cfg) + 2
    # + the step pipeline and the move of the gathered A group to the held one
    assert c["av_cycles"] <= (g.steps + max(1, g.entry_words // 8) + A_PIPE_STAGES + P + 4
                              + AV_STEP_STAGES + 1)


def test_cycle_model_latency_terms_match_the_units():
    from amaranth.hdl import Fragment

    from moevit.hw.units.attention import AttentionAV
    cfg = preset("tiny")
    av = AttentionAV(cfg)
    Fragment.get(av, None)
    assert av.a_latency == A_PIPE_STAGES


# ---------------------------------------------------------------------------- RTL
def _run(cfg, sim, **params):
    from moevit.hw.units.attention import Attention
    from moevit import tools
    from moevit.sim.runner import run_testbench
    tools.require_simulator(sim)
    return run_testbench(lambda: Attention(cfg), cfg, "attention", "moevit.sim.tb_attention",
                         sim=sim, params=params)


@pytest.mark.rtl
def test_rtl_tiny_verilator_backpressure_bit_exact():
    """tiny, P = 4, two layers back to back without reset, random valid/ready on all streams."""
    cfg = preset("tiny")
    m = _run(cfg, "verilator", seed=11, p_valid=0.6, p_ready=0.6, layers=2)  # back to back
    assert m["mismatches"] == 0 and m["mismatches_junk"] == 0 and m["layers"] == 2
    assert m["extra_outputs"] == 0 and m["q_off_schedule"] == 0
    assert m["vectors"] > 0 and m["layer_cycles"] > 2 * m["steps_per_phase"]  # it did stall


@pytest.mark.rtl
def test_rtl_icarus_tiny_backpressure_bit_exact():
    """tiny, P = 4 on Icarus (a build takes a second): random valid/ready on all streams,
    bit-exact, and nothing more leaves any output stream after the last expected beat."""
    cfg = preset("tiny")
    m = _run(cfg, "icarus", seed=13, p_valid=0.7, p_ready=0.7)
    assert m["mismatches"] == 0 and m["mismatches_junk"] == 0
    assert m["extra_outputs"] == 0 and m["q_off_schedule"] == 0
    assert m["q_beats"] == cfg.tokens * cfg.feature_blocks


@pytest.mark.rtl
@pytest.mark.parametrize("P", [1, 4])
def test_rtl_icarus_phases_fed_together_share_the_array_exactly(P):
    """tiny on Icarus: Q·Kᵀ of layer n+1 and softmax·V of layer n fed at the same time under
    random back-pressure (both phases request the shared multiplier array; it serves one
    layer at a time): three layers bit-exact, no extra output, no deadlock.  Outputs are
    mostly not ready (0.2), so a phase's last steps often wait in the array while the grant
    is about to move (a grant that moves before the array drains fails this)."""
    cfg = preset("tiny").replace(attn_parallel=P)
    m = _run(cfg, "icarus", seed=31 + P, p_valid=0.9, p_ready=0.2, layers=3, overlap=1)
    assert m["overlap"] and m["layers_checked"] == 3
    assert m["mismatches"] == 0 and m["extra_outputs"] == 0


def _scores_from_buffer(sb, cfg):
    """s[q][k][h] recovered from a score buffer through the lane -> row mapping."""
    rows, valid = ga.score_buffer_rows(cfg)
    T, H = cfg.tokens, cfg.heads
    s = np.full((T, T, H), -1 << 40, dtype=np.int64)
    b, k, o = np.nonzero(valid)
    s[rows[b, k, o], k, :] = sb[b, k, o, :H]
    assert (s != -1 << 40).all()
    return s


@pytest.mark.rtl
def test_rtl_constant_bandwidth_and_scores_identical_for_every_P(tmp_path):
    """Icarus, tiny, P in {1,2,4,8}: (a) full rate: at most one q and one k beat per cycle,
    k and q beats exactly on the cycles the cycle model gives each step (tiny stalls where
    a head completes on P lanes faster than the shared softmax unit takes one score per
    cycle), and cycles = the cycle model; (b) random back-pressure: bit-exact with the golden
    model configured with the same P, and the recovered scores identical for all P."""
    base = preset("tiny")
    rng = np.random.default_rng(5)
    T, D = base.tokens, base.dim
    q, k, v = (rng.integers(-3 << 22, 3 << 22, size=(T, D)) for _ in range(3))
    vec = tmp_path / "qkv.npz"
    np.savez(vec, q=q, k=k, v=v)
    scores = {}
    for P in PS:
        cfg = base.replace(attn_parallel=P)
        full = _run(cfg, "icarus", seed=P, p_valid=1.0, p_ready=1.0, vectors_npz=str(vec),
                    record_q_cycles=True)
        fires = qk_step_cycles(cfg)
        steps = [fires[i] for i, st in enumerate(qk_steps(cfg)) if st.q_row is not None]
        assert full["q_off_schedule"] == 0 and full["extra_outputs"] == 0
        assert full["k_handshake_cycles"] == fires
        assert full["q_handshake_cycles"] == steps
        formula = cycles_per_layer(cfg)
        assert (full["qk_cycles"], full["av_cycles"]) == (formula["qk_cycles"],
                                                          formula["av_cycles"])
        dump = tmp_path / f"out{P}.npz"
        bp = _run(cfg, "icarus", seed=20 + P, p_valid=0.6, p_ready=0.6, vectors_npz=str(vec),
                  dump_npz=str(dump))
        assert bp["mismatches"] == 0 and full["mismatches"] == 0
        assert bp["q_off_schedule"] == 0 and bp["extra_outputs"] == 0
        scores[P] = _scores_from_buffer(np.load(dump)["score_buffer"], cfg)
    for P in PS:
        assert np.array_equal(scores[P], scores[4]), f"scores differ between P={P} and P=4"
    assert np.array_equal(scores[4], ga.qk_scores(q, k, base))


@pytest.mark.rtl
@pytest.mark.slow
def test_rtl_edge_moe_full_layer_matches_golden_taps(tmp_path):
    """Full edge-moe layer 0 of a seeded network (129 tokens, 3 heads, 192 dims) on Verilator
    under back-pressure, then a random layer at full rate (cycles = the cycle model)."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    cfg = preset("edge-moe")
    names = {f"l0.{n}" for n in ("q", "k", "v", "score_buffer", "softmax_info", "av")}
    taps = GoldenModel(cfg, seeded_weights(cfg, 0)).run(synthetic_image(cfg, 0), taps=names).taps
    vec = tmp_path / "l0.npz"
    np.savez(vec, **{n.split(".")[1]: taps[n][0] for n in names})
    t0 = time.monotonic()
    m = _run(cfg, "verilator", seed=3, p_valid=0.8, p_ready=0.8, vectors_npz=str(vec))
    assert m["mismatches"] == 0
    print(f"edge-moe layer: {m['layer_cycles']} cycles under back-pressure, "
          f"{time.monotonic() - t0:.0f} s")
    # full rate, random Q/K/V: one step per clock, cycles = the cycle model
    full = _run(cfg, "verilator", seed=4, p_valid=1.0, p_ready=1.0)
    assert full["mismatches"] == 0
    assert full["k_span_cycles"] == full["steps_per_phase"]  # a k beat on every cycle
    formula = cycles_per_layer(cfg)
    assert (full["qk_cycles"], full["av_cycles"]) == (formula["qk_cycles"],
                                                      formula["av_cycles"])


@pytest.mark.rtl
def test_cocotb_testbench_on_hls_exported_verilog():
    """The same testbench against Vitis-HLS-exported Verilog of hw/hls/attention.cpp."""
    path = os.environ.get("MOEVIT_HLS_VERILOG")
    if not path:
        pytest.skip("MOEVIT_HLS_VERILOG is not set: write the project with `python -m "
                    "moevit.hw.hls_config`, run `vitis_hls -f run_hls.tcl` (needs Vitis HLS) and "
                    "point it at solution1/impl/verilog (docs/attention.md)")
    from moevit import tools
    from moevit.sim.tb_attention_hls import run_hls_verilog
    tools.require_simulator("verilator")
    sources = sorted(Path(path).glob("*.v"))
    assert sources, f"no .v files in {path}"
    m = run_hls_verilog(sources, preset(os.environ.get("MOEVIT_HLS_PRESET", "tiny")))
    assert m["mismatches"] == 0


def test_attention_is_registered_for_moevit_sim():
    from moevit.sim.units import get_unit
    spec = get_unit("attention")
    assert spec.test_module == "moevit.sim.tb_attention"
    comp = spec.build(preset("tiny"))
    assert set(comp.signature.members) == {"q", "k", "s_out", "i_out", "v", "s_in", "i_in", "o"}
    from amaranth.hdl import Fragment
    Fragment.get(comp, None)  # it elaborates (and is marked used)
