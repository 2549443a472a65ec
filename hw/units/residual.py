"""``Residual``: the residual add of spec §4.7, ``out = wrap32(x + y)`` element-wise, on two
streams of feature blocks (``cfg.feature_block`` fm_t per beat, element 0 in the low bits,
as in DRAM).  One block per clock; the sum is registered (latency 1).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.hw.units.common import fm_shape


def block_layout(cfg: AcceleratorConfig) -> data.ArrayLayout:
    """One feature block: ``cfg.feature_block`` fm_t, element 0 in the low bits (one AXI beat)."""
    return data.ArrayLayout(fm_shape(cfg), cfg.feature_block)


def residual_cycles(cfg: AcceleratorConfig, blocks: int) -> int:
    """Cycles from the first input handshake to the last output handshake (both counted) for ``blocks``
    blocks with unthrottled streams: one block per clock plus the latency."""
    return blocks + Residual.latency if blocks else 0


class Residual(wiring.Component):
    """Streams ``x`` and ``y`` of blocks in, ``o = wrap32(x + y)`` per element out.

    A block pair is taken when both inputs are valid and the output register is free
    (``~o.valid | o.ready``); the two ready signals are driven together.
    """

    latency = 1

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        blk = block_layout(cfg)
        super().__init__({"x": In(stream.Signature(blk)), "y": In(stream.Signature(blk)),
                          "o": Out(stream.Signature(blk))})

    def elaborate(self, platform):
        m = Module()
        w = self.cfg.formats.fm.width
        free = ~self.o.valid | self.o.ready
        take = self.x.valid & self.y.valid & free
        m.d.comb += [self.x.ready.eq(free & self.y.valid), self.y.ready.eq(free & self.x.valid)]
        with m.If(free):
            m.d.sync += self.o.valid.eq(take)
        with m.If(take):
            m.d.sync += [self.o.payload[j].eq((self.x.payload[j] + self.y.payload[j])[:w])
                         for j in range(self.cfg.feature_block)]
        return m
