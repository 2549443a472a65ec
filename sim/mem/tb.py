"""cocotb side of the simulated DRAM (inside the simulator process): clock and reset, memory
knobs, image load and region dump through files, beat counters, and waiting for the DUT's
``interrupt`` without touching Python per cycle.

    tb = SimMemTB(dut, word_bytes=32)
    await tb.start(stall=64, latency=20, seed=1)
    await tb.load({0x1000: data})           # one $readmemh, no AXI beats from Python
    ...                                     # AXI-Lite control from cocotbext-axi
    await tb.wait_interrupt(max_cycles=10_000_000)
    out = await tb.dump(0x8000, 4096)       # one $writememh
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from moevit.errors import ConfigError
from moevit.sim.mem.image import dump_words, read_dump, write_image

LOAD_DEFAULT = "sim_mem_load.hex"
DUMP_DEFAULT = "sim_mem_dump.hex"


def _u(v) -> int:
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


class SimMemTB:
    """Testbench handle of a :func:`moevit.sim.mem.top.sim_top_verilog` top."""

    def __init__(self, dut, *, word_bytes: int, base: int = 0, clock: str = "ap_clk",
                 reset_n: str = "ap_rst_n", period_ns: int = 10):
        self.dut = dut
        self.word_bytes = word_bytes
        self.base = base
        self.clk = getattr(dut, clock)
        self.rst_n = getattr(dut, reset_n)
        self.period_ns = period_ns
        self.ports = len(dut.sim_mem_rd_beats) // 64
        plus = cocotb.plusargs
        self.load_file = Path(str(plus.get("SIM_MEM_LOAD", LOAD_DEFAULT)))
        self.dump_file = Path(str(plus.get("SIM_MEM_DUMP", DUMP_DEFAULT)))

    async def start(self, *, stall: int = 0, latency: int = 0, seed: int = 1) -> None:
        """Set the memory knobs, start the clock (the C++ GPI clock: no Python per edge) and
        hold reset for three cycles."""
        if not 0 <= stall <= 255:
            raise ConfigError(f"stall {stall} must be 0..255 (probability/256 per channel "
                              f"and cycle)")
        d = self.dut
        d.sim_mem_stall.value = stall
        d.sim_mem_latency.value = latency
        d.sim_mem_seed.value = seed
        for s in (d.sim_mem_load, d.sim_mem_dump, d.sim_mem_dump_first, d.sim_mem_dump_last):
            s.value = 0
        self.rst_n.value = 0
        await Timer(1, unit="ns")     # let a 4-state simulator settle its time-0 values first
        cocotb.start_soon(Clock(self.clk, self.period_ns, unit="ns", impl="gpi").start())
        await self.reset()

    async def reset(self, cycles: int = 3) -> None:
        """Reset the DUT and the memory's queues, counters and error flag (not its words)."""
        self.rst_n.value = 0
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.rst_n.value = 1
        await RisingEdge(self.clk)       # the wrapper's reset flop releases at this edge
        await RisingEdge(self.clk)

    async def _pulse(self, sig) -> None:
        """``sig`` high for exactly one rising edge (driven between falling edges, so the
        edge's $readmemh/$writememh has finished when this returns)."""
        await FallingEdge(self.clk)
        sig.value = 1
        await FallingEdge(self.clk)
        sig.value = 0

    async def load(self, regions: dict) -> None:
        """Write ``regions`` ({byte address: bytes/array}) into the memory: one image file,
        one ``$readmemh`` at the next clock edge."""
        write_image(self.load_file, regions, word_bytes=self.word_bytes, base=self.base)
        await self._pulse(self.dut.sim_mem_load)

    async def dump(self, addr: int, nbytes: int):
        """The memory's bytes ``addr .. addr + nbytes - 1`` (numpy uint8), via one
        ``$writememh``."""
        first, last = dump_words(addr, nbytes, word_bytes=self.word_bytes, base=self.base)
        if self.dump_file.exists():
            os.remove(self.dump_file)
        self.dut.sim_mem_dump_first.value = first
        self.dut.sim_mem_dump_last.value = last
        await self._pulse(self.dut.sim_mem_dump)
        if not self.dump_file.exists():
            raise RuntimeError(f"the memory wrote no dump {self.dump_file} (words {first}.."
                               f"{last}; see the simulator log)")
        data = read_dump(self.dump_file, word_bytes=self.word_bytes, words=last - first + 1)
        skip = (addr - self.base) % self.word_bytes
        return data[skip:skip + nbytes]

    @property
    def error(self) -> bool:
        return bool(self.dut.sim_mem_error.value)

    @property
    def busy(self) -> bool:
        return bool(self.dut.sim_mem_busy.value)

    @property
    def cycles(self) -> int:
        return _u(self.dut.sim_mem_cycles.value)

    def beats(self) -> tuple[list[int], list[int]]:
        """(R beats, W beats) taken per port since reset."""
        rd, wr = _u(self.dut.sim_mem_rd_beats.value), _u(self.dut.sim_mem_wr_beats.value)
        mask = (1 << 64) - 1
        return ([(rd >> 64 * k) & mask for k in range(self.ports)],
                [(wr >> 64 * k) & mask for k in range(self.ports)])

    async def wait_interrupt(self, max_cycles: int, signal: str = "interrupt") -> int:
        """Wait (one trigger, no per-cycle Python) until ``signal`` is high; returns the
        memory's cycle count then.  AssertionError after ``max_cycles``.  (moevit_top raises
        ``interrupt`` only with GIER and IP_IER enabled.)"""
        sig = getattr(self.dut, signal)
        if not sig.value:
            timeout = Timer(max_cycles * self.period_ns, unit="ns")
            fired = await First(RisingEdge(sig), timeout)
            if fired is timeout:
                raise AssertionError(f"{signal} not raised within {max_cycles} cycles")
        return self.cycles
