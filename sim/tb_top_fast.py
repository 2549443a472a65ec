"""cocotb testbench: one run of ``moevit_top`` inside the simulated-DRAM top
(:func:`moevit.sim.mem.top.build_sim_top`), prepared and checked by
:func:`moevit.sim.top_fast.run_top_fast`.

The memory image (weights, gate, images) was loaded at time 0 by ``+SIM_MEM_INIT``.  This
testbench only: starts the clock (C++ GPI clock) and reset, writes the registers of
``params["regs"]`` through cocotbext-axi's ``AxiLiteMaster``, enables the interrupt
(GIER, IP_IER), starts the run and waits for ``interrupt`` -- with ``sample_every`` > 0 it
reads the ``stage`` register every that many cycles on the way, for per-stage cycles.  Then it
checks ``ap_done``, that the memory saw no illegal burst, that nothing is outstanding and no
beat moves for a while after ``ap_done``, and dumps ``params["dumps"]`` ([name, addr, bytes])
with ``$writememh`` into ``dumps.npz`` beside the metrics.

Metrics: ``cycles`` and ``stage`` (registers after ap_done), ``start_cycle`` (memory cycle of
the run's first cycle), ``stage_trace`` ([memory cycle, stage register] samples),
``run_wall_s`` and ``run_cpu_s`` (CPU time of the simulator process: the simulation
itself, Verilator and cocotb in one process; independent of other load), ``rd_beats`` /
``wr_beats`` per port.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from moevit.regmap import REGMAP
from moevit.sim import axil_regs
from moevit.sim.mem.tb import SimMemTB
from moevit.sim.runner import ENV_METRICS, tb_config, tb_params, write_metrics

BIT = {f.name: 1 << f.bit for f in REGMAP["CTRL"].fields}
#: cycles after ap_done during which no beat may move
QUIET_CYCLES = 200


class FastHost(SimMemTB):
    """The simulated-DRAM handle plus the control port (``AxiLiteMaster``)."""

    def __init__(self, dut, cfg):
        super().__init__(dut, word_bytes=cfg.axi_width // 8)
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster
        self.ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), self.clk,
                                 self.rst_n, reset_active_level=False)

    async def reg(self, name, value=None):
        return await axil_regs.access(self.ctl, name, value)

    async def run(self, max_cycles: int, sample_every: int) -> list[tuple[int, int]]:
        """Start, wait for the interrupt (sampling ``stage`` if asked); returns the samples."""
        await self.reg("GIER", 1)
        await self.reg("IP_IER", 1)
        await self.reg("CTRL", BIT["ap_start"])
        deadline = self.cycles + max_cycles
        trace = []
        if not sample_every:
            await self.wait_interrupt(max_cycles)
            return trace
        irq = self.dut.interrupt
        while not irq.value:
            left = deadline - self.cycles
            if left <= 0:
                stage = await self.reg("stage")
                raise AssertionError(f"no interrupt after {max_cycles} cycles (stage register "
                                     f"{stage})")
            await First(RisingEdge(irq), Timer(min(sample_every, left) * self.period_ns,
                                               unit="ns"))
            if not irq.value:
                trace.append((self.cycles, await self.reg("stage")))
        return trace


@cocotb.test()
async def top_fast_run(dut):
    cfg, p = tb_config(), tb_params()
    host = FastHost(dut, cfg)
    await host.start(stall=p.get("stall", 0), latency=p.get("latency", 0), seed=p.get("seed", 1))
    for name, value in p["regs"]:
        await host.reg(name, value)
    t0, c0 = time.perf_counter(), time.process_time()
    trace = await host.run(p["max_cycles"], p.get("sample_every", 0))
    end_cycle = host.cycles
    run_wall, run_cpu = time.perf_counter() - t0, time.process_time() - c0
    ctrl = await host.reg("CTRL")
    assert ctrl & BIT["ap_done"], f"interrupt without ap_done (CTRL 0x{ctrl:x})"
    cycles, stage = await host.reg("cycles"), await host.reg("stage")
    await host.reg("IP_ISR", 1)
    assert not host.error, "the simulated DRAM saw an illegal or out-of-range burst (see log)"
    assert not host.busy, "a burst is still outstanding after ap_done"
    before = host.beats()
    await ClockCycles(host.clk, QUIET_CYCLES)
    assert host.beats() == before, f"beats moved after ap_done: {before} -> {host.beats()}"
    assert not host.busy and not host.error
    dumps = {}
    for name, addr, nbytes in p.get("dumps", []):
        dumps[name] = np.asarray(await host.dump(addr, nbytes))
    out = Path(os.environ[ENV_METRICS]).parent / "dumps.npz"
    np.savez(out, **dumps)
    rd, wr = host.beats()
    write_metrics({"cycles": cycles, "stage": stage, "start_cycle": end_cycle - cycles,
                   "stage_trace": trace, "run_wall_s": round(run_wall, 3),
                   "run_cpu_s": round(run_cpu, 3),
                   "rd_beats": rd, "wr_beats": wr})
    await Timer(1, unit="ns")
