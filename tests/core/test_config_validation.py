"""Every AcceleratorConfig field is validated with a message naming the field, the value and
what is allowed; messages are matched whole (anchored), so a changed wording fails here."""

import math

import numpy as np
import pytest

from moevit.config import (ATTN_PARALLEL_SUPPORTED, FixedFormat, Formats, PRESETS, preset)
from moevit.errors import ConfigError

E = r"^config 'edge-moe': "


@pytest.mark.parametrize("changes, pattern", [
    (dict(attn_parallel=16), E + r"attn_parallel 16 is not supported; the attention unit has "
                                 r"1, 2, 4, 8 query lanes$"),
    (dict(attn_parallel=0), E + r"attn_parallel must be >= 1 \(got 0\)$"),
    (dict(gelu_table_entries=0), E + r"gelu_table_entries 0 must be >= 2 \(interpolation needs "
                                     r"two neighbouring entries\)$"),
    (dict(gelu_table_entries=10 ** 6), E + r"gelu_table_entries 1000000 puts the table cut-off "
                                           r"31250 beyond the largest ap_fixed<32,10> value 512; use fewer entries$"),
    (dict(gelu_table_step_log2=23), E + r"gelu_table_step_log2 23 must be in 0\.\.22 "),
    (dict(gelu_table_step_log2=-1), E + r"gelu_table_step_log2 -1 must be in 0\.\.22 "),
    (dict(layernorm_eps=-1), E + r"layernorm_eps -1 must be a positive number$"),
    (dict(layernorm_eps=0.0), E + r"layernorm_eps 0\.0 must be a positive number$"),
    (dict(layernorm_eps=math.nan), E + r"layernorm_eps nan must be a positive number$"),
    (dict(layernorm_eps=1e-9), E + r"layernorm_eps 1e-09 is below one ap_fixed<32,10> ULP "
                                   r"\(2\.38419e-07\) and would floor to 0; use at least "),
    (dict(layernorm_eps=1e4), E + r"layernorm_eps 10000\.0 exceeds the largest ap_fixed<32,10> "),
    (dict(clock_mhz=0), E + r"clock_mhz 0 must be a number in \(0, 1000\.0\] MHz$"),
    (dict(clock_mhz=-300.0), E + r"clock_mhz -300\.0 must be a number in \(0, 1000\.0\] MHz$"),
    (dict(clock_mhz=5000), E + r"clock_mhz 5000 must be a number in \(0, 1000\.0\] MHz$"),
    (dict(clock_mhz="300"), E + r"clock_mhz '300' must be a number in \(0, 1000\.0\] MHz$"),
    (dict(dim=192.0), E + r"dim must be a whole number \(got 192\.0\)$"),
    (dict(depth=True), E + r"depth must be a whole number \(got True\)$"),
    (dict(top_k=0), E + r"top_k must be >= 1 \(got 0\)$"),
    (dict(num_tasks=0), E + r"num_tasks must be >= 1 \(got 0\)$"),
    (dict(moe_layers=[1, 3]), E + r"moe_layers must be a tuple of layer numbers \(got \[1, 3\]\)$"),
    (dict(moe_layers=(3, 1)), E + r"moe_layers \(3, 1\) must be strictly increasing$"),
    (dict(fpga_part=""), E + r"fpga_part must be a non-empty string \(got ''\)$"),
    (dict(board=None), E + r"board must be a non-empty string \(got None\)$"),
    (dict(formats=Formats(fm=FixedFormat(32, 10, signed=False))),
     E + r"formats\.fm ap_ufixed<32,10> must be signed \(feature maps are signed\)$"),
    (dict(formats=Formats(pixel=FixedFormat(8, 1))),
     E + r"formats\.pixel ap_fixed<8,1> must be unsigned \(pixel/256\)$"),
    (dict(formats=Formats(wt_bias=(16, 5))),
     E + r"formats\.wt_bias must be a FixedFormat\(width, int_bits, signed\), not \(16, 5\)$"),
    (dict(formats={"fm": 1}), E + r"formats must be a moevit\.config\.Formats, not dict$"),
])
def test_every_field_is_checked(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        preset("edge-moe").replace(**changes)


@pytest.mark.parametrize("args, pattern", [
    ((0, 0), r"^fixed-point width 0 is outside 1\.\.64$"),
    ((65, 10), r"^fixed-point width 65 is outside 1\.\.64$"),
    ((16, 17), r"^int_bits 17 exceeds width 16$"),
    ((16.0, 2), r"^fixed-point width must be a whole number, not 16\.0$"),
    ((16, 2, 1), r"^fixed-point signed must be True or False, not 1$"),
])
def test_fixed_format_checks(args, pattern):
    with pytest.raises(ConfigError, match=pattern):
        FixedFormat(*args)


@pytest.mark.parametrize("p", ATTN_PARALLEL_SUPPORTED)
def test_supported_lanes_and_numpy_ints_are_accepted(p):
    c = preset("tiny").replace(attn_parallel=np.int64(p), clock_mhz=np.float32(250.0))
    assert c.attn_parallel == p


def test_vit_s_is_a_float_preset_only():
    with pytest.raises(ConfigError, match=r"^preset 'vit-s' exists only for the float model "
                                          r"\(float_preset\('vit-s'\) in moevit\.golden\.float\."
                                          r"model\): its head dim 32 is not a power of 4"):
        preset("vit-s")
    from moevit.golden.float.model import float_preset
    assert float_preset("vit-s").head_dim == 32  # the float model does have it
    assert "vit-s" not in PRESETS


def test_preset_typo_suggests_the_name():
    with pytest.raises(ConfigError, match=r"^unknown preset 'edge_moe' \(did you mean "
                                          r"'edge-moe'\?\); valid presets: edge-moe, tiny, zcu104$"):
        preset("edge_moe")


def test_presets_still_valid():
    for name in PRESETS:
        assert preset(name).name == name
