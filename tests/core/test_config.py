"""AcceleratorConfig: presets, derived geometry, validation messages."""
import dataclasses

import pytest

from moevit.config import PRESETS, AcceleratorConfig, FixedFormat, preset
from moevit.errors import ConfigError


def test_edge_moe_matches_spec_hyper_parameters(edge_cfg):
    c = edge_cfg
    assert (c.tokens, c.dim, c.heads, c.head_dim, c.depth) == (129, 192, 3, 64, 12)
    assert (c.mlp_hidden, c.num_experts, c.top_k, c.expert_hidden) == (768, 16, 2, 384)
    assert c.moe_layers == (1, 3, 5, 7, 9, 11) and c.dense_layers == (0, 2, 4, 6, 8, 10)
    assert c.attn_scale_shift == 3  # 0.125 = 64^-0.5
    assert c.feature_blocks == 24 and c.query_blocks == 33  # qxk_out_t[33]
    assert c.head_lanes == 4 and c.softmax_info_width == 8
    assert c.layernorm_eps_raw == 4  # fm_t(1e-6) = 4 * 2^-22 (spec §3.2)
    assert str(c.formats.fm) == "ap_fixed<32,10>" and c.formats.fm.frac == 22
    assert str(c.formats.pixel) == "ap_ufixed<8,0>"
    assert c.fpga_part == "xczu9eg-ffvb1156-2-e" and c.clock_mhz == 300


def test_zcu104_differs_only_in_board_and_parallelism():
    a, b = preset("edge-moe"), preset("zcu104")
    diff = {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}
    # the model and numerics are Edge-MoE's; P changes only the softmax visiting order
    assert diff <= {"name", "fpga_part", "board", "linear_tile_in", "linear_tile_out",
                    "attn_parallel", "activations_on_chip"}
    assert b.fpga_part == "xczu7ev-ffvc1156-2-e"


@pytest.mark.parametrize("field,value,match", [
    ("mem_ports", 0, "mem_ports must be >= 1"),
    ("hp_port_width", 256, "hp_port_width 256 must be 32, 64 or 128"),
    ("dram_peak_gbs", 0.0, "dram_peak_gbs 0.0 must be positive"),
    ("dram_efficiency", 1.5, r"dram_efficiency 1.5 must be in \(0, 1\]"),
    ("dram_efficiency", 0.0, r"dram_efficiency 0.0 must be in \(0, 1\]"),
])
def test_memory_fields_are_validated(field, value, match):
    with pytest.raises(ConfigError, match=match):
        preset("zcu104").replace(**{field: value})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_hash_stably(name):
    c = preset(name)
    assert c.digest == preset(name).digest and len(c.digest) == 12
    assert c.tokens == c.grid_h * c.grid_w + 1


def test_digests_differ_between_presets():
    assert len({preset(n).digest for n in PRESETS}) == len(PRESETS)


@pytest.mark.parametrize("name,height,p,blocks", [
    ("edge-moe", 128, 4, 33), ("edge-moe", 128, 1, 129), ("edge-moe", 128, 8, 17),
    ("tiny", 32, 4, 3), ("tiny", 32, 2, 5), ("tiny", 32, 8, 2), ("tiny", 48, 4, 4),
])
def test_query_blocks_cover_wrapped_tails(name, height, p, blocks):
    c = preset(name).replace(image_height=height, attn_parallel=p)
    # every row q lives in block q // P; rows of lanes >= 1 wrap their key tails into the next block
    last_block_needed = max(q // p + (1 if q % p else 0) for q in range(c.tokens))
    assert c.query_blocks == last_block_needed + 1 == blocks


@pytest.mark.parametrize("changes,pattern", [
    (dict(dim=200), r"dim 200 is not a multiple of the 16-wide linear tile"),
    (dict(dim=192, heads=4), r"head dim 48 must be a power of 4"),
    (dict(heads=5), r"dim 192 is not divisible by heads 5"),
    (dict(image_width=250), r"image 128x250 is not a multiple of patch size 16"),
    (dict(top_k=17), r"top_k 17 must be in 1..num_experts \(16\)"),
    (dict(moe_layers=(1, 12)), r"MoE layer 12 is outside 0..11"),
    (dict(attn_parallel=3), r"attn_parallel 3 is not supported; the attention unit has 1, 2, 4, 8"),
    (dict(axi_width=512), r"axi_width 512 must equal feature_block 8 x fm width 32"),
])
def test_invalid_configs_say_what_is_wrong(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        preset("edge-moe").replace(**changes)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'zcu102'.*edge-moe.*tiny"):
        preset("zcu102")


def test_fixed_format_ranges():
    f = FixedFormat(16, 2)
    assert (f.frac, f.min, f.max) == (14, -2.0, 2.0 - 2 ** -14)
    u = FixedFormat(8, 0, signed=False)
    assert (u.raw_min, u.raw_max, u.max) == (0, 255, 255 / 256)
    with pytest.raises(ConfigError, match="int_bits 20 exceeds width 16"):
        FixedFormat(16, 20)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("edge-moe").dim = 10  # type: ignore[misc]
    assert isinstance(preset("tiny"), AcceleratorConfig)
