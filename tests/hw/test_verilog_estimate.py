"""Yosys resource estimates: stat parsing, and a real synth_xilinx run on a small unit."""

import warnings

import pytest

from moevit.config import preset
from moevit.errors import ToolNotFoundError
from moevit.hw.verilog import parse_stat, summarise, write_verilog, yosys_estimate
from moevit.sim.tools import find_yosys
from moevit.sim.units import get_unit

STAT = """
=== design hierarchy ===
   Number of wires:                 10
   Number of cells:                 12
     CARRY4                          2
     DSP48E2                         3
     FDRE                           40
     FDSE                            2
     INV                             1
     LUT2                            5
     LUT6                            7
     RAM32M                          4
     RAMB18E2                        1
     RAMB36E2                        2
     SRL16E                          1

"""


def test_parse_and_summarise_stat():
    cells = parse_stat("junk\n   Number of cells:  3\n     LUT1   1\n" + STAT)
    assert cells["FDRE"] == 40 and cells["RAMB36E2"] == 2 and "LUT1" not in cells
    s = summarise(cells)
    assert s["FF"] == 42
    assert s["LUT"] == 1 + 5 + 7 + 4 + 1  # INV, logic LUTs, LUTRAM, SRL
    assert s["DSP48E2"] == 3 and s["BRAM36"] == 2.5 and s["CARRY"] == 2


def test_yosys_estimate_of_the_delay_unit(tmp_path):
    try:
        find_yosys()
    except ToolNotFoundError as exc:
        pytest.skip(str(exc))
    cfg = preset("edge-moe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = write_verilog(get_unit("delay").build(cfg, stages=3), tmp_path / "d.v", "delay")
    res = yosys_estimate(v, "delay", log=tmp_path / "d.log")
    # 3 stages x (32 data + 1 valid) registers, no arithmetic
    assert res["FF"] == 3 * 33
    assert res["DSP48E2"] == 0 and res["BRAM36"] == 0
