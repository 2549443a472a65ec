"""The exported Vivado top with the placeholder core (``placeholder=True``: one port, a fast
build) in RTL simulation: the control block answers through the HLS-style port names
(sim/tb_top_wrapper.py).  The real core's runs are in test_top_e2e.py."""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.hw.top.wrapper import MoevitTop, TOP_NAME, top_verilog
from moevit.sim.runner import build_simulator, run_built, unit_dir

pytestmark = pytest.mark.rtl


def test_exported_top_control_roundtrip():
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    ports = 1
    import hashlib
    text = top_verilog(MoevitTop(cfg, ports, placeholder=True))
    d = unit_dir(cfg, "top_wrapper")
    d.mkdir(parents=True, exist_ok=True)
    vfile = d / f"{TOP_NAME}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.v"
    if not vfile.exists():
        vfile.write_text(text)
    bdir = build_simulator(vfile, TOP_NAME)
    m = run_built(bdir, cfg, "top_wrapper", "moevit.sim.tb_top_wrapper", toplevel=TOP_NAME,
                  params={"ports": ports})
    # placeholder core: ap_done one cycle after the start cycle -> a 2-cycle run
    assert m["placeholder_run_cycles"] == 2
