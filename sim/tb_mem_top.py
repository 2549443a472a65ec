"""cocotb tests of the simulated DRAM (``sim/mem/moevit_sim_mem.v``) behind the copy test top
(:mod:`moevit.sim.mem.copy_top`: the real AXI burst masters copying a region per port).

Only the AXI-Lite control accesses (cocotbext-axi ``AxiLiteMaster``), one image load and a few
dumps cross into Python; the copies run inside the simulator.

* ``test_copy_stalls``: every port copies a slice of whole pages that starts 3 beats before a
  4 KiB page end (so its bursts split there) with random ready/valid stalls and read latency on; the
  destination and a guard band around it are dumped: the copy is bit-exact and nothing else
  changed.  A second run reads, on port k, the slice port k+1 wrote (one shared array).  The
  memory's beat counters equal the descriptors, no error, nothing outstanding, and after
  ``ap_done`` no beat moves for ``idle_cycles``.
* ``test_copy_rate``: stalls off (unless ``rate_stall``): beats per cycle per port from the
  control block's cycle counter, and the simulator's cycles per second (wall clock and CPU
  time of the simulator process), image load and dump times.
* ``test_out_of_range``: a copy running past the memory's end gets SLVERR: the reader's
  error flag and ``sim_mem_error`` rise, the run still ends.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from moevit.sim.mem.copy_top import COPY_REGMAP
from moevit.sim.mem.tb import SimMemTB
from moevit.sim.runner import tb_config, tb_params, write_metrics

PAGE = 4096
CTRL = COPY_REGMAP.offset("CTRL")
AP_START = 1 << COPY_REGMAP["CTRL"].field("ap_start").bit
AP_DONE = 1 << COPY_REGMAP["CTRL"].field("ap_done").bit


class CopyTB(SimMemTB):
    def __init__(self, dut):
        super().__init__(dut, word_bytes=tb_config().axi_width // 8)
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster
        self.ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), self.clk,
                                 self.rst_n, reset_active_level=False)

    async def write64(self, reg: str, value: int) -> None:
        (_, lo), (_, hi) = COPY_REGMAP[reg].words()
        await self.ctl.write_dword(lo, value & 0xFFFFFFFF)
        await self.ctl.write_dword(hi, value >> 32)

    async def read(self, reg: str) -> int:
        words = COPY_REGMAP[reg].words()
        out = 0
        for i, (_, off) in enumerate(words):
            out |= await self.ctl.read_dword(off) << (32 * i)
        return out

    async def copy(self, src: int, dst: int, beats: int, ports: int, max_cycles: int):
        """One run; returns (cycles counted by the control block, wall seconds)."""
        await self.write64("src", src)
        await self.write64("dst", dst)
        await self.ctl.write_dword(COPY_REGMAP.offset("beats"), beats)
        await self.ctl.write_dword(COPY_REGMAP.offset("ports"), ports)
        await self.ctl.write_dword(COPY_REGMAP.offset("GIER"), 1)
        await self.ctl.write_dword(COPY_REGMAP.offset("IP_IER"), 1)
        t0, c0 = time.perf_counter(), time.process_time()
        await self.ctl.write_dword(CTRL, AP_START)
        await self.wait_interrupt(max_cycles)
        wall = time.perf_counter() - t0
        self.last_cpu_s = time.process_time() - c0
        ctrl = await self.ctl.read_dword(CTRL)
        assert ctrl & AP_DONE, f"interrupt without ap_done (CTRL 0x{ctrl:x})"
        await self.ctl.write_dword(COPY_REGMAP.offset("IP_ISR"), 1)
        return await self.read("cycles"), wall

    async def expect_quiet(self, cycles: int) -> None:
        """After a run: nothing outstanding, and no beat moves for ``cycles`` cycles."""
        before = self.beats()
        assert not self.busy, "memory has bursts outstanding after ap_done"
        await ClockCycles(self.clk, cycles)
        assert self.beats() == before, f"beats moved after ap_done: {before} -> {self.beats()}"
        assert not self.busy


def _check_region(got: np.ndarray, want: np.ndarray, base: int, what: str) -> None:
    bad = np.flatnonzero(got != want)
    assert not len(bad), (f"{what}: {len(bad)} bytes differ, first at 0x{base + bad[0]:x} "
                          f"(got 0x{got[bad[0]]:02x}, want 0x{want[bad[0]]:02x})")


@cocotb.test()
async def test_copy_stalls(dut):
    p = tb_params()
    tb = CopyTB(dut)
    await tb.start(stall=p.get("stall", 77), latency=p.get("latency", 23), seed=p.get("seed", 1))
    bb, n, beats = tb.word_bytes, tb.ports, p.get("beats", 384)
    rng = np.random.default_rng(p.get("seed", 1))
    slice_bytes = beats * bb
    src = 0x10 * PAGE - 3 * bb                    # every slice starts 3 beats before a page end
    dst = src + (n + 2) * slice_bytes + PAGE + 5 * bb
    dst2 = dst + (n + 2) * slice_bytes + 2 * PAGE
    guard = 2 * PAGE
    size = n * slice_bytes
    src_data = rng.integers(0, 256, size, dtype=np.uint8)
    background = rng.integers(0, 256, size + 2 * guard, dtype=np.uint8)
    background2 = rng.integers(0, 256, size + 2 * guard, dtype=np.uint8)
    await tb.load({src: src_data, dst - guard: background, dst2 - guard: background2})
    t_load = time.perf_counter()
    # the loaded image reads back exactly (load and dump agree with each other and numpy)
    _check_region(await tb.dump(src, size), src_data, src, "loaded source")

    cycles, _ = await tb.copy(src, dst, beats, (1 << n) - 1, max_cycles=200 * beats)
    assert await tb.read("errors") == 0, "an engine saw an error response"
    assert not tb.error, "the memory flagged a protocol/range error"
    rd, wr = tb.beats()
    assert rd == [beats] * n and wr == [beats] * n, (rd, wr)
    await tb.expect_quiet(p.get("idle_cycles", 200))
    want = background.copy()
    want[guard:guard + size] = src_data
    _check_region(await tb.dump(dst - guard, size + 2 * guard), want, dst - guard, "copy")
    # stalls really held the channels back: far from one beat per cycle
    assert cycles > 1.3 * beats, f"{cycles} cycles for {beats} beats with stalls on"

    # port k now reads the slice port k+1 wrote (the array is shared by the ports)
    ports2 = (1 << (n - 1)) - 1
    await tb.copy(dst + slice_bytes, dst2, beats, ports2, max_cycles=200 * beats)
    assert await tb.read("errors") == 0 and not tb.error
    want2 = background2.copy()
    want2[guard:guard + (n - 1) * slice_bytes] = src_data[slice_bytes:]
    _check_region(await tb.dump(dst2 - guard, size + 2 * guard), want2, dst2 - guard,
                  "copy of the other ports' writes")
    await tb.expect_quiet(p.get("idle_cycles", 200))
    write_metrics({"stall_copy_cycles": cycles, "stall_copy_beats": beats, "ports": n,
                   "load_dump_wall_s": round(time.perf_counter() - t_load, 3)})


@cocotb.test()
async def test_copy_rate(dut):
    p = tb_params()
    tb = CopyTB(dut)
    await tb.start(stall=p.get("rate_stall", 0), latency=p.get("rate_latency", 0), seed=2)
    bb, n, beats = tb.word_bytes, tb.ports, p.get("rate_beats", 4096)
    rng = np.random.default_rng(2)
    src, dst = 0x100 * PAGE, 0x100 * PAGE + n * beats * bb + PAGE
    data = rng.integers(0, 256, n * beats * bb, dtype=np.uint8)
    t0 = time.perf_counter()
    await tb.load({src: data})
    t_load = time.perf_counter() - t0
    c0 = tb.cycles
    cycles, wall = await tb.copy(src, dst, beats, (1 << n) - 1, max_cycles=20 * beats)
    sim_cycles = tb.cycles - c0       # including the AXI-Lite accesses around the run
    t0 = time.perf_counter()
    got = await tb.dump(dst, n * beats * bb)
    t_dump = time.perf_counter() - t0
    _check_region(got, data, dst, "rate copy")
    assert await tb.read("errors") == 0 and not tb.error
    write_metrics({"rate_beats_per_port": beats, "rate_ports": n, "rate_cycles": cycles,
                   "rate_stall": p.get("rate_stall", 0),
                   "rate_latency": p.get("rate_latency", 0),
                   "rate_beats_per_cycle_per_port": round(beats / cycles, 4),
                   "rate_wall_s": round(wall, 3),
                   "rate_cycles_per_s": round(cycles / wall),
                   "rate_cpu_s": round(tb.last_cpu_s, 3),
                   "rate_cycles_per_cpu_s": round(cycles / max(tb.last_cpu_s, 1e-9)),
                   "rate_sim_cycles": sim_cycles,
                   "rate_load_bytes": int(data.nbytes), "rate_load_s": round(t_load, 3),
                   "rate_dump_s": round(t_dump, 3)})


@cocotb.test()
async def test_out_of_range(dut):
    tb = CopyTB(dut)
    await tb.start(stall=30, latency=5, seed=3)
    words = 1 << tb_params()["words_log2"]
    end = tb.base + words * tb.word_bytes
    beats = 40
    # port 0 reads the last 20 beats and 20 beyond the end; writes land inside
    await tb.copy(end - 20 * tb.word_bytes, tb.base + PAGE, beats, 1, max_cycles=100 * beats)
    assert await tb.read("errors") & 1, "reader saw no SLVERR for beats beyond the memory"
    assert tb.error, "sim_mem_error not raised for a burst beyond the memory"
    await tb.expect_quiet(50)
    await tb.reset()
    assert not tb.error, "reset did not clear sim_mem_error"
    write_metrics({"out_of_range_flagged": True})
