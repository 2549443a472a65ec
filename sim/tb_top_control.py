"""cocotb tests of the AXI4-Lite control block (``moevit.hw.top.control.AxiLiteControl``).

Every offset, width and bit comes from ``moevit.regmap.REGMAP``; expected behaviour is the
HLS ``ap_ctrl_hs`` slave's (see the control module's doc).  A fake ``ap_ctrl_hs`` core in
Python answers ``ap_start`` after a chosen number of cycles and records when each run
started and finished, which the cycle-counter register is checked against.

Signals are driven after the falling edge and sampled there (everything the DUT drives from
its registers has settled by then).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from moevit.hw.top.control import INTERNAL_READ_ONLY, argument_registers
from moevit.regmap import REGMAP, WORD_BYTES
from moevit.sim.runner import tb_params, write_metrics
from moevit.sim.tb_stream import start_clock_reset

CTRL = REGMAP.offset("CTRL")
GIER, IP_IER, IP_ISR = (REGMAP.offset(n) for n in ("GIER", "IP_IER", "IP_ISR"))
BIT = {f.name: 1 << f.bit for f in REGMAP["CTRL"].fields}
MASK32 = (1 << 32) - 1


def _arg(dut, name):
    return getattr(dut, f"args__{name}")


class FakeCore:
    """An ``ap_ctrl_hs`` core: takes ``ap_start`` when idle, is busy ``run_cycles`` cycles,
    then pulses ap_done and ap_ready together; ``ap_idle = in state 1 and not ap_start``."""

    def __init__(self, dut, run_cycles: int = 5):
        self.dut = dut
        self.run_cycles = run_cycles
        self.cycle = 0
        self.runs: list[tuple[int, int]] = []   # (start cycle, done cycle)
        self.continues: list[int] = []           # cycles where ap_continue was high
        dut.ap_done.value = 0
        dut.ap_ready.value = 0
        dut.ap_idle.value = 1
        cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        left = None          # None: idle (state 1); k: k busy cycles to go
        start = 0
        while True:
            await FallingEdge(dut.clk)
            if dut.ap_continue.value:   # a response to what was driven in self.cycle
                self.continues.append(self.cycle)
            self.cycle += 1
            done = 0
            if left is None:
                if dut.ap_start.value:
                    left, start = self.run_cycles, self.cycle
            else:
                left -= 1
                if left == 0:
                    done, left = 1, None
                    self.runs.append((start, self.cycle))
            dut.ap_done.value = done
            dut.ap_ready.value = done
            dut.ap_idle.value = int(left is None and not done and not dut.ap_start.value)


async def _setup(dut, *, pause_aw=None, pause_w=None, clock=True):
    """Clock and reset (unless ``clock`` is False: already running), then an AxiLiteMaster."""
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster
    if clock:
        for r in argument_registers(REGMAP):
            if r.access == "read-only" and r.name not in INTERNAL_READ_ONLY:
                _arg(dut, r.name).value = 0
        _idle_bus(dut)
        await start_clock_reset(dut.clk, dut.rst)
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
    if pause_aw:
        master.write_if.aw_channel.set_pause_generator(pause_aw)
    if pause_w:
        master.write_if.w_channel.set_pause_generator(pause_w)
    return master


def _idle_bus(dut):
    for s in ("awvalid", "wvalid", "arvalid"):
        getattr(dut, f"s_axi__{s}").value = 0
    dut.s_axi__bready.value = 1
    dut.s_axi__rready.value = 1


def _random_pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def _read(master, off):
    return await master.read_dword(off)


async def _write(master, off, value):
    await master.write_dword(off, value & MASK32)


def _reserved_words():
    used = set(REGMAP.words().values())
    top = max(used) + 2 * WORD_BYTES
    return [off for off in range(0, top, WORD_BYTES) if off not in used]


@cocotb.test()
async def test_registers_by_offset(dut):
    """Every argument word: write random, read back, and see it on the core side (pointers
    as the low/high halves of one 64-bit signal); read-only words read the core's inputs
    and ignore writes; reserved words read 0 and ignore writes; WSTRB writes single bytes."""
    p = tb_params()
    rng = random.Random(p.get("seed", 1))
    master = await _setup(dut)
    FakeCore(dut)
    expected = {}
    checked = 0
    for r in argument_registers(REGMAP):
        if r.access == "read-only":
            continue
        value = rng.getrandbits(r.width)
        for i, (_, off) in enumerate(r.words()):
            await _write(master, off, value >> (32 * i))
        expected[r.name] = value
    for r in argument_registers(REGMAP):
        if r.access == "read-only":
            continue
        assert _arg(dut, r.name).value.to_unsigned() == expected[r.name], r.name
        for i, (w, off) in enumerate(r.words()):
            got = await _read(master, off)
            assert got == (expected[r.name] >> (32 * i)) & MASK32, \
                f"{w} @0x{off:03x}: read 0x{got:08x}"
            checked += 1
    # read-only inputs from the core; writes to them change nothing
    for r in argument_registers(REGMAP):
        if r.access != "read-only" or r.name in INTERNAL_READ_ONLY:
            continue
        value = rng.getrandbits(r.width)
        _arg(dut, r.name).value = value
        for i, (w, off) in enumerate(r.words()):
            await _write(master, off, ~value >> (32 * i))
            assert await _read(master, off) == (value >> (32 * i)) & MASK32, w
            checked += 1
    # reserved words
    for off in _reserved_words():
        await _write(master, off, 0xFFFFFFFF)
        assert await _read(master, off) == 0, f"reserved word 0x{off:03x} not 0"
    for r in argument_registers(REGMAP):    # the reserved writes hit nothing
        if r.access != "read-only":
            assert _arg(dut, r.name).value.to_unsigned() == expected[r.name], r.name
    # byte strobes: one byte of num_images, then two bytes of the high word of images
    off = REGMAP.offset("num_images")
    await master.write(off + 2, bytes([0xA5]))
    want = (expected["num_images"] & ~0x00FF0000) | 0x00A50000
    assert await _read(master, off) == want
    hi = REGMAP["images"].words()[1][1]
    await master.write(hi, bytes([0x12, 0x34]))
    want_img = (expected["images"] & ~(0xFFFF << 32)) | (0x3412 << 32)
    assert _arg(dut, "images").value.to_unsigned() == want_img
    write_metrics({"words_checked": checked, "reserved_checked": len(_reserved_words())})


async def _manual_write(dut, off, value, aw_delay, w_delay, max_cycles=60):
    """Drive AW and W by hand, AW from cycle ``aw_delay`` and W from cycle ``w_delay``
    (either order, or together), each held until taken; returns the cycles (AW taken,
    W taken, B seen).  Exactly one B must arrive, after both were taken."""
    aw_at = w_at = b_at = None
    for cyc in range(max_cycles):
        await FallingEdge(dut.clk)
        dut.s_axi__awaddr.value = off
        dut.s_axi__awvalid.value = int(aw_at is None and cyc >= aw_delay)
        dut.s_axi__wdata.value = value
        dut.s_axi__wstrb.value = 0xF
        dut.s_axi__wvalid.value = int(w_at is None and cyc >= w_delay)
        await ReadOnly()
        if dut.s_axi__awvalid.value and dut.s_axi__awready.value:
            aw_at = cyc
        if dut.s_axi__wvalid.value and dut.s_axi__wready.value:
            w_at = cyc
        if dut.s_axi__bvalid.value:   # bready is held high
            assert b_at is None, f"second B response for one write (cycle {cyc})"
            assert dut.s_axi__bresp.value == 0, "BRESP not OKAY"
            b_at = cyc
        if b_at is not None and cyc > b_at + 5:
            break
    assert aw_at is not None and w_at is not None, \
        f"AW/W not taken (aw delay {aw_delay}, w delay {w_delay}): aw {aw_at}, w {w_at}"
    assert b_at is not None and b_at > max(aw_at, w_at), f"B at {b_at}, AW {aw_at}, W {w_at}"
    # independence: each channel is taken in the cycle it is presented, not after the other
    assert aw_at == aw_delay and w_at == w_delay, \
        f"AW presented at {aw_delay} taken at {aw_at}, W presented at {w_delay} taken at {w_at}"
    await FallingEdge(dut.clk)
    dut.s_axi__awvalid.value = 0
    dut.s_axi__wvalid.value = 0
    return aw_at, w_at, b_at


async def _manual_read(dut, off, max_cycles=20):
    """AR by hand, then wait for R (rready held high); returns RDATA."""
    await FallingEdge(dut.clk)
    dut.s_axi__araddr.value = off
    dut.s_axi__arvalid.value = 1
    for _ in range(max_cycles):
        await ReadOnly()
        taken = dut.s_axi__arready.value
        await FallingEdge(dut.clk)
        if taken:
            dut.s_axi__arvalid.value = 0
            break
    for _ in range(max_cycles):
        await ReadOnly()
        if dut.s_axi__rvalid.value:
            assert dut.s_axi__rresp.value == 0, "RRESP not OKAY"
            data = dut.s_axi__rdata.value.to_unsigned()
            await FallingEdge(dut.clk)
            return data
        await FallingEdge(dut.clk)
    raise AssertionError(f"no R response for 0x{off:03x}")


@cocotb.test()
async def test_aw_w_independent(dut):
    """AW before W, W before AW (by up to 6 cycles) and both together: each write lands
    once, with one OKAY response after both channels were taken."""
    for r in argument_registers(REGMAP):
        if r.access == "read-only" and r.name not in INTERNAL_READ_ONLY:
            _arg(dut, r.name).value = 0
    _idle_bus(dut)
    await start_clock_reset(dut.clk, dut.rst)
    off = REGMAP.offset("debug_id")
    n = 0
    for aw_delay, w_delay in [(0, 0), (0, 3), (3, 0), (0, 6), (6, 0), (1, 1), (2, 5)]:
        value = 0x1000 * aw_delay + 0x10 * w_delay + n + 1
        await _manual_write(dut, off, value, aw_delay, w_delay)
        assert dut.args__debug_id.value.to_unsigned() == value
        assert await _manual_read(dut, off) == value
        n += 1
    # and through cocotbext-axi with random pauses on AW and W (independent skew)
    master = await _setup(dut, pause_aw=_random_pauses(3, 0.5), pause_w=_random_pauses(4, 0.5),
                          clock=False)
    rng = random.Random(5)
    for r in argument_registers(REGMAP)[:8]:
        if r.access == "read-only":
            continue
        for _, woff in r.words():
            v = rng.getrandbits(32)
            await _write(master, woff, v)
            assert await _read(master, woff) == v
            n += 1
    write_metrics({"skewed_writes": n})


async def _wait_done(master, limit=200):
    """Poll CTRL until ap_done reads 1 (that read clears it); returns the CTRL value."""
    for _ in range(limit):
        v = await _read(master, CTRL)
        if v & BIT["ap_done"]:
            return v
    raise AssertionError("ap_done never read as 1")


@cocotb.test()
async def test_ap_ctrl_hs(dut):
    """ap_start/ap_done/ap_idle/ap_ready sequence with a fake core, clear on read,
    auto_restart, ap_continue, and the cycles-of-the-last-run register."""
    master = await _setup(dut)
    core = FakeCore(dut, run_cycles=tb_params().get("run_cycles", 12))
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    v = await _read(master, CTRL)
    assert v == BIT["ap_idle"], f"after reset CTRL=0x{v:x}, expected only ap_idle"
    await _write(master, CTRL, BIT["ap_start"])
    v = await _read(master, CTRL)
    assert not v & BIT["ap_idle"], f"running but ap_idle set (CTRL=0x{v:x})"
    v = await _wait_done(master)
    assert v & BIT["ap_ready"], "ap_ready not latched with ap_done"
    assert not v & BIT["ap_start"], "ap_start not cleared by ap_ready"
    assert len(core.runs) == 1
    v = await _read(master, CTRL)
    assert not v & (BIT["ap_done"] | BIT["ap_ready"]), f"not cleared on read: 0x{v:x}"
    assert v & BIT["ap_idle"]
    start, done = core.runs[0]
    cyc_words = [off for _, off in REGMAP["cycles"].words()]
    cycles = (await _read(master, cyc_words[0])) | (await _read(master, cyc_words[1])) << 32
    assert cycles == done - start + 1, f"cycles register {cycles}, run {start}..{done}"
    assert not core.continues, "ap_continue pulsed without auto_restart or a write"
    # auto_restart: the core runs again and again until auto_restart is cleared
    core.run_cycles = 4
    await _write(master, CTRL, BIT["ap_start"] | BIT["auto_restart"])
    while len(core.runs) < 4:
        await RisingEdge(dut.clk)
    v = await _read(master, CTRL)
    assert v & BIT["auto_restart"] and v & BIT["ap_start"], f"CTRL=0x{v:x}"
    await _write(master, CTRL, 0)
    runs = len(core.runs)
    for _ in range(30):
        await RisingEdge(dut.clk)
    assert len(core.runs) <= runs + 1, "core kept restarting after auto_restart was cleared"
    v = await _read(master, CTRL)
    assert not v & BIT["ap_start"] and v & BIT["ap_idle"], f"CTRL=0x{v:x}"
    restarts = [d for _, d in core.runs[1:]]
    assert all(c in core.continues for c in restarts[:3]), \
        f"ap_continue not pulsed at ap_done under auto_restart: {core.continues} vs {restarts}"
    # back-to-back runs: a run starts the cycle after the previous one's ap_done
    for (s0, d0), (s1, _) in zip(core.runs[1:], core.runs[2:]):
        assert s1 == d0 + 1, f"restart gap: done {d0}, next start {s1}"
    # ap_continue by host write: one pulse
    n = len(core.continues)
    await _write(master, CTRL, BIT["ap_continue"])
    for _ in range(3):
        await RisingEdge(dut.clk)
    assert len(core.continues) == n + 1, "ap_continue write did not give exactly one pulse"
    write_metrics({"runs": len(core.runs), "first_run_cycles": cycles})


@cocotb.test()
async def test_interrupts(dut):
    """IP_ISR latches ap_done (ch 0) and ap_ready (ch 1) when enabled in IP_IER, toggles on
    write; ``interrupt`` = GIER & any ISR bit."""
    master = await _setup(dut)
    FakeCore(dut, run_cycles=3)
    # nothing enabled: a run sets no ISR bit
    await _write(master, CTRL, BIT["ap_start"])
    await _wait_done(master)
    assert await _read(master, IP_ISR) == 0
    assert not dut.interrupt.value
    # IER ch0 only, GIER off: ISR bit 0 latches, no interrupt line
    await _write(master, IP_IER, 1)
    await _write(master, CTRL, BIT["ap_start"])
    await _wait_done(master)
    assert await _read(master, IP_ISR) == 1
    assert not dut.interrupt.value, "interrupt high with GIER = 0"
    await _write(master, GIER, 1)
    await RisingEdge(dut.clk)
    assert dut.interrupt.value, "interrupt low with GIER = 1 and ISR = 1"
    assert await _read(master, GIER) == 1 and await _read(master, IP_IER) == 1
    # toggle on write: writing 0 changes nothing, writing 1 clears
    await _write(master, IP_ISR, 0)
    assert await _read(master, IP_ISR) == 1
    await _write(master, IP_ISR, 1)
    assert await _read(master, IP_ISR) == 0
    await RisingEdge(dut.clk)
    assert not dut.interrupt.value
    # writing 1 to a clear bit sets it (toggle), as the HLS slave does
    await _write(master, IP_ISR, 2)
    assert await _read(master, IP_ISR) == 2
    await _write(master, IP_ISR, 2)
    # both channels
    await _write(master, IP_IER, 3)
    await _write(master, CTRL, BIT["ap_start"])
    await _wait_done(master)
    assert await _read(master, IP_ISR) == 3
    assert dut.interrupt.value
    await _write(master, IP_ISR, 3)
    await RisingEdge(dut.clk)
    assert not dut.interrupt.value
    assert await _read(master, IP_ISR) == 0
