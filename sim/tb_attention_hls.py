"""Run the attention cocotb testbench (:mod:`moevit.sim.tb_attention`, ``style="hls"``) on
Verilog exported by Vitis HLS from ``hw/hls/attention.cpp`` (top ``moevit_attention``:
``ap_clk``, ``ap_rst_n``, ``ap_start``/``ap_ready``/``ap_done``, ``mode``, AXI4-Stream ports
``<name>_TDATA/_TVALID/_TREADY``).

Vitis HLS is not available in CI, so this path is exercised only when a user points
``MOEVIT_HLS_VERILOG`` at ``<project>/solution1/impl/verilog`` (see docs/attention.md).
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from moevit.config import AcceleratorConfig
from moevit.sim import runner, tools

HLS_TOPLEVEL = "moevit_attention"


def run_hls_verilog(sources: list[Path], cfg: AcceleratorConfig, *, sim: str = "verilator",
                    **params) -> dict:
    """Build ``sources`` and run the attention testbench in HLS style; returns its metrics."""
    from cocotb_tools.runner import get_runner

    bdir = runner.build_simulator([Path(s) for s in sources], HLS_TOPLEVEL, sim=sim)
    run_dir = runner.unit_dir(cfg, "attention_hls") / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    p = {"style": "hls", "seed": 1, "p_valid": 0.7, "p_ready": 0.7, **params}
    (run_dir / "params.json").write_text(json.dumps(p))
    (run_dir / "config.pkl").write_bytes(pickle.dumps(cfg))
    env = {runner.ENV_PARAMS: str(run_dir / "params.json"),
           runner.ENV_CONFIG: str(run_dir / "config.pkl"),
           runner.ENV_METRICS: str(run_dir / "metrics.json"), runner.ENV_SIM: sim}
    results = run_dir / "results.xml"
    with tools.simulator_environment():
        get_runner(sim).test(test_module="moevit.sim.tb_attention", hdl_toplevel=HLS_TOPLEVEL,
                             hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=run_dir,
                             results_xml=str(results), extra_env=env,
                             timescale=runner.TIMESCALE, log_file=run_dir / "sim.log")
    tests, failed = runner._failures(results)
    if failed or not tests:
        raise runner.SimulationError(f"HLS attention testbench failed: {failed or 'no tests'}")
    return json.loads((run_dir / "metrics.json").read_text())
