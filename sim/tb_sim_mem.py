"""cocotb tests of the simulated DRAM's slave port itself (``moevit_sim_mem_port``: one port
of ``sim/mem/moevit_sim_mem.v``) driven by cocotbext-axi's ``AxiMaster``, a protocol-level
master independent of our RTL masters.

* ``test_init_plusarg``: the ``+SIM_MEM_INIT`` image is in memory at time 0 (zeros without).
* ``test_random_access``: the memory is loaded with random bytes (one ``$readmemh``); then
  concurrent writes of random length at random byte offsets (partial first/last beats: WSTRB;
  bursts the master splits at 4 KiB), several IDs in flight, then concurrent reads of random
  ranges -- every byte read equals a bytearray model; a ``$writememh`` dump of the whole
  memory equals the model too.  Random stalls and read latency on.
* ``test_illegal_bursts``: a narrow (4-byte) write and a read past the memory's end get
  SLVERR, raise ``sim_mem_error``, and leave the memory unchanged.
* ``test_raw_protocol_errors``: bursts a correct master never issues, driven signal by
  signal (a read crossing 4 KiB, a write with an early WLAST): SLVERR and the flag; a
  one-beat write with a 2-byte WSTRB changes exactly those bytes.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from moevit.sim.mem.tb import SimMemTB
from moevit.sim.runner import tb_config, tb_params, write_metrics


class PortTB(SimMemTB):
    def __init__(self, dut):
        super().__init__(dut, word_bytes=tb_config().axi_width // 8, clock="clk",
                         reset_n="rst_n")
        from cocotbext.axi import AxiBus, AxiMaster
        self.axi = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), self.clk, self.rst_n,
                             reset_active_level=False)
        self.size = (1 << tb_params()["words_log2"]) * self.word_bytes


@cocotb.test()
async def test_init_plusarg(dut):
    """At time 0 the memory holds the ``+SIM_MEM_INIT`` image (param ``init_check``:
    ``{"addr": a, "hex": bytes}`` written there by the host before the run), or, without
    one, zeros everywhere (this test runs first: the others write the memory)."""
    p = tb_params()
    tb = SimMemTB(dut, word_bytes=tb_config().axi_width // 8, clock="clk", reset_n="rst_n")
    await tb.start()
    check = p.get("init_check")
    if check:
        want = bytes.fromhex(check["hex"])
        got = bytes(await tb.dump(check["addr"], len(want)))
        assert got == want, "memory at time 0 differs from the +SIM_MEM_INIT image"
        lo = await tb.dump(0, check["addr"]) if check["addr"] else np.zeros(0, np.uint8)
        assert not lo.any(), "words below the image are not 0"
    else:
        size = (1 << p["words_log2"]) * tb.word_bytes
        assert not (await tb.dump(0, size)).any(), "unloaded memory is not all zeros"
    write_metrics({"init_checked": bool(check)})


@cocotb.test()
async def test_random_access(dut):
    p = tb_params()
    tb = PortTB(dut)
    await tb.start(stall=p.get("stall", 90), latency=p.get("latency", 11), seed=p.get("seed", 5))
    rng = random.Random(p.get("seed", 5))
    model = bytearray(rng.randbytes(tb.size))
    await tb.load({0: np.frombuffer(bytes(model), np.uint8)})
    # disjoint random write ranges, issued concurrently
    cuts = sorted(rng.sample(range(1, tb.size), 2 * p.get("writes", 24)))
    ranges = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)]
    ranges = [(a, min(b, a + rng.choice([1, 7, 33, 100, 4100, 9000]))) for a, b in ranges]
    tasks = []
    for a, b in ranges:
        data = rng.randbytes(b - a)
        model[a:b] = data
        tasks.append(cocotb.start_soon(tb.axi.write(a, data)))
    for t in tasks:
        resp = await t
        assert resp.resp == 0, f"write response {resp.resp}"
    reads = []
    for _ in range(p.get("reads", 24)):
        a = rng.randrange(tb.size - 1)
        n = rng.randrange(1, min(tb.size - a, 6000))
        reads.append((a, n, cocotb.start_soon(tb.axi.read(a, n))))
    for a, n, t in reads:
        resp = await t
        assert resp.resp == 0, f"read response {resp.resp}"
        assert bytes(resp.data) == bytes(model[a:a + n]), f"read 0x{a:x}+{n} differs"
    dumped = await tb.dump(0, tb.size)
    bad = np.flatnonzero(dumped != np.frombuffer(bytes(model), np.uint8))
    assert not len(bad), f"dump differs from the model at {len(bad)} bytes, first 0x{bad[0]:x}"
    assert not tb.error and not tb.busy
    rd, wr = tb.beats()
    write_metrics({"axi_master_writes": len(ranges), "axi_master_reads": len(reads),
                   "port_rd_beats": rd[0], "port_wr_beats": wr[0]})


@cocotb.test()
async def test_illegal_bursts(dut):
    from cocotbext.axi import AxiResp
    tb = PortTB(dut)
    await tb.start(stall=40, latency=3, seed=9)
    before = await tb.dump(0, 4 * tb.word_bytes)
    resp = await tb.axi.write(0, b"\x11\x22\x33\x44", size=2)
    assert resp.resp == AxiResp.SLVERR, f"narrow write answered {resp.resp}"
    assert tb.error, "narrow burst not flagged"
    assert (await tb.dump(0, 4 * tb.word_bytes) == before).all(), "narrow write changed memory"
    await tb.reset()
    assert not tb.error
    resp = await tb.axi.read(tb.size - tb.word_bytes, 2 * tb.word_bytes)
    assert resp.resp == AxiResp.SLVERR, f"read past the end answered {resp.resp}"
    assert tb.error, "read past the end not flagged"
    write_metrics({"illegal_bursts_flagged": 2})


class RawPort:
    """Drives one channel handshake at a time from Python (for bursts a correct master never
    issues): inputs change after falling edges; a transfer happens at the rising edge after
    a falling edge that saw VALID and READY high."""

    def __init__(self, dut):
        self.d = dut
        for s in ("arvalid", "awvalid", "wvalid"):
            getattr(dut, f"s_axi_{s}").value = 0
        dut.s_axi_rready.value = 1
        dut.s_axi_bready.value = 1

    async def send(self, ch: str, **fields) -> None:
        from cocotb.triggers import FallingEdge
        d = self.d
        await FallingEdge(d.clk)
        for k, v in fields.items():
            getattr(d, f"s_axi_{ch}{k}").value = v
        getattr(d, f"s_axi_{ch}valid").value = 1
        while True:
            ready = bool(getattr(d, f"s_axi_{ch}ready").value)
            await FallingEdge(d.clk)
            if ready:
                break
        getattr(d, f"s_axi_{ch}valid").value = 0

    async def collect(self, ch: str, fields: tuple, count: int, max_cycles: int = 200):
        """``count`` transfers of the R or B channel: tuples of ``fields``."""
        from cocotb.triggers import FallingEdge
        d, out = self.d, []
        for _ in range(max_cycles):
            await FallingEdge(d.clk)
            if getattr(d, f"s_axi_{ch}valid").value:
                out.append(tuple(int(getattr(d, f"s_axi_{ch}{f}").value) for f in fields))
                if len(out) == count:
                    return out
        raise AssertionError(f"{ch.upper()}: {len(out)} of {count} transfers")


@cocotb.test()
async def test_raw_protocol_errors(dut):
    """A read burst crossing 4 KiB and a write burst whose WLAST comes early: SLVERR,
    ``sim_mem_error``, nothing written; after reset a legal write gets OKAY."""
    wb = tb_config().axi_width // 8
    tb = SimMemTB(dut, word_bytes=wb, clock="clk", reset_n="rst_n")
    raw = RawPort(dut)
    await tb.start(stall=0, latency=0)
    await tb.load({0: bytes(range(256)) * (8192 // 256)})
    before = await tb.dump(0, 8192)
    full = (1 << wb) - 1
    r = cocotb.start_soon(raw.collect("r", ("resp", "last", "id", "data"), 2))
    await raw.send("ar", id=3, addr=4096 - wb, len=1, size=wb.bit_length() - 1, burst=1)
    beats = await r
    assert [(resp, last, i) for resp, last, i, _ in beats] == [(2, 0, 3), (2, 1, 3)], beats
    assert all(data == 0 for *_, data in beats), "an error burst returned memory data"
    assert tb.error, "4 KiB crossing not flagged"
    await tb.reset()
    b = cocotb.start_soon(raw.collect("b", ("resp", "id"), 1))
    await raw.send("aw", id=5, addr=0x100, len=3, size=wb.bit_length() - 1, burst=1)
    await raw.send("w", data=(1 << 8 * wb) - 1, strb=full, last=0)
    await raw.send("w", data=(1 << 8 * wb) - 1, strb=full, last=1)     # AWLEN says 4 beats
    assert await b == [(2, 5)], "early WLAST not answered with SLVERR"
    assert tb.error, "early WLAST not flagged"
    after = await tb.dump(0, 8192)
    # the two beats before the WLAST mismatch were written (a real slave has no choice)
    want = before.copy()
    want[0x100:0x100 + 2 * wb] = 0xFF
    assert (after == want).all(), "memory differs beyond the beats sent"
    await tb.reset()
    b = cocotb.start_soon(raw.collect("b", ("resp", "id"), 1))
    await raw.send("aw", id=1, addr=0x200, len=0, size=wb.bit_length() - 1, burst=1)
    await raw.send("w", data=0x1234, strb=0b11, last=1)
    assert await b == [(0, 1)] and not tb.error
    assert bytes(await tb.dump(0x200, 4)) == bytes([0x34, 0x12, 0x02, 0x03])
    write_metrics({"raw_protocol_errors_flagged": 2})

