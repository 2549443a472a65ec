"""cocotb tests of the AXI4 burst masters (``moevit.hw.top.axi_master.AxiMasterPort``)
against cocotbext-axi's ``AxiRam``.

Phase ``random``: random read and write descriptors (lengths around the 128-beat / 4 KiB
limits, start addresses near page ends, high 64-bit addresses) with random pauses on all five
AXI channels of the RAM and random valid/ready on the engines' streams.  Checked: every read
beat equals the RAM's bytes; after the writes the RAM holds exactly the written beats and
nothing around them changed; every AR/AW burst is INCR, full-width, at most 256 beats, does
not cross 4 KiB, lies inside its descriptor, and the bursts of a descriptor tile it in order
with no burst shorter than the rules force; WLAST ends each burst at its AWLEN; AR, AW and W
hold VALID and their payload until READY (AXI handshake rule); no read is
outstanding beyond the limit and none at the end; after the last beat the engines stay idle
(ready held high, no further VALID on any channel, ``busy`` low).

Phase ``rate``: no pauses, ready always: beats per cycle of a long read and a long write.

Driving and sampling: the testbench drives after the falling edge and samples in the
ReadOnly phase, when what the next rising edge will do is settled.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from moevit.hw.top.axi import BOUNDARY_BYTES, BURST_INCR, MAX_BURST_BEATS
from moevit.sim.runner import tb_params, write_metrics
from moevit.sim.tb_stream import start_clock_reset

ADDR_BITS = 64
RAM_BYTES = 1 << 62


class MasterTB:
    def __init__(self, dut):
        from cocotbext.axi import AxiBus, AxiRam
        self.dut = dut
        self.data_width = len(dut.rd_data__payload)
        self.beat_bytes = self.data_width // 8
        self.size = self.beat_bytes.bit_length() - 1
        # sparse RAM over 2^62 bytes (len() of the model must fit a Python index)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "axi_"), dut.clk, dut.rst, size=RAM_BYTES)
        self.max_outstanding = tb_params().get("max_outstanding", 8)

    def channels(self):
        ram = self.ram
        return [ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                ram.read_if.ar_channel, ram.read_if.r_channel]

    def set_pauses(self, p: float, seed: int, only=None):
        """Random pauses with probability ``p`` on every channel (or those in ``only``:
        indices into :meth:`channels`, AW W B AR R)."""
        for k, ch in enumerate(self.channels()):
            if p > 0 and (only is None or k in only):
                rng = random.Random(seed * 10 + k)
                ch.set_pause_generator(iter(lambda r=rng: r.random() < p, None))
            else:
                ch.clear_pause_generator()

    async def start(self):
        d = self.dut
        for s in ("rd_cmd__valid", "wr_cmd__valid", "wr_data__valid", "rd_data__ready"):
            getattr(d, s).value = 0
        await start_clock_reset(d.clk, d.rst)

    def beat(self, addr: int) -> int:
        return int.from_bytes(self.ram.read(addr, self.beat_bytes), "little")

    async def run(self, reads, writes, *, p_valid=1.0, p_ready=1.0, seed=0,
                  idle_cycles=40, max_cycles=200_000, check_error=True):
        """Run read descriptors ``reads`` [(addr, beats)] and write descriptors ``writes``
        [(addr, [beat ints])] concurrently; returns a dict of what was observed."""
        d = self.dut
        rng = random.Random(seed)
        wbeats = [b for _, beats in writes for b in beats]
        n_read = sum(n for _, n in reads)
        got = []
        ar, aw, wl = [], [], []        # AR/AW bursts (addr, len, size, burst); W burst lengths
        ri = wi = bi = 0
        w_in_burst = 0
        outstanding = max_out = 0
        b_count = r_bursts = 0
        rcmd_off = wcmd_off = wdata_off = False
        first_r = last_r = first_w = last_w = None
        done_at = None
        held = {}
        stalls = {"ar": 0, "aw": 0, "w": 0}    # cycles VALID waited for READY
        for cyc in range(max_cycles):
            await FallingEdge(d.clk)
            if not rcmd_off and ri < len(reads):
                a, n = reads[ri]
                d.rd_cmd__payload.value = a | n << ADDR_BITS
                d.rd_cmd__valid.value = 1
                rcmd_off = True
            elif not rcmd_off:
                d.rd_cmd__valid.value = 0
            if not wcmd_off and wi < len(writes):
                a, beats = writes[wi]
                d.wr_cmd__payload.value = a | len(beats) << ADDR_BITS
                d.wr_cmd__valid.value = 1
                wcmd_off = True
            elif not wcmd_off:
                d.wr_cmd__valid.value = 0
            if not wdata_off and bi < len(wbeats) and rng.random() < p_valid:
                d.wr_data__payload.value = wbeats[bi]
                d.wr_data__valid.value = 1
                wdata_off = True
            elif not wdata_off:
                d.wr_data__valid.value = 0
            ready = done_at is not None or rng.random() < p_ready
            d.rd_data__ready.value = int(ready)
            await ReadOnly()
            _check_stable(d, held, cyc)
            for ch in ("ar", "aw", "w"):
                if getattr(d, f"axi__{ch}valid").value and not getattr(d, f"axi__{ch}ready").value:
                    stalls[ch] += 1
            if rcmd_off and d.rd_cmd__ready.value:
                rcmd_off, ri = False, ri + 1
            if wcmd_off and d.wr_cmd__ready.value:
                wcmd_off, wi = False, wi + 1
            if wdata_off and d.wr_data__ready.value:
                wdata_off, bi = False, bi + 1
            if d.rd_data__valid.value and ready:
                assert done_at is None, f"read beat after the end (cycle {cyc})"
                got.append(d.rd_data__payload.value.to_unsigned())
                first_r = cyc if first_r is None else first_r
                last_r = cyc
            if d.axi__arvalid.value and d.axi__arready.value:
                ar.append((d.axi__araddr.value.to_unsigned(), d.axi__arlen.value.to_unsigned(),
                           d.axi__arsize.value.to_unsigned(), d.axi__arburst.value.to_unsigned()))
                outstanding += 1
                max_out = max(max_out, outstanding)
            if d.axi__rvalid.value and d.axi__rready.value and d.axi__rlast.value:
                outstanding -= 1
                r_bursts += 1
            if d.axi__awvalid.value and d.axi__awready.value:
                aw.append((d.axi__awaddr.value.to_unsigned(), d.axi__awlen.value.to_unsigned(),
                           d.axi__awsize.value.to_unsigned(), d.axi__awburst.value.to_unsigned()))
            if d.axi__wvalid.value and d.axi__wready.value:
                assert done_at is None, f"W beat after the end (cycle {cyc})"
                assert d.axi__wstrb.value.to_unsigned() == (1 << self.beat_bytes) - 1, "partial WSTRB"
                w_in_burst += 1
                first_w = cyc if first_w is None else first_w
                last_w = cyc
                if d.axi__wlast.value:
                    wl.append(w_in_burst)
                    w_in_burst = 0
            if d.axi__bvalid.value and d.axi__bready.value:
                b_count += 1
            if done_at is not None:
                for s in ("arvalid", "awvalid", "wvalid"):
                    assert not getattr(d, f"axi__{s}").value, f"{s} after the end (cycle {cyc})"
                assert not d.rd_busy.value and not d.wr_busy.value, "busy after the end"
                if cyc >= done_at + idle_cycles:
                    break
            elif (len(got) == n_read and bi == len(wbeats) and ri == len(reads)
                  and wi == len(writes) and not d.rd_busy.value and not d.wr_busy.value):
                done_at = cyc
        else:
            raise AssertionError(f"timeout: {len(got)}/{n_read} read beats, {bi}/{len(wbeats)} "
                                 f"write beats, busy rd={d.rd_busy.value} wr={d.wr_busy.value}")
        await FallingEdge(d.clk)
        for s in ("rd_cmd__valid", "wr_cmd__valid", "wr_data__valid"):
            getattr(d, s).value = 0
        assert outstanding == 0, f"{outstanding} reads outstanding at the end"
        assert b_count == len(aw), f"{len(aw)} AW bursts but {b_count} B responses"
        assert r_bursts == len(ar), f"{len(ar)} AR bursts but {r_bursts} RLAST"
        if check_error:
            assert not d.rd_error.value and not d.wr_error.value, "error flag set"
        return dict(got=got, ar=ar, aw=aw, wl=wl, max_outstanding=max_out, stalls=stalls,
                    read_span=(last_r - first_r + 1) if got else 0,
                    write_span=(last_w - first_w + 1) if wbeats else 0)

    def check_bursts(self, bursts, descriptors, what):
        """Bursts are INCR, full width, <= 256 beats, inside one 4 KiB page, and tile the
        descriptors in order; each burst but a descriptor's last ends at a page boundary or
        is 256 beats long (no needless splitting)."""
        it = iter(bursts)
        count = 0
        for addr, beats in descriptors:
            pos, end = addr, addr + beats * self.beat_bytes
            while pos < end:
                try:
                    a, ln, size, burst = next(it)
                except StopIteration:
                    raise AssertionError(f"{what}: descriptor 0x{addr:x}+{beats} not covered "
                                         f"(stops at 0x{pos:x})") from None
                n = ln + 1
                count += 1
                assert size == self.size and burst == BURST_INCR, f"{what}: size/burst {size}/{burst}"
                assert n <= MAX_BURST_BEATS, f"{what}: {n}-beat burst"
                assert a == pos, f"{what}: burst at 0x{a:x}, expected 0x{pos:x} (descriptor " \
                                 f"0x{addr:x}+{beats})"
                stop = a + n * self.beat_bytes
                assert stop <= end, f"{what}: burst 0x{a:x}+{n} leaves descriptor 0x{addr:x}+{beats}"
                assert a // BOUNDARY_BYTES == (stop - 1) // BOUNDARY_BYTES, \
                    f"{what}: burst 0x{a:x}+{n} crosses 4 KiB"
                if stop < end:
                    assert stop % BOUNDARY_BYTES == 0 or n == MAX_BURST_BEATS, \
                        f"{what}: needless short burst 0x{a:x}+{n}"
                pos = stop
        rest = list(it)
        assert not rest, f"{what}: extra bursts {rest[:3]}"
        return count


#: AXI rule: once VALID is high it stays high, with the same payload, until READY
_STABLE = {"ar": ("araddr", "arlen", "arsize", "arburst", "arid"),
           "aw": ("awaddr", "awlen", "awsize", "awburst", "awid"),
           "w": ("wdata", "wstrb", "wlast")}


def _u(v) -> int:
    """Unsigned value of a cocotb Logic (1 bit) or LogicArray."""
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


def _check_stable(d, held: dict, cyc: int) -> None:
    """Protocol check of the master's AR, AW and W channels (``held``: what a channel
    showed while VALID was high and READY low in the previous cycle)."""
    for ch, fields in _STABLE.items():
        valid = bool(getattr(d, f"axi__{ch}valid").value)
        if ch in held:
            assert valid, f"{ch.upper()}VALID dropped before READY (cycle {cyc})"
            now = tuple(_u(getattr(d, f"axi__{f}").value) for f in fields)
            assert now == held[ch], f"{ch.upper()} payload changed while waiting (cycle {cyc})"
        if valid and not getattr(d, f"axi__{ch}ready").value:
            held[ch] = tuple(_u(getattr(d, f"axi__{f}").value) for f in fields)
        else:
            held.pop(ch, None)


def d_error(dut, engine: str) -> bool:
    return bool(getattr(dut, f"{engine}_error").value)


def _descriptors(rng, base, beat_bytes, lengths, gap_pages=1):
    """Non-overlapping descriptors from ``base``, starting at varied offsets in a page."""
    out, pos = [], base
    for n in lengths:
        off = rng.choice([0, BOUNDARY_BYTES - beat_bytes, BOUNDARY_BYTES - 3 * beat_bytes,
                          rng.randrange(BOUNDARY_BYTES // beat_bytes) * beat_bytes])
        addr = pos + off
        out.append((addr, n))
        end = addr + n * beat_bytes
        pos = (end // BOUNDARY_BYTES + gap_pages) * BOUNDARY_BYTES
    return out


@cocotb.test()
async def test_random_backpressure(dut):
    p = tb_params()
    tb = MasterTB(dut)
    await tb.start()
    rng = random.Random(p.get("seed", 1))
    bb = tb.beat_bytes
    lengths = [1, 2, 127, 128, 129, 257, 300] + [rng.randrange(1, 200) for _ in range(p.get("extra", 3))]
    rng.shuffle(lengths)
    rbase = 0x0000_0012_3400_0000
    wbase = 0x3FFF_FF00_0000_0000      # high address bits set (up to the RAM's 2^62)
    reads = _descriptors(rng, rbase, bb, lengths)
    reads.append((reads[0][0], 0))     # a zero-length descriptor does nothing
    reads.append(reads[1])              # re-read an earlier range
    span_end = max(a + n * bb for a, n in reads) + BOUNDARY_BYTES
    tb.ram.write(rbase, rng.randbytes(span_end - rbase))
    wdesc = _descriptors(rng, wbase, bb, lengths[::-1])
    wend = max(a + n * bb for a, n in wdesc) + BOUNDARY_BYTES
    background = rng.randbytes(wend - wbase)
    tb.ram.write(wbase, background)
    writes = [(a, [rng.getrandbits(tb.data_width) for _ in range(n)]) for a, n in wdesc]
    writes.insert(2, (wdesc[0][0], []))   # zero-length write: no AW, no W

    expect = [tb.beat(a + k * bb) for a, n in reads for k in range(n)]
    tb.set_pauses(p.get("pause", 0.3), seed=p.get("seed", 1))
    res = await tb.run(reads, writes, p_valid=p.get("p_valid", 0.7),
                       p_ready=p.get("p_ready", 0.7), seed=p.get("seed", 1))
    got = res["got"]
    assert len(got) == len(expect)
    bad = [k for k, (g, e) in enumerate(zip(got, expect)) if g != e]
    assert not bad, f"{len(bad)} read beats differ, first at beat {bad[0]}"
    n_ar = tb.check_bursts(res["ar"], [r for r in reads if r[1]], "AR")
    n_aw = tb.check_bursts(res["aw"], [(a, len(b)) for a, b in writes if b], "AW")
    assert res["wl"] == [ln + 1 for _, ln, _, _ in res["aw"]], "WLAST does not match AWLEN"
    # RAM after the writes: written beats, and the background everywhere else
    want = bytearray(background)
    for a, beats in writes:
        for k, v in enumerate(beats):
            o = a - wbase + k * bb
            want[o:o + bb] = v.to_bytes(bb, "little")
    have = tb.ram.read(wbase, len(want))
    if have != bytes(want):
        first = next(i for i in range(len(want)) if have[i] != want[i])
        raise AssertionError(f"RAM differs at 0x{wbase + first:x} after the writes")
    assert 1 < res["max_outstanding"] <= tb.max_outstanding, res["max_outstanding"]
    assert all(res["stalls"].values()), f"a channel never saw back-pressure: {res['stalls']}"
    write_metrics({"read_beats": len(got), "write_beats": sum(len(b) for _, b in writes),
                   "ar_bursts": n_ar, "aw_bursts": n_aw,
                   "max_outstanding_reads": res["max_outstanding"],
                   "stall_cycles": res["stalls"]})


@cocotb.test()
async def test_address_channel_stalls(dut):
    """Descriptors of a few beats across page ends give back-to-back bursts; with AR and AW
    paused (and data flowing freely, so few bursts are outstanding) the next burst is ready
    while the previous address still waits: it must not overwrite it."""
    tb = MasterTB(dut)
    await tb.start()
    rng = random.Random(9)
    bb = tb.beat_bytes
    page = BOUNDARY_BYTES
    base_r, base_w = 0x7_0000_0000, 0x8_0000_0000
    shapes = [(page - bb, 2), (page - bb, 3), (page - 2 * bb, 3), (page - bb, 130)] * 3
    reads = [(base_r + 4 * k * page + off, n) for k, (off, n) in enumerate(shapes)]
    tb.ram.write(base_r, rng.randbytes(4 * len(shapes) * page))
    writes = [(base_w + 4 * k * page + off, [rng.getrandbits(tb.data_width) for _ in range(n)])
              for k, (off, n) in enumerate(shapes)]
    expect = [tb.beat(a + k * bb) for a, n in reads for k in range(n)]
    tb.set_pauses(0.5, seed=9, only=(0, 3))
    res = await tb.run(reads, writes)
    assert res["got"] == expect, "read data differ"
    tb.check_bursts(res["ar"], reads, "AR")
    tb.check_bursts(res["aw"], [(a, len(b)) for a, b in writes], "AW")
    for a, beats in writes:
        assert tb.ram.read(a, len(beats) * bb) == b"".join(v.to_bytes(bb, "little")
                                                           for v in beats)
    assert res["stalls"]["ar"] and res["stalls"]["aw"]
    write_metrics({"address_stall_bursts": len(res["ar"]) + len(res["aw"])})


@cocotb.test()
async def test_rate_no_backpressure(dut):
    """One long read and one long write at the same time, nothing pausing: beats/cycle."""
    p = tb_params()
    tb = MasterTB(dut)
    await tb.start()
    tb.set_pauses(0, 0)
    rng = random.Random(2)
    n = p.get("rate_beats", 1024)
    bb = tb.beat_bytes
    raddr, waddr = 0x1_0000_0000, 0x2_0000_0000
    tb.ram.write(raddr, rng.randbytes(n * bb))
    beats = [rng.getrandbits(tb.data_width) for _ in range(n)]
    res = await tb.run([(raddr, n)], [(waddr, beats)])
    assert res["got"] == [tb.beat(raddr + k * bb) for k in range(n)]
    assert tb.ram.read(waddr, n * bb) == b"".join(v.to_bytes(bb, "little") for v in beats)
    # a misaligned descriptor raises the (sticky) error flag of the engine that took it
    res2 = await tb.run([(raddr + 4, 1)], [], check_error=False)
    assert res2["got"] == [tb.beat(raddr)]
    assert d_error(dut, "rd") and not d_error(dut, "wr"), "misaligned read not flagged"
    write_metrics({"misaligned_flagged": True})
    write_metrics({"rate_beats": n,
                   "read_beats_per_cycle": round(n / res["read_span"], 4),
                   "write_beats_per_cycle": round(n / res["write_span"], 4),
                   "rate_max_outstanding_reads": res["max_outstanding"]})
