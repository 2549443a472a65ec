"""AXI4 burst memory masters: a read engine, a write engine, and one port holding both.

A *descriptor* is ``(addr, beats)``: a byte address aligned to the beat size and a length in
data beats (``cfg.axi_width`` bits each; 256 bits = 8 ``fm_t`` in every DRAM layout of spec
§7).  An engine splits a descriptor into INCR bursts of at most 256 beats that never cross a
4 KiB boundary (AXI4 rules; with 32-byte beats a burst is at most 128 beats), keeps up to
``max_outstanding`` bursts in flight, and moves one beat per cycle when memory allows.

* :class:`AxiBurstReader`: descriptors in (``cmd``), beats out (``data``, in address order:
  one ID, so the interconnect returns bursts in order).  ``rready`` is ``data.ready``.
* :class:`AxiBurstWriter`: descriptors in (``cmd``), beats in (``data``), WSTRB all ones.  W
  beats of a burst are sent as soon as its AW is *presented* (not only once AW is taken), so
  a slave that waits for WVALID before AWREADY cannot deadlock it.
* :class:`AxiMasterPort`: a reader and a writer on one AXI4 master (``axi``), as each
  ``m_axi`` bundle of the top level.

Status: ``busy`` is high from a descriptor's acceptance until its last beat/response (so
``~busy`` means nothing is outstanding); ``error`` is sticky (until reset) once a response
other than OKAY arrives or a descriptor address is not beat-aligned (its low bits are then
ignored: the host allocates 4 KiB-aligned buffers and spec §7 offsets are whole beats).
Zero-beat descriptors are accepted and do nothing.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.common import silence
from moevit.hw.top.axi import (BOUNDARY_BYTES, BURST_INCR, CACHE_BUFFERABLE, MAX_BURST_BEATS,
                               RESP_OKAY, axi4_read_members, axi4_signature,
                               axi4_write_members, connect_members)

#: AXI address width of the kernel's masters (Edge-MoE's m_axi ports are 64-bit, spec §10.3)
ADDR_WIDTH = 64
#: bits of a descriptor's beat count (2^24 beats of 32 bytes = 512 MiB)
BEATS_WIDTH = 24
DEFAULT_OUTSTANDING = 8


def descriptor_layout(addr_width: int = ADDR_WIDTH, beats_width: int = BEATS_WIDTH):
    """``addr`` (bytes, low bits of the payload) then ``beats``."""
    return data.StructLayout({"addr": addr_width, "beats": beats_width})


class _MasterParams:
    """Widths and limits shared by the engines, checked once."""

    def __init__(self, cfg: AcceleratorConfig | None, data_width: int | None, addr_width: int,
                 id_width: int, max_outstanding: int, beats_width: int):
        if data_width is None:
            if cfg is None:
                raise ConfigError("an AXI master needs a config (cfg.axi_width) or data_width")
            data_width = cfg.axi_width
        if data_width < 8 or data_width & (data_width - 1) or data_width > 1024:
            raise ConfigError(f"AXI data width {data_width} must be a power of two in 8..1024 "
                              f"bits (AXI4 rule); check cfg.axi_width")
        if not 12 < addr_width <= 64:
            raise ConfigError(f"AXI address width {addr_width} must be 13..64 bits")
        if max_outstanding < 1:
            raise ConfigError(f"max_outstanding {max_outstanding} must be >= 1")
        if id_width < 1:
            raise ConfigError(f"id_width {id_width} must be >= 1 (cocotbext-axi and Vivado "
                              f"need the ID signals)")
        self.data_width = data_width
        self.addr_width = addr_width
        self.id_width = id_width
        self.max_outstanding = max_outstanding
        self.beats_width = beats_width
        self.beat_bytes = data_width // 8
        self.size = self.beat_bytes.bit_length() - 1          # AxSIZE = log2(bytes per beat)
        self.boundary_beats = BOUNDARY_BYTES // self.beat_bytes
        self.max_burst = min(MAX_BURST_BEATS, self.boundary_beats)


def _params(owner, *args) -> _MasterParams:
    """:class:`_MasterParams`, silencing ``owner`` (being abandoned) when they are invalid."""
    try:
        return _MasterParams(*args)
    except ConfigError:
        silence(owner)
        raise


def _burst_planner(m: Module, p: _MasterParams, addr, left):
    """Beats of the next burst from byte address ``addr`` with ``left`` beats to go: the
    fewest of ``left``, the beats to the next 4 KiB boundary and 256."""
    page_bits = BOUNDARY_BYTES.bit_length() - 1
    offset = addr[p.size:page_bits]                           # beat index within the page
    to_boundary = Signal(range(p.boundary_beats + 1))
    m.d.comb += to_boundary.eq(p.boundary_beats - offset)
    limit = Signal(range(p.max_burst + 1))
    if p.max_burst < p.boundary_beats:
        m.d.comb += limit.eq(Mux(to_boundary > p.max_burst, p.max_burst, to_boundary))
    else:
        m.d.comb += limit.eq(to_boundary)
    burst = Signal(range(p.max_burst + 1))
    m.d.comb += burst.eq(Mux(left < limit, left, limit))
    return burst


class _DescriptorSplitter:
    """The address/length registers of the descriptor being issued, and the step that
    latches one burst (address and ``len`` = beats - 1) into an AR/AW holding register."""

    def __init__(self, m: Module, p: _MasterParams, cmd, can_issue):
        self.active = Signal()
        addr = Signal(p.addr_width)
        left = Signal(p.beats_width)
        self.burst = _burst_planner(m, p, addr, left)
        self.issue = Signal()
        self.addr = addr
        #: a descriptor address with low bits set was accepted (one-cycle pulse)
        self.misaligned = Signal()
        m.d.comb += [cmd.ready.eq(~self.active),
                     self.issue.eq(self.active & can_issue)]
        with m.If(cmd.valid & cmd.ready & (cmd.p.beats != 0)):
            m.d.sync += [self.active.eq(1),
                         addr.eq(cmd.p.addr & ~(p.beat_bytes - 1)),
                         left.eq(cmd.p.beats)]
            m.d.comb += self.misaligned.eq(cmd.p.addr[:p.size] != 0)
        with m.If(self.issue):
            m.d.sync += [addr.eq(addr + (self.burst << p.size)), left.eq(left - self.burst)]
            with m.If(left == self.burst):
                m.d.sync += self.active.eq(0)


def _drive_static(m, axi, prefix: str, p: _MasterParams) -> None:
    m.d.comb += [getattr(axi, f"{prefix}id").eq(0),
                 getattr(axi, f"{prefix}size").eq(p.size),
                 getattr(axi, f"{prefix}burst").eq(BURST_INCR),
                 getattr(axi, f"{prefix}lock").eq(0),
                 getattr(axi, f"{prefix}cache").eq(CACHE_BUFFERABLE),
                 getattr(axi, f"{prefix}prot").eq(0),
                 getattr(axi, f"{prefix}qos").eq(0)]


class AxiBurstReader(wiring.Component):
    """Descriptors in, ``data_width``-bit beats out, via AXI4 AR/R (see module doc)."""

    def __init__(self, cfg: AcceleratorConfig | None = None, *, data_width: int | None = None,
                 addr_width: int = ADDR_WIDTH, id_width: int = 1,
                 max_outstanding: int = DEFAULT_OUTSTANDING, beats_width: int = BEATS_WIDTH):
        self.p = _params(self, cfg, data_width, addr_width, id_width, max_outstanding,
                         beats_width)
        super().__init__({
            "cmd": In(stream.Signature(descriptor_layout(addr_width, beats_width))),
            "data": Out(stream.Signature(self.p.data_width)),
            "axi": Out(wiring.Signature(axi4_read_members(addr_width, self.p.data_width,
                                                          id_width))),
            "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, axi = self.p, self.axi
        outstanding = Signal(range(p.max_outstanding + 1))
        pending = Signal()
        ar_addr = Signal(p.addr_width)
        ar_len = Signal(8)
        ar_taken = Signal()
        m.d.comb += ar_taken.eq(pending & axi.arready)
        split = _DescriptorSplitter(m, p, self.cmd, (~pending | axi.arready) &
                                    (outstanding < p.max_outstanding))
        with m.If(split.issue):
            m.d.sync += [pending.eq(1), ar_addr.eq(split.addr), ar_len.eq(split.burst - 1)]
        with m.Elif(ar_taken):
            m.d.sync += pending.eq(0)
        m.d.comb += [axi.arvalid.eq(pending), axi.araddr.eq(ar_addr), axi.arlen.eq(ar_len)]
        _drive_static(m, axi, "ar", p)

        last_beat = Signal()
        m.d.comb += [self.data.valid.eq(axi.rvalid), self.data.payload.eq(axi.rdata),
                     axi.rready.eq(self.data.ready),
                     last_beat.eq(axi.rvalid & axi.rready & axi.rlast)]
        m.d.sync += outstanding.eq(outstanding + split.issue - last_beat)
        with m.If((axi.rvalid & axi.rready & (axi.rresp != RESP_OKAY)) | split.misaligned):
            m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(split.active | pending | (outstanding != 0))
        return m


class AxiBurstWriter(wiring.Component):
    """Descriptors and ``data_width``-bit beats in, via AXI4 AW/W/B (see module doc)."""

    def __init__(self, cfg: AcceleratorConfig | None = None, *, data_width: int | None = None,
                 addr_width: int = ADDR_WIDTH, id_width: int = 1,
                 max_outstanding: int = DEFAULT_OUTSTANDING, beats_width: int = BEATS_WIDTH):
        self.p = _params(self, cfg, data_width, addr_width, id_width, max_outstanding,
                         beats_width)
        super().__init__({
            "cmd": In(stream.Signature(descriptor_layout(addr_width, beats_width))),
            "data": In(stream.Signature(self.p.data_width)),
            "axi": Out(wiring.Signature(axi4_write_members(addr_width, self.p.data_width,
                                                           id_width))),
            "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, axi = self.p, self.axi
        m.submodules.lens = lens = SyncFIFOBuffered(width=8, depth=p.max_outstanding)
        outstanding = Signal(range(p.max_outstanding + 1))    # bursts presented, no B yet
        pending = Signal()
        aw_addr = Signal(p.addr_width)
        aw_len = Signal(8)
        aw_taken = Signal()
        m.d.comb += aw_taken.eq(pending & axi.awready)
        split = _DescriptorSplitter(m, p, self.cmd, (~pending | axi.awready) & lens.w_rdy &
                                    (outstanding < p.max_outstanding))
        with m.If(split.issue):
            m.d.sync += [pending.eq(1), aw_addr.eq(split.addr), aw_len.eq(split.burst - 1)]
        with m.Elif(aw_taken):
            m.d.sync += pending.eq(0)
        m.d.comb += [axi.awvalid.eq(pending), axi.awaddr.eq(aw_addr), axi.awlen.eq(aw_len),
                     lens.w_en.eq(split.issue), lens.w_data.eq(split.burst - 1)]
        _drive_static(m, axi, "aw", p)

        # W: beats of the burst at the head of the length FIFO
        count = Signal(8)
        w_taken = Signal()
        m.d.comb += [axi.wvalid.eq(self.data.valid & lens.r_rdy),
                     axi.wdata.eq(self.data.payload),
                     axi.wstrb.eq((1 << p.beat_bytes) - 1),
                     axi.wlast.eq(count == lens.r_data),
                     self.data.ready.eq(axi.wready & lens.r_rdy),
                     w_taken.eq(axi.wvalid & axi.wready)]
        with m.If(w_taken):
            m.d.sync += count.eq(Mux(axi.wlast, 0, count + 1))
            m.d.comb += lens.r_en.eq(axi.wlast)

        b_taken = Signal()
        m.d.comb += [axi.bready.eq(1), b_taken.eq(axi.bvalid)]
        m.d.sync += outstanding.eq(outstanding + split.issue - b_taken)
        with m.If((b_taken & (axi.bresp != RESP_OKAY)) | split.misaligned):
            m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(split.active | pending | (outstanding != 0) | lens.r_rdy)
        return m


class AxiMasterPort(wiring.Component):
    """One AXI4 master (``axi``) carrying an :class:`AxiBurstReader` (``rd_*``) and an
    :class:`AxiBurstWriter` (``wr_*``)."""

    def __init__(self, cfg: AcceleratorConfig | None = None, *, data_width: int | None = None,
                 addr_width: int = ADDR_WIDTH, id_width: int = 1,
                 max_outstanding: int = DEFAULT_OUTSTANDING, beats_width: int = BEATS_WIDTH):
        kw = dict(data_width=data_width, addr_width=addr_width, id_width=id_width,
                  max_outstanding=max_outstanding, beats_width=beats_width)
        try:
            self.reader = AxiBurstReader(cfg, **kw)
            self.writer = AxiBurstWriter(cfg, **kw)
        except ConfigError:
            silence(self)
            raise
        self.p = self.reader.p
        desc = descriptor_layout(addr_width, beats_width)
        super().__init__({
            "axi": Out(axi4_signature(addr_width, self.p.data_width, id_width)),
            "rd_cmd": In(stream.Signature(desc)),
            "rd_data": Out(stream.Signature(self.p.data_width)),
            "wr_cmd": In(stream.Signature(desc)),
            "wr_data": In(stream.Signature(self.p.data_width)),
            "rd_busy": Out(1), "rd_error": Out(1), "wr_busy": Out(1), "wr_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = rd = self.reader
        m.submodules.writer = wr = self.writer
        p = self.p
        connect_members(m, self.axi, rd.axi, axi4_read_members(p.addr_width, p.data_width,
                                                               p.id_width))
        connect_members(m, self.axi, wr.axi, axi4_write_members(p.addr_width, p.data_width,
                                                                p.id_width))
        wiring.connect(m, wiring.flipped(self.rd_cmd), rd.cmd)
        wiring.connect(m, rd.data, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_cmd), wr.cmd)
        wiring.connect(m, wiring.flipped(self.wr_data), wr.data)
        m.d.comb += [self.rd_busy.eq(rd.busy), self.rd_error.eq(rd.error),
                     self.wr_busy.eq(wr.busy), self.wr_error.eq(wr.error)]
        return m
