"""Accelerator cycle model: each part against independent evidence."""
import itertools

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden.weights import expected_shapes
from moevit.hw.perf import cycle_model as cm
from moevit.hw.perf import units as U
from moevit.hw.perf.dram import DramModel
from moevit.hw.units.attention_schedule import cycles_per_layer
from moevit.hw.units.linear_schedule import geometry, pass_cycles


def _by_name(stages):
    return {s.name: s for s in stages}


@pytest.mark.parametrize("name,P", [("tiny", 4), ("tiny", 2), ("edge-moe", 4), ("zcu104", 8)])
def test_attention_stages_equal_the_rtl_checked_schedule(name, P):
    cfg = preset(name).replace(attn_parallel=P)
    ref = cycles_per_layer(cfg)
    for batch in (1, 3):
        st = _by_name(cm.stages(cfg, batch))
        for L in range(cfg.depth):
            assert st[f"l{L}.qk_softmax"].compute_cycles == batch * ref["qk_cycles"]
            assert st[f"l{L}.av"].compute_cycles == batch * ref["av_cycles"]


@pytest.mark.parametrize("tin,tout", [(16, 16), (32, 16), (16, 48)])
def test_linear_stage_is_tokens_times_out_tiles_times_in_tiles(tin, tout):
    cfg = preset("edge-moe").replace(linear_tile_in=tin, linear_tile_out=tout)
    # count the engine's (token, out-tile, in-tile) iterations of spec §4.3 one by one
    T, D, M = cfg.tokens, cfg.dim, cfg.mlp_hidden
    loop = sum(1 for _ in itertools.product(range(T), range(M // tout), range(D // tin)))
    st = _by_name(cm.stages(cfg, 1))
    g = geometry(cfg)
    fc1 = pass_cycles(g, D, M, T, gelu=True)
    q = pass_cycles(g, D, D, T)
    assert fc1.steps == loop and q.steps == T * (D // tout) * (D // tin)
    # the stage is the engine's RTL-checked pass: the steps plus a short fill/drain only
    assert st["l0.fc1"].compute_cycles == fc1.cycles and 0 < fc1.cycles - loop < 100
    assert st["l0.q"].compute_cycles == q.cycles and 0 < q.cycles - q.steps < 100
    assert st["l0.fc1"].macs == T * D * M


def test_weight_bytes_are_the_weight_files_sizes(tiny_cfg, edge_cfg):
    for cfg in (tiny_cfg, edge_cfg):
        shapes = expected_shapes(cfg)
        size = {n: int(np.prod(s)) for n, s in shapes.items()}
        want = 2 * sum(v for n, v in size.items() if n not in ("pos_embed", "moe_w_gate_per_task"))
        want += 4 * size["pos_embed"]  # fm_t
        want += 2 * size["moe_w_gate_per_task"] // cfg.num_tasks  # one task's gates
        # uniform routing uses every expert, so every weight is fetched exactly once
        assert sum(s.weight_bytes for s in cm.stages(cfg, 1)) == want
        assert sum(s.weight_bytes for s in cm.stages(cfg, 8)) == want


def test_batched_schedule_fetches_weights_once_and_scales_compute(edge_cfg):
    per_image = cm.uniform_routing(edge_cfg, 1)
    one = cm.stages(edge_cfg, 1, per_image)
    eight = cm.stages(edge_cfg, 8, {L: 8 * c for L, c in per_image.items()})
    dense = [(a, b) for a, b in zip(one, eight) if a.kind not in ("expert",)]
    assert len(dense) == len([s for s in one if s.kind != "expert"])
    for a, b in dense:
        assert a.name == b.name and a.weight_bytes == b.weight_bytes
        if a.kind in ("attention", "layernorm", "residual", "gate", "zero"):
            assert b.compute_cycles == 8 * a.compute_cycles
    # experts: each expert's weights once per batch, its tokens x 8
    e1 = {s.name: s for s in one if s.kind == "expert"}
    for s in eight:
        if s.kind == "expert":
            assert s.weight_bytes == e1[s.name].weight_bytes and s.macs == 8 * e1[s.name].macs


def test_unused_experts_are_never_fetched(tiny_cfg):
    cfg = tiny_cfg
    counts = np.zeros(cfg.num_experts, dtype=np.int64)
    counts[0] = counts[2] = cfg.tokens  # every token picks experts 0 and 2
    st = cm.stages(cfg, 1, {cfg.moe_layers[0]: counts})
    names = {s.name for s in st if s.kind == "expert"}
    L = cfg.moe_layers[0]
    assert names == {f"l{L}.e0.fc1", f"l{L}.e0.fc2", f"l{L}.e2.fc1", f"l{L}.e2.fc2"}
    full = sum(s.weight_bytes for s in cm.stages(cfg, 1))
    per_expert = 2 * (2 * cfg.dim * cfg.expert_hidden + cfg.expert_hidden + cfg.dim)
    assert full - sum(s.weight_bytes for s in st) == 2 * per_expert


def test_routing_errors_name_the_problem(tiny_cfg):
    with pytest.raises(ConfigError, match="summing to batch x tokens x top_k"):
        cm.stages(tiny_cfg, 1, {1: np.ones(tiny_cfg.num_experts, dtype=int)})
    with pytest.raises(ConfigError, match="MoE layers are"):
        cm.stages(tiny_cfg, 1, {0: np.ones(4)})
    with pytest.raises(ConfigError, match="routing 'worst'"):
        cm.run(tiny_cfg, 1, "worst")


def test_edge_moe_compute_matches_the_spec_ideal_cycle_count(edge_cfg):
    # spec §11: all loops at II=1, trip counts from the code: ~5.44 M cycles = 18.1 ms
    compute = sum(s.compute_cycles for s in cm.stages(edge_cfg, 1))
    assert abs(compute - 5.44e6) / 5.44e6 < 0.02


def test_encoder_gop_is_the_spec_figure(edge_cfg):
    assert cm.encoder_gop(edge_cfg) == pytest.approx(1.565, abs=5e-4)
    macs = sum(s.macs for s in cm.stages(edge_cfg, 1))  # uniform: top_k experts per token
    assert 2 * macs / 1e9 == pytest.approx(cm.encoder_gop(edge_cfg), rel=1e-12)


def test_dram_model_zcu104():
    d = DramModel.from_config(preset("zcu104"))
    assert d.bytes_per_cycle == pytest.approx(17.064e9 * 0.7 / 300e6) and d.limit == "ddr"
    one = DramModel.from_config(preset("zcu104").replace(mem_ports=1))
    assert one.bytes_per_cycle == 16 and one.limit == "hp ports"  # 128-bit port at 300 MHz


def test_infinite_bandwidth_is_compute_bound_and_starved_is_memory_bound(tiny_cfg):
    fast = tiny_cfg.replace(dram_efficiency=1.0, dram_peak_gbs=1e6, mem_ports=1000)
    r = cm.run(fast, 1)
    assert all(t.bound == "compute" for t in r.times[1:])
    slow = tiny_cfg.replace(dram_efficiency=0.001)
    rs = cm.run(slow, 1)
    lin = [t for t in rs.times if t.stage.kind in ("linear", "expert")]
    assert all(t.bound == "memory" for t in lin)
    assert rs.cycles > r.cycles
    # with DRAM starved every byte crosses at the DRAM rate: time >= bytes / bandwidth
    bw = DramModel.from_config(slow).bytes_per_cycle
    assert rs.cycles >= rs.dram_bytes / bw - 1e-6


def test_weight_prefetch_overlaps_compute(edge_cfg):
    on = edge_cfg.replace(activations_on_chip=True)
    r = cm.run(on, 1)
    # on chip, 35 MB of weights at ~40 B/cycle would take ~0.9 M cycles if serialised; the
    # prefetch into the free ping/pong buffer hides almost all of it behind compute
    compute = sum(t.compute_cycles for t in r.times)
    serial = compute + r.dram_bytes / DramModel.from_config(on).bytes_per_cycle
    assert r.cycles < compute + 0.1 * (serial - compute)


def test_activations_on_chip_removes_activation_traffic(edge_cfg):
    off = cm.stages(edge_cfg, 1)
    on = cm.stages(edge_cfg.replace(activations_on_chip=True), 1)
    img = edge_cfg.image_channels * edge_cfg.image_height * edge_cfg.image_width
    out = edge_cfg.tokens * edge_cfg.dim * 4
    assert sum(s.act_bytes for s in on) == img + out
    # off chip, the attention re-reads K (and V) once per query block
    qk = _by_name(off)["l0.qk_softmax"]
    assert qk.act_bytes >= edge_cfg.query_blocks * edge_cfg.tokens * edge_cfg.dim * 4


def test_overlapped_what_if_is_bounded_by_the_busiest_unit_and_the_sequential_time():
    cfg = preset("zcu104")
    one, many = cm.run(cfg, 1), cm.run(cfg, 8)
    assert cm.overlapped_cycles(one, one) == pytest.approx(one.cycles)  # nothing to overlap
    ov = cm.overlapped_cycles(many, one)
    linear = sum(t.compute_cycles for t in many.times
                 if cm.KINDS[t.stage.kind] == "linear engine")
    assert linear < ov < many.cycles
