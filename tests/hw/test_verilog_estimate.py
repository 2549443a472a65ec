"""Yosys resource estimates: stat parsing, and a real synth_xilinx run on a small unit."""

import warnings
from pathlib import Path

import pytest

from moevit.config import preset
from moevit.errors import ToolNotFoundError
from moevit.hw.verilog import (cached_yosys_estimate, parse_sta, parse_stat, summarise,
                               write_verilog,
                               yosys_estimate)
from moevit.tools import find_yosys
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


def test_yosys_estimate_of_the_delay_unit(tmp_path, monkeypatch):
    try:
        find_yosys()
    except ToolNotFoundError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path / "build"))  # a cold yosys cache
    cfg = preset("edge-moe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = write_verilog(get_unit("delay").build(cfg, stages=3), tmp_path / "d.v", "delay")
    res = yosys_estimate(v, "delay", log=tmp_path / "d.log")
    # 3 stages x (32 data + 1 valid) registers, no arithmetic
    assert res["FF"] == 3 * 33
    assert res["DSP48E2"] == 0 and res["BRAM36"] == 0
    # cached per Verilog text/top/family: same result (and log) without running yosys again
    assert cached_yosys_estimate(v, "delay", family="xc7") is None
    v2 = tmp_path / "copy" / "d.v"
    v2.parent.mkdir()
    v2.write_text(v.read_text())
    assert yosys_estimate(v2, "delay", log=tmp_path / "d2.log") == res
    assert (tmp_path / "d2.log").read_text() == (tmp_path / "d.log").read_text()


STA = """
4. Executing STA pass (static timing analysis).
Warning: Module 'CARRY4' has no timing arcs!
Latest arrival time in 'u' is 1522:
    1522 (<unknown>)
Warning: Critical-path does not terminate in a recognised endpoint.
           $abc$1$aiger$15538b
    1522 $auto$abc9$103207 (LUT4.I2->O)
           $techmap106281.A [2]
    1030 $abc$lut$15504 (LUT5.I0->O)
           \\recip_den_s46 [31]
     399 $auto$ff.cc:266:slice$14121 (FDRE.C->Q)
           $abc$102035$iopadmap$clk
      96 $auto$clkbufmap.cc:261:execute$111895 (BUFG.I->O)
           $auto$clkbufmap.cc:262:execute$111896
       0 $iopadmap$recip.clk (IBUF.I->O)
       0   \\clk (<primary input>)

Arrival histogram:
"""


def test_parse_sta_path():
    r = parse_sta(STA)
    assert r == {"sta_ps": 1522, "sta_from": "\\recip_den_s46 [31]",
                 "sta_to": "$abc$1$aiger$15538b", "sta_luts": 2}
    with pytest.raises(ValueError, match="no `sta` report"):
        parse_sta("no timing here")


def test_yosys_script_boxes_modules_only_when_asked(tmp_path):
    from moevit.hw.verilog import _cache_dir, _yosys_script
    plain = _yosys_script(Path("d.v"), "top", "xcup")
    assert plain == "read_verilog -sv d.v; synth_xilinx -family xcup -top top -flatten -abc9; stat; sta"
    boxed = _yosys_script(Path("d.v"), "top", "xcup", ("\\top.linear", "\\top.attention"))
    assert "blackbox \\top.linear \\top.attention; hierarchy -top top; synth_xilinx" in boxed
    v = tmp_path / "d.v"
    v.write_text("module top; endmodule\n")
    assert _cache_dir(v, "top", "xcup", "yosys") != _cache_dir(v, "top", "xcup", "yosys",
                                                               ("\\top.linear",))


def test_top_core_boxes_the_units_present(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "synth_top_core", Path(__file__).resolve().parents[2] / "scripts" / "synth_top_core.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v = tmp_path / "top.v"
    v.write_text("module moevit_top; endmodule\nmodule \\moevit_top.linear (a);\nendmodule\n"
                 "module \\moevit_top.linear.gelu0 ; endmodule\nmodule \\moevit_top.control ;\n")
    assert mod.unit_modules(v) == ("\\moevit_top.linear",)
