"""Build ``moevit_top`` (the sequenced core) for a simulator and run a top testbench on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from moevit import tools
from moevit.config import AcceleratorConfig
from moevit.hw.top.wrapper import TOP_NAME, MoevitTop, top_verilog
from moevit.sim.runner import build_simulator, run_built, unit_dir

UNIT = "top"


def top_verilog_file(cfg: AcceleratorConfig) -> Path:
    """The exported top's Verilog under build/, named by its content hash (cached)."""
    d = unit_dir(cfg, UNIT)
    d.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{cfg.digest}|{_sources_key()}".encode()).hexdigest()[:12]
    vfile = d / f"{TOP_NAME}-{key}.v"
    if not vfile.exists():
        text = top_verilog(MoevitTop(cfg))
        tmp = vfile.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(vfile)
    return vfile


#: packages under hw/ that are never elaborated into the top (performance models), so
#: editing them must not rebuild the simulator
NOT_HARDWARE = ("perf",)


def _sources_key() -> str:
    """Hash of the hardware sources (so an edited unit rebuilds the top)."""
    import moevit.hw as hw
    root = Path(hw.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        if f.relative_to(root).parts[0] in NOT_HARDWARE:
            continue
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_top(cfg: AcceleratorConfig, test_module: str = "moevit.sim.tb_top_e2e", *,
            sim: str = "verilator", params: dict | None = None, waves: bool = False,
            testcase: str | None = None) -> dict:
    """Run a cocotb testbench on ``moevit_top`` for ``cfg``; returns its metrics."""
    tools.require_simulator(sim)
    bdir = build_simulator(top_verilog_file(cfg), TOP_NAME, sim=sim, waves=waves)
    return run_built(bdir, cfg, UNIT, test_module, sim=sim, params=params, waves=waves,
                     toplevel=TOP_NAME, testcase=testcase)
