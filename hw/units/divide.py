"""Pipelined division: ``Divide`` (fm_t / fm_t, the MoE gate probability) and
``Reciprocal`` (``hls::recip``), both exact, one quotient bit per stage.

Rules (spec §3.2 rule 4, §3.3): ``div``: ``wrap32(trunc0(a·2^F / b))``, 0 when b = 0;
``recip``: ``wrap32(trunc0(2^(2F) / x))``, 0 when x = 0.  Truncation toward zero is
magnitude division with the sign applied afterwards.  A restoring divider computes the
full quotient (all numerator bits: 54 for div, 45 for recip) because the low 32 bits
depend on every remainder step; only those 32 bits leave the unit (the wrap).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, signed
from amaranth.lib import data, wiring

from moevit.config import AcceleratorConfig
from moevit.hw.units.common import fm_shape, stream_signature
from moevit.hw.units.pipeline import StallPipeline


def divide_stages(pipe: StallPipeline, num_abs, num_bits: int, den_abs, neg, zero,
                  out_width: int = 32, prefix: str = "div_"):
    """Append a restoring divider to ``pipe``: stage-k magnitudes ``num_abs`` (``num_bits``
    wide) and ``den_abs``, result sign ``neg``, ``zero`` forces 0.

    Adds ``num_bits`` stages; returns the signed ``out_width``-bit wrapped quotient,
    combinational from the last stage.
    """
    dw = len(den_abs)
    den = pipe.reg(den_abs, prefix + "den")
    nq = pipe.reg(num_abs, prefix + "nq", shape=num_bits)
    rem = pipe.reg(0, prefix + "rem", shape=dw)
    ng = pipe.reg(neg, prefix + "neg")
    zr = pipe.reg(zero, prefix + "zero")
    pipe.next()
    for k in range(num_bits):
        t = Cat(nq[num_bits - 1], rem)            # (rem << 1) | next numerator bit
        ge = t >= den
        rem_n = Mux(ge, t - den, t)[:dw]
        nq_n = Cat(ge, nq[:num_bits - 1])        # shift the quotient bit in
        if k < num_bits - 1:
            rem = pipe.reg(rem_n, prefix + "rem", shape=dw)
        den = pipe.reg(den, prefix + "den") if k < num_bits - 1 else den
        nq = pipe.reg(nq_n, prefix + "nq", shape=num_bits)
        ng = pipe.reg(ng, prefix + "neg")
        zr = pipe.reg(zr, prefix + "zero")
        pipe.next()
    q = nq[:out_width]
    return Mux(zr, 0, Mux(ng, (-q)[:out_width], q))[:out_width].as_signed()


def _abs(v, width: int):
    """|v| of a signed value as ``width`` unsigned bits (|-2^31| = 2^31 fits 32 bits)."""
    return Mux(v < 0, -v, v)[:width]


class Divide(wiring.Component):
    """{a, b} fm_t in, ``a / b`` fm_t out (trunc toward zero, wrapped; 0 for b = 0)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        fm = fm_shape(cfg)
        self.frac = cfg.formats.fm.frac
        self.width = cfg.formats.fm.width
        layout = data.StructLayout({"a": fm, "b": fm})
        super().__init__(stream_signature(layout, fm))

    @property
    def num_bits(self) -> int:
        return self.width + self.frac

    @property
    def latency(self) -> int:
        return self.num_bits + 3

    def elaborate(self, platform):
        m = Module()
        w = self.width
        pipe = StallPipeline(m, self.i, self.o)
        a = pipe.reg(self.i.payload.a, "a", shape=signed(w))
        b = pipe.reg(self.i.payload.b, "b", shape=signed(w))
        pipe.next()
        num = _abs(a, w) << self.frac
        q = divide_stages(pipe, num, self.num_bits, _abs(b, w), (a < 0) ^ (b < 0), b == 0, w)
        y = pipe.reg(q, "y", shape=signed(w))
        pipe.next()
        pipe.finish(y)
        assert pipe.latency == self.latency
        return m


class Reciprocal(wiring.Component):
    """fm_t in, ``hls::recip`` fm_t out: trunc0(2^(2F) / x) wrapped, 0 for 0."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.frac = cfg.formats.fm.frac
        self.width = cfg.formats.fm.width
        super().__init__(stream_signature(fm_shape(cfg), fm_shape(cfg)))

    @property
    def num_bits(self) -> int:
        return 2 * self.frac + 1

    @property
    def latency(self) -> int:
        return self.num_bits + 3

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o)
        x = pipe.reg(self.i.payload, "x")
        pipe.next()
        y = pipe.reg(recip_stages(pipe, x, self.frac, self.width), "y",
                     shape=signed(self.width))
        pipe.next()
        pipe.finish(y)
        assert pipe.latency == self.latency
        return m


def recip_stages(pipe: StallPipeline, x, frac: int, width: int, prefix: str = "recip_"):
    """``hls::recip`` of the stage-k signed ``x`` inside ``pipe`` (2·frac+1 stages)."""
    return divide_stages(pipe, 1 << (2 * frac), 2 * frac + 1, _abs(x, width), x < 0, x == 0,
                         width, prefix)
