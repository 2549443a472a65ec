"""The AXI4-Lite control block in RTL simulation (cocotb + cocotbext-axi on Verilator):
every register by its regmap offset, AW/W skew, the ap_ctrl_hs handshake with a fake core,
clear-on-read, interrupts (sim/tb_top_control.py)."""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.hw.top.control import AxiLiteControl
from moevit.regmap import REGMAP
from moevit.sim.runner import run_testbench

pytestmark = pytest.mark.rtl


def test_control_block_rtl():
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    m = run_testbench(lambda: AxiLiteControl(cfg), cfg, unit="top_control",
                      test_module="moevit.sim.tb_top_control", params={"seed": 7, "run_cycles": 12})
    words = REGMAP.words()
    writable = [w for r in REGMAP.registers if r.access != "read-only" and r.offset >= 0x10
                for w, _ in r.words()]
    assert m["words_checked"] >= len(writable)
    assert m["reserved_checked"] > 0
    assert m["first_run_cycles"] == 12 + 1
    assert m["runs"] >= 5
    assert m["skewed_writes"] >= 7
    assert len(words) > 50
