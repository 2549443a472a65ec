"""MoE gate (spec §4.6): geometry and config errors, the cycle model, the split-product
identity the logit MAC relies on, and elaboration for every preset (no simulator needed)."""

import numpy as np
import pytest

from moevit.config import FixedFormat, Formats, preset
from moevit.errors import ConfigError
from moevit.golden.fixed import floor_shift, wrap32
from moevit.hw.units.moe_gate import gate_model
from moevit.hw.units.moe_gate_geometry import SUM_LOOP_STAGES, MoeGateGeometry


def _model(cfg):
    return gate_model(cfg)


def test_edge_moe_geometry():
    g = MoeGateGeometry.from_config(preset("edge-moe"))
    assert (g.tokens, g.experts, g.top_k, g.feature_blocks) == (129, 16, 2, 24)
    assert g.weight_beats == 16 * 192 // 16 == 192        # [E][dim] int16, 16 per beat
    assert g.ideal_cycles == 129 * 24
    assert g.multipliers == 16 * 8                         # E x feature_block per clock
    assert g.slots == SUM_LOOP_STAGES == 4
    assert g.buffer_tokens & (g.buffer_tokens - 1) == 0 and g.buffer_tokens >= 2 * g.slots
    assert g.queue_words == 16 * (129 + 1)   # spec §6.3: 16 x 129 entries, + 1 spare each


@pytest.mark.parametrize("name", ["tiny", "edge-moe", "zcu104"])
def test_cycle_model_keeps_one_block_per_clock(name):
    cfg = preset(name)
    m = _model(cfg)
    g = MoeGateGeometry.from_config(cfg)
    assert m["input_stall_cycles"] == 0                   # x never waits for the scan
    assert m["input_cycles"] == g.ideal_cycles
    assert m["cycles"] == m["input_cycles"] + m["tail_cycles"]
    # the tail is the last group's scan plus fixed latencies, independent of T
    assert m["tail_cycles"] < g.experts * g.slots + 200


def test_cycle_model_edge_moe_numbers():
    m = _model(preset("edge-moe"))
    assert m["ideal_cycles"] == 3096
    assert 0.9 < m["blocks_per_cycle"] < 1.0


def test_cycle_model_stalls_when_experts_exceed_blocks():
    """E > dim/8: the scan (E x slots cycles per group) is slower than the input, which
    then runs at about dim/8 / E blocks per clock once the logit buffer is full."""
    cfg = preset("edge-moe").replace(num_experts=32)
    m = _model(cfg)
    assert m["input_stall_cycles"] > 0
    assert m["input_cycles"] == pytest.approx(cfg.tokens * 32, rel=0.1)


def test_split_product_identity():
    """floor(x·w / 2^14) = floor(((x >> 5)·w + floor((x mod 2^5)·w / 2^5)) / 2^9): the DSP
    half (27-bit x >> 5) and the floored 5-bit LUT half of the logit MAC, exact over the
    format extremes (numpy's floor of the full product is the reference)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-2**31, 2**31, 20000), [-2**31, 2**31 - 1, 0, -1, 1, 31]])
    w = np.concatenate([rng.integers(-2**15, 2**15, 20000), [-2**15, 2**15 - 1, 0, -1, 1, -1]])
    full = wrap32(floor_shift(x * w, 14))
    split = wrap32(floor_shift((x >> 5) * w + floor_shift((x & 31) * w, 5), 9))
    assert np.array_equal(full, split)


def test_rejects_other_fm_format():
    cfg = preset("tiny").replace(formats=Formats(fm=FixedFormat(24, 8)), axi_width=192,
                                 layernorm_eps=2.0 ** -16)  # eps >= one ULP of the format
    with pytest.raises(ConfigError, match=r"fm_t must be ap_fixed<32,10>"):
        MoeGateGeometry.from_config(cfg)


def test_rejects_weight_beats_that_do_not_hold_whole_blocks():
    cfg = preset("tiny").replace(formats=Formats(wt_linear=FixedFormat(12, 2)))
    with pytest.raises(ConfigError, match=r"not a multiple of the 12-bit gate weight"):
        MoeGateGeometry.from_config(cfg)


def test_component_constructor_raises_config_error():
    from moevit.hw.units.moe_gate import MoeGate
    cfg = preset("tiny").replace(formats=Formats(fm=FixedFormat(24, 8)), axi_width=192,
                                 layernorm_eps=2.0 ** -16)  # eps >= one ULP of the format
    with pytest.raises(ConfigError, match="MoE gate"):
        MoeGate(cfg)


def test_elaborates_tiny():
    from moevit.hw.units.moe_gate import MoeGate
    from moevit.hw.verilog import verilog_text
    text = verilog_text(MoeGate(preset("tiny")), "moe_gate")
    assert "module moe_gate" in text
