"""The simulated DRAM (sim/mem/moevit_sim_mem.v) in RTL simulation: behind the copy test top
with the real AXI burst masters (sim/tb_mem_top.py)."""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.sim.mem.copy_top import COPY_TOP, CopyTop
from moevit.sim.mem.top import SimMemSpec, build_port_top, build_sim_top
from moevit.sim.runner import run_built

pytestmark = pytest.mark.rtl

#: beats/cycle each port must reach with no stalls (target 1.0; a copy's first read latency
#: and the last write response are the only gaps).  The rate run has a read latency of
#: RATE_LATENCY cycles: with one burst (<= 128 beats of 32 bytes) in flight at a time a port
#: could reach only 128 / (128 + 40) = 0.76, so passing shows several outstanding bursts.
MIN_RATE = 0.95
RATE_LATENCY = 40


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
                                             "rate_beats": 4096,
                                             "rate_latency": RATE_LATENCY})
    assert m["ports"] == cfg.mem_ports
    assert m["rate_beats_per_cycle_per_port"] >= MIN_RATE, m
    assert m["out_of_range_flagged"]


def _run_port(cfg, mem, params, sim="verilator", **kw):
    bdir, top = build_port_top(cfg, "sim_mem_port", mem=mem, sim=sim)
    return run_built(bdir, cfg, "sim_mem_port", "moevit.sim.tb_sim_mem", toplevel=top, sim=sim,
                     params={"words_log2": mem.words_log2, **params}, **kw)


def test_sim_mem_port_against_cocotbext_master():
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    m = _run_port(cfg, SimMemSpec(words_log2=12), {"stall": 90, "latency": 11, "seed": 5})
    assert m["axi_master_writes"] == 24 and m["port_wr_beats"] > 500
    assert m["illegal_bursts_flagged"] == 2 and m["raw_protocol_errors_flagged"] == 2


def test_sim_mem_port_icarus():
    """The memory itself on Icarus (small: 4-state bits)."""
    tools.require_simulator("icarus")
    cfg = preset("tiny")
    m = _run_port(cfg, SimMemSpec(words_log2=12), {"stall": 60, "latency": 4, "seed": 8,
                                                   "writes": 8, "reads": 8}, sim="icarus")
    assert m["axi_master_writes"] == 8 and m["illegal_bursts_flagged"] == 2



def test_moevit_top_in_sim_mem_top():
    """The Vivado top (placeholder core) wraps and runs: control from Python, memory in RTL."""
    from moevit.hw.top.wrapper import MoevitTop, TOP_NAME, top_verilog
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    mem = SimMemSpec(words_log2=16)
    bdir, top = build_sim_top(top_verilog(MoevitTop(cfg)), TOP_NAME, cfg, "sim_mem_moevit",
                              mem=mem)
    m = run_built(bdir, cfg, "sim_mem_moevit", "moevit.sim.tb_mem_moevit", toplevel=top)
    assert m["moevit_top_ports"] == cfg.mem_ports


def test_public_ports_only_build_runs():
    """build_simulator(public=ports): the design simulates with only its ports visible (the
    idle-clock probe the speed bench uses)."""
    import re

    from moevit.hw.top.axi_master import AxiMasterPort
    from moevit.sim.runner import build_simulator, generate_verilog
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    v = generate_verilog(lambda: AxiMasterPort(cfg, max_outstanding=4), cfg, "top_axi_port")
    ports = [p.strip() for p in re.search(r"^module top_axi_port\((.*?)\);", v.read_text(),
                                          re.M | re.S).group(1).split(",")]
    bdir = build_simulator(v, "top_axi_port", public=ports)
    assert "public_flat_rw" in (bdir / "public.vlt").read_text()
    m = run_built(bdir, cfg, "top_axi_port", "moevit.sim.tb_idle_clock", params={"cycles": 5000})
    assert m["idle_cycles"] == 5000 and m["idle_cycles_per_cpu_s"] > 0


def test_sim_mem_init_plusarg(tmp_path):
    """+SIM_MEM_INIT: an image the host writes before the run is in memory at time 0."""
    import numpy as np

    from moevit.sim.mem.image import write_image
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    data = np.random.default_rng(4).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    addr = 0x3000
    image = write_image(tmp_path / "init.hex", {addr: data}, word_bytes=cfg.axi_width // 8)
    m = _run_port(cfg, SimMemSpec(words_log2=12), {"init_check": {"addr": addr,
                                                                  "hex": data.hex()}},
                  testcase="test_init_plusarg", plusargs=[f"+SIM_MEM_INIT={image}"])
    assert m["init_checked"]
