"""Run the attention cocotb testbench (:mod:`moevit.sim.tb_attention`, ``style="hls"``) on
Verilog exported by Vitis HLS from ``hw/hls/attention.cpp`` (top ``moevit_attention``:
``ap_clk``, ``ap_rst_n``, ``ap_start``/``ap_ready``/``ap_done``, ``mode``, AXI4-Stream ports
``<name>_TDATA/_TVALID/_TREADY``).

Vitis HLS is not available in CI, so this path is exercised only when a user points
``MOEVIT_HLS_VERILOG`` at ``<project>/solution1/impl/verilog`` (see docs/attention.md).
"""

from __future__ import annotations

from pathlib import Path

from moevit.config import AcceleratorConfig
from moevit.sim import runner

HLS_TOPLEVEL = "moevit_attention"


def run_hls_verilog(sources: list[Path], cfg: AcceleratorConfig, *, sim: str = "verilator",
                    **params) -> dict:
    """Build ``sources`` and run the attention testbench in HLS style; returns its metrics
    (raises :class:`moevit.sim.runner.SimulationError` as :func:`runner.run_testbench`)."""
    # the build goes under build/<digest>/attention_hls/, keyed by the files' content (a
    # re-export under the same names gets a fresh build), never into the user's HLS folder
    bdir = runner.build_simulator([Path(s) for s in sources], HLS_TOPLEVEL, sim=sim,
                                  build_parent=runner.unit_dir(cfg, "attention_hls"))
    p = {"style": "hls", "seed": 1, "p_valid": 0.7, "p_ready": 0.7, **params}
    return runner.run_built(bdir, cfg, "attention_hls", "moevit.sim.tb_attention", sim=sim,
                            params=p, toplevel=HLS_TOPLEVEL)
