"""Build ``moevit_top`` (the sequenced core) for a simulator and run a top testbench on it."""

from __future__ import annotations

from moevit import tools
from moevit.config import AcceleratorConfig
from moevit.hw.top.wrapper import TOP_NAME, top_verilog_file
from moevit.sim.runner import build_simulator, run_built

UNIT = "top"


def run_top(cfg: AcceleratorConfig, test_module: str = "moevit.sim.tb_top_e2e", *,
            sim: str = "verilator", params: dict | None = None, waves: bool = False,
            testcase: str | None = None) -> dict:
    """Run a cocotb testbench on ``moevit_top`` for ``cfg`` (the cocotbext-axi harness by
    default); returns its metrics."""
    tools.require_simulator(sim)
    bdir = build_simulator(top_verilog_file(cfg), TOP_NAME, sim=sim, waves=waves)
    return run_built(bdir, cfg, UNIT, test_module, sim=sim, params=params, waves=waves,
                     toplevel=TOP_NAME, testcase=testcase)
