"""``RegFlagFIFO``: a buffered synchronous FIFO whose flags come straight from flip-flops.

Cycle for cycle the same as Amaranth's ``SyncFIFOBuffered`` (a memory of ``depth - 1``
entries behind an output register: a write is readable two cycles later when empty; same
``w_rdy``/``r_rdy``), but its full and non-empty conditions are the sign bits of two
counters (``room`` = free inner entries - 1, ``fill`` = inner entries - 1) instead of
comparisons of a level against constants, and the memory has a power-of-two depth so the
read and write pointers wrap without a comparator.  So ``w_rdy`` is a flip-flop output and
no flag logic puts a multi-LUT comparator in front of a register (the Yosys timing proxy
measured ``level != 0`` of an 8-bit level as two LUT levels, 1.66 ns).

The capacity is exactly ``depth`` entries (the memory's extra rows stay unused).
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, Signal, signed
from amaranth.lib import memory

from moevit.errors import ConfigError
from moevit.hw.units.common import silence


class RegFlagFIFO(Elaboratable):
    """``w_data``/``w_en``/``w_rdy`` in, ``r_data``/``r_en``/``r_rdy`` out, ``depth`` >= 2."""

    def __init__(self, *, width: int, depth: int):
        if depth < 2:
            silence(self)
            raise ConfigError(f"RegFlagFIFO: depth must be >= 2 (one memory entry and the "
                              f"output register), got {depth}")
        self.width, self.depth = width, depth
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal()
        self.r_data = Signal(width)
        self.r_en = Signal()
        self.r_rdy = Signal()

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 1
        ptr_bits = max(1, (inner - 1).bit_length())
        cnt = signed(inner.bit_length() + 2)
        room = Signal(cnt, init=inner - 1)       # sign bit set: the memory is full
        fill = Signal(cnt, init=-1)              # sign bit set: the memory is empty
        inner_rdy = Signal()
        m.d.comb += [self.w_rdy.eq(~room[-1]), inner_rdy.eq(~fill[-1])]
        do_write = self.w_en & self.w_rdy
        do_read = inner_rdy & (~self.r_rdy | self.r_en)   # memory -> output register
        delta = Signal(signed(2))                # memory entries gained this cycle
        m.d.comb += delta.eq(Mux(do_write & ~do_read, 1, Mux(do_read & ~do_write, -1, 0)))
        m.d.sync += [fill.eq(fill + delta), room.eq(room - delta)]

        storage = memory.Memory(shape=self.width, depth=1 << ptr_bits, init=[])
        m.submodules.storage = storage
        wp, rp = storage.write_port(), storage.read_port(domain="sync")
        produce = Signal(ptr_bits)
        consume = Signal(ptr_bits)
        m.d.comb += [wp.addr.eq(produce), wp.data.eq(self.w_data), wp.en.eq(do_write),
                     rp.addr.eq(consume), rp.en.eq(do_read), self.r_data.eq(rp.data)]
        with m.If(do_write):
            m.d.sync += produce.eq(produce + 1)
        with m.If(do_read):
            m.d.sync += consume.eq(consume + 1)
        with m.If(do_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m


__all__ = ["RegFlagFIFO"]
