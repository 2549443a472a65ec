"""The AXI4 burst masters in RTL simulation against cocotbext-axi's AxiRam
(sim/tb_top_axi.py): data, burst legality, range, nothing outstanding, and beats/cycle."""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.hw.top.axi_master import AxiMasterPort
from moevit.sim.runner import run_testbench

pytestmark = pytest.mark.rtl

#: beats/cycle a read or a write must reach with no back-pressure (target 1.0)
MIN_RATE = 0.95


def test_axi_masters_rtl():
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    m = run_testbench(lambda: AxiMasterPort(cfg, max_outstanding=4), cfg, unit="top_axi_port",
                      test_module="moevit.sim.tb_top_axi",
                      params={"seed": 3, "max_outstanding": 4, "pause": 0.3,
                              "rate_beats": 1024})
    assert m["read_beats"] > 1000 and m["write_beats"] > 1000
    # every descriptor over 128 beats (4 KiB of 256-bit beats) needs several bursts
    assert m["ar_bursts"] > 10 and m["aw_bursts"] > 10
    assert m["max_outstanding_reads"] > 1
    assert m["read_beats_per_cycle"] >= MIN_RATE, m
    assert m["write_beats_per_cycle"] >= MIN_RATE, m
    assert m["misaligned_flagged"]
    assert m["address_stall_bursts"] > 40
