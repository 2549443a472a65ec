"""Elaboration-level checks of the arithmetic units (no simulator needed)."""

import pytest

from moevit.config import FixedFormat, Formats, preset
from moevit.errors import ConfigError
from moevit.hw.units.common import silence
from moevit.hw.units.softmax import MIN_INTERLEAVE, OnlineSoftmax
from moevit.hw.verilog import verilog_text
from moevit.sim.units import UNITS, get_unit, unit_latency

CFG = preset("edge-moe")
ARITH = ["exp", "gelu", "recip", "div", "sqrt", "rsqrt", "softmax"]


@pytest.mark.parametrize("unit", ARITH)
def test_unit_elaborates_with_stream_ports(unit):
    comp = get_unit(unit).build(CFG)
    text = verilog_text(comp, unit)
    for port in ("i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload"):
        assert port in text
    assert comp.latency >= 1


def test_registry_lists_the_issue_units():
    assert set(ARITH) <= set(UNITS)
    with pytest.raises(ConfigError, match="unknown unit 'nope'; known units: .*exp"):
        get_unit("nope")


def test_divider_depths_follow_the_format():
    # one stage per quotient bit: div has W+F numerator bits, recip 2F+1
    assert unit_latency("div", CFG) == 32 + 22 + 3
    assert unit_latency("recip", CFG) == 2 * 22 + 1 + 3


def test_softmax_rejects_too_few_rows_for_full_rate():
    with pytest.raises(ConfigError, match=rf"needs >= {MIN_INTERLEAVE} interleaved rows.*"
                                          r"full_rate=False"):
        OnlineSoftmax(CFG, rows=MIN_INTERLEAVE - 1)
    for rows, kw in [(3, {"rows": 3, "full_rate": False}), (16, {})]:
        comp = OnlineSoftmax(CFG, **kw)
        silence(comp)
        assert comp.rows == rows
    assert CFG.attn_parallel * CFG.head_lanes == 16


def test_exp_refuses_other_formats():
    cfg = CFG.replace(name="fm24", formats=Formats(fm=FixedFormat(24, 8)), axi_width=192,
                      layernorm_eps=2.0 ** -16)  # eps must be >= one ULP of the format
    with pytest.raises(ConfigError, match=r"ap_fixed<32,10> only"):
        get_unit("exp").build(cfg)
