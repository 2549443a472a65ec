"""``Residual``: the residual add of spec §4.7, ``out = wrap32(x + y)`` element-wise, on two
streams of feature blocks (``cfg.feature_block`` fm_t per beat, element 0 in the low bits,
as in DRAM).  One block per clock; the sum is registered (latency 1).
"""

from __future__ import annotations

from amaranth import Cat, Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig


def block_shape(cfg: AcceleratorConfig):
    """One feature block as plain bits: ``cfg.feature_block`` fm_t, element 0 in the low bits
    (one AXI beat).  Plain bits rather than an ``ArrayLayout``: Amaranth names every element of
    an array port (``\\o__payload[0]``), and yosys 0.23's ``-abc9`` flow asserts on those."""
    return unsigned(cfg.feature_block * cfg.formats.fm.width)


def lane(block, j: int, width: int):
    """Element ``j`` (signed) of a block value."""
    return block.word_select(j, width).as_signed()


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
        blk = block_shape(cfg)
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
        x, y = self.x.payload, self.y.payload
        s = Cat(*[(lane(x, j, w) + lane(y, j, w))[:w] for j in range(self.cfg.feature_block)])
        with m.If(take):
            m.d.sync += self.o.payload.eq(s)
        return m
