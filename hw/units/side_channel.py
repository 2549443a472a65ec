"""``SideChannel``: run a stream unit with extra data travelling alongside each item.

The wrapped unit (an in-order valid/ready component with ports ``i``/``o`` and a
``latency``, e.g. :class:`~moevit.hw.units.exp.Exp` or :class:`~moevit.hw.units.divide.Divide`)
sees only its own payload; the side data goes into a FIFO when the item enters and leaves
with the unit's result.  The FIFO holds ``latency + 2`` entries, enough for one item per
clock, so the wrapper keeps the unit's rate and latency whatever its pipeline depth.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out


class SideChannel(wiring.Component):
    """``i``: {x: unit input, side}; ``o``: {y: unit output, side}.  The unit's latency
    must be at least 2 (the buffered FIFO's read latency)."""

    def __init__(self, unit, side_shape, *, name: str = "unit"):
        assert unit.latency >= 2, "SideChannel needs a unit latency >= 2"
        self.unit = unit
        self.unit_name = name
        self.side_shape = side_shape
        self.side_width = Shape.cast(side_shape).width
        in_shape = unit.i.payload.shape()
        out_shape = unit.o.payload.shape()
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": in_shape, "side": side_shape}))),
            "o": Out(stream.Signature(data.StructLayout({"y": out_shape, "side": side_shape}))),
        })

    @property
    def latency(self) -> int:
        return self.unit.latency

    def elaborate(self, platform):
        m = Module()
        u = self.unit
        m.submodules[self.unit_name] = u
        q = fifo.SyncFIFOBuffered(width=self.side_width, depth=u.latency + 3)
        m.submodules.side = q
        take = self.i.valid & self.i.ready
        # registered "room for one more": at most one entry arrives per cycle, so room two
        # entries deep last cycle is room now (keeps the FIFO level off the ready path)
        room = Signal(init=1)
        m.d.sync += room.eq(q.level < q.depth - 1)
        m.d.comb += [
            u.i.payload.eq(self.i.payload.x),
            u.i.valid.eq(self.i.valid & room),
            self.i.ready.eq(u.i.ready & room),
            q.w_data.eq(self.i.payload.side),
            q.w_en.eq(take),
            # the side entry went in with the item, >= latency cycles before its result:
            # it is at the FIFO head whenever the unit's output is valid, so r_rdy stays
            # off the valid/ready path (a constant ready downstream folds the unit's stall
            # logic away)
            self.o.valid.eq(u.o.valid),
            self.o.payload.y.eq(u.o.payload),
            self.o.payload.side.eq(q.r_data),
            u.o.ready.eq(self.o.ready),
            q.r_en.eq(self.o.valid & self.o.ready),
        ]
        return m
