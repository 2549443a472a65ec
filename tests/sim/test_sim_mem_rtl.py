"""The simulated DRAM (sim/mem/moevit_sim_mem.v) in RTL simulation: behind the copy test top
with the real AXI burst masters (sim/tb_mem_top.py)."""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.sim.mem.copy_top import COPY_TOP, CopyTop
from moevit.sim.mem.top import SimMemSpec, build_sim_top
from moevit.sim.runner import run_built

pytestmark = pytest.mark.rtl

#: beats/cycle each port must reach with no stalls (target 1.0; a copy's first read latency
#: and the last write response are the only gaps)
MIN_RATE = 0.95


def _run(cfg, mem, params, testcase=None, sim="verilator"):
    bdir, top = build_sim_top(CopyTop(cfg).verilog(), COPY_TOP, cfg, "sim_mem_copy", mem=mem,
                              sim=sim)
    return run_built(bdir, cfg, "sim_mem_copy", "moevit.sim.tb_mem_top", toplevel=top,
                     sim=sim, params={"words_log2": mem.words_log2, **params},
                     testcase=testcase)


def test_sim_mem_copy_verilator():
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    m = _run(cfg, SimMemSpec(words_log2=21), {"stall": 77, "latency": 23, "beats": 384,
                                             "rate_beats": 4096})
    assert m["ports"] == cfg.mem_ports
    assert m["rate_beats_per_cycle_per_port"] >= MIN_RATE, m
    assert m["out_of_range_flagged"]
