"""cocotb harness that runs synchronous host code against the simulated ``moevit_top``.

:class:`TopHarness` owns the clock, the reset and the bus models of the top's ports:
cocotbext-axi's ``AxiLiteMaster`` on ``s_axi_control_*`` and one ``AxiRam`` per memory port
``m_axi_gmem<k>_*``, all sharing ONE backing memory (the first RAM's ``SparseMemory``), so
every port sees the same DRAM.  Its coroutines (``read32``, ``write32``, ``wait_word``,
``interrupt``) are what :class:`moevit.host.backend_rtl.RtlDevice` converts into blocking calls
with ``cocotb.task.resume``.

The cocotb test :func:`host_session` starts the harness and runs the entry function named in
the testbench parameters (``"module:function"``, called as ``fn(harness, job_dir)`` in a
``cocotb.task.bridge`` thread, so blocking host code runs while simulated time stands still between
its bus calls).  The entry is looked up by name: sim does not import the host library.

Parameters (:func:`moevit.sim.runner.tb_params`): ``entry``, ``job_dir``, ``ports``,
``fault`` (``None``; ``"core_never_done"``: the placeholder core's ``ap_done``/``ap_ready``
never reach the control block, so a run never ends; ``"memory_stalls"``: every AXI channel of every
RAM pauses forever, so a core that touches memory never finishes; ``"kernel_hangs"``: the
first with the placeholder core, the second with the real one).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge   # cocotb 2.x (was cocotb.external)
from cocotb.triggers import ClockCycles, First, RisingEdge
from cocotb.utils import get_sim_time

from moevit.sim.runner import tb_config, tb_params, tb_simulator, write_metrics

#: the top's port names (hw/top/wrapper.py)
CONTROL_BUS, CLOCK, RESET, INTERRUPT = "s_axi_control", "ap_clk", "ap_rst_n", "interrupt"
#: sparse DRAM model size (len() of the model must fit a Python index)
RAM_BYTES = 1 << 62
RESET_CYCLES = 4
FAULTS = (None, "core_never_done", "memory_stalls", "kernel_hangs")


def memory_bus(k: int) -> str:
    return f"m_axi_gmem{k}"


class TopHarness:
    """Clock, reset, AXI-Lite master and shared-memory AXI RAMs around ``moevit_top``."""

    def __init__(self, dut, cfg, ports: int):
        self.dut, self.cfg, self.ports = dut, cfg, ports
        self.period_ps = max(2, 2 * round(1e12 / cfg.clock_hz / 2))   # even: 50 % duty
        self.clock_hz = cfg.clock_hz
        self.lite = None
        self.rams = []
        self.mem = None
        self.fault = None
        self._start_ps = 0

    async def start(self, fault: str | None = None):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        d = self.dut
        kw = {"impl": "gpi"} if tb_simulator() == "icarus" else {}
        cocotb.start_soon(Clock(getattr(d, CLOCK), self.period_ps, unit="ps", **kw).start())
        clk, rst = getattr(d, CLOCK), getattr(d, RESET)
        rst.value = 0
        await RisingEdge(clk)   # outputs settle (Icarus starts them at Z) before the models look
        for k in range(self.ports):
            ram = AxiRam(AxiBus.from_prefix(d, memory_bus(k)), clk, rst,
                         reset_active_level=False, size=RAM_BYTES,
                         mem=self.rams[0].mem if self.rams else None)
            self.rams.append(ram)
        self.mem = self.rams[0].mem
        assert all(r.mem is self.mem for r in self.rams)
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(d, CONTROL_BUS), clk, rst,
                                  reset_active_level=False)
        await ClockCycles(clk, RESET_CYCLES)
        rst.value = 1
        await RisingEdge(clk)
        if fault == "kernel_hangs":   # whichever hang this top supports
            fault = ("core_never_done" if hasattr(d, "placeholder_core") else "memory_stalls")
        self.fault = fault
        if fault == "core_never_done":
            cocotb.start_soon(self._hold_placeholder())
        elif fault == "memory_stalls":
            for ram in self.rams:
                for ch in (ram.write_if.aw_channel, ram.write_if.w_channel,
                           ram.write_if.b_channel, ram.read_if.ar_channel,
                           ram.read_if.r_channel):
                    ch.set_pause_generator(_always())
        self._start_ps = get_sim_time("ps")

    async def _hold_placeholder(self):
        """Keep the placeholder core's ``busy`` flop at 0 after every clock edge, so its
        ``ap_done``/``ap_ready`` never reach the control block: a run that never ends.
        (Verilator honours no VPI force on an unmarked net; a deposit after each edge holds
        a flop.)  The real core has no such flop: use ``memory_stalls`` there."""
        try:
            busy = self.dut.placeholder_core.busy
        except AttributeError:
            raise RuntimeError("fault core_never_done needs the placeholder core "
                               "(placeholder_core.busy); this moevit_top has the real core: "
                               "use fault memory_stalls") from None
        clk = getattr(self.dut, CLOCK)
        while True:
            await RisingEdge(clk)
            busy.value = 0

    # ------------------------------------------------------------------ time
    def cycle(self) -> int:
        """Kernel clock cycles since the end of reset."""
        return int((get_sim_time("ps") - self._start_ps) // self.period_ps)

    # ------------------------------------------------------------------ bus
    async def read32(self, offset: int) -> int:
        return int(await self.lite.read_dword(offset))

    async def write32(self, offset: int, value: int) -> None:
        await self.lite.write_dword(offset, int(value) & 0xFFFFFFFF)

    async def interrupt(self) -> int:
        return int(getattr(self.dut, INTERRUPT).value)

    async def wait_word(self, offset: int, mask: int, max_cycles: int, poll_cycles: int):
        """Read ``offset`` over AXI-Lite until ``value & mask``; between reads wait
        ``poll_cycles`` kernel cycles or until ``interrupt`` rises.  Returns
        ``(value, cycles elapsed, timed_out)``; gives up once ``max_cycles`` have passed."""
        start = self.cycle()
        intr = getattr(self.dut, INTERRUPT)
        clk = getattr(self.dut, CLOCK)
        while True:
            v = await self.read32(offset)
            elapsed = self.cycle() - start
            if v & mask:
                return v, elapsed, False
            if elapsed >= max_cycles:
                return v, elapsed, True
            n = max(1, min(poll_cycles, max_cycles - elapsed))
            await First(ClockCycles(clk, n), RisingEdge(intr))

    async def settle(self, cycles: int) -> None:
        await ClockCycles(getattr(self.dut, CLOCK), cycles)


def _always():
    while True:
        yield True


def resolve_entry(entry: str):
    """``"package.module:function"`` -> the function."""
    mod, _, fn = entry.partition(":")
    if not fn:
        raise ValueError(f"entry {entry!r} must be 'module:function'")
    return getattr(importlib.import_module(mod), fn)


@cocotb.test()
async def host_session(dut):
    """Run the entry function (blocking host code) against the top; its returned dict
    becomes the run's metrics."""
    p = tb_params()
    cfg = tb_config()
    h = TopHarness(dut, cfg, p.get("ports", cfg.mem_ports))
    await h.start(p.get("fault"))
    fn = resolve_entry(p["entry"])
    result = await bridge(fn)(h, Path(p["job_dir"]))
    write_metrics(dict(result or {}, sim_cycles=h.cycle()))
