"""Pipelined division: ``Divide`` (fm_t / fm_t, the MoE gate probability) and
``Reciprocal`` (``hls::recip``), both exact, one quotient bit per stage.

Rules (spec §3.2 rule 4, §3.3): ``div``: ``wrap32(trunc0(a·2^F / b))``, 0 when b = 0;
``recip``: ``wrap32(trunc0(2^(2F) / x))``, 0 when x = 0.  Truncation toward zero is
magnitude division with the sign applied afterwards.  A restoring divider computes the
full quotient (all numerator bits: 54 for div, 45 for recip) because the low 32 bits
depend on every remainder step; only those 32 bits leave the unit (the wrap).
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, signed
from amaranth.lib import data

from moevit.config import AcceleratorConfig
from moevit.hw.units.common import FmPipelineUnit, fm_shape
from moevit.hw.units.pipeline import StallPipeline


def divide_stages(pipe: StallPipeline, num_top, shift: int, den_abs, neg, zero,
                  out_width: int = 32, prefix: str = "div_"):
    """Append a restoring divider to ``pipe`` for the numerator magnitude
    ``num_top << shift`` (``num_top`` a stage-k value, or an int constant), the divisor
    magnitude ``den_abs``, result sign ``neg``; ``zero`` forces 0.

    Adds one stage per numerator bit; returns the signed ``out_width``-bit wrapped quotient,
    combinational from the last stage.  Only what is still needed is registered: the
    unconsumed variable numerator bits (constant bits and the ``shift`` trailing zeros are
    wired in) and the last ``out_width`` quotient bits (the higher ones are wrapped away).
    """
    dw = len(den_abs)
    if isinstance(num_top, int):
        const_bits = [Const((num_top >> i) & 1, 1)
                      for i in reversed(range(max(1, num_top.bit_length())))]
        n_top, var = len(const_bits), None
    else:
        const_bits, n_top = None, len(num_top)
        var = pipe.reg(num_top, prefix + "num", shape=n_top)
    num_bits = n_top + shift
    names = [prefix + n for n in ("den", "neg", "zero")]
    for n, v in zip(names, (den_abs, neg, zero)):   # den to the last stage, sign/zero past it
        pipe.carry(n, v)
    pipe.next()
    rem, q = Const(0, dw), None
    for k in range(num_bits):
        if k < n_top:
            bit = const_bits[k] if var is None else var[len(var) - 1]
        else:
            bit = Const(0, 1)
        t = Cat(bit, rem)                          # (rem << 1) | next numerator bit
        den = pipe[names[0]]
        diff = t - den                              # one subtractor: its sign is the
        ge = ~diff[-1]                              # comparison (a single carry chain)
        rem_n = Mux(ge, diff[:dw], t[:dw])
        q_n = ge if q is None else Cat(ge, q)[:out_width]   # shift the quotient bit in
        last = k == num_bits - 1
        if not last:
            rem = pipe.reg(rem_n, prefix + "rem", shape=dw)
            if var is not None and len(var) > 1 and k < n_top - 1:
                var = pipe.reg(var[:len(var) - 1], prefix + "num")
        else:
            pipe.drop(names[0])
        q = pipe.reg(q_n, prefix + "q")
        pipe.next()
    ng, zr = pipe[names[1]], pipe[names[2]]
    pipe.drop(names[1])
    pipe.drop(names[2])
    q = q if len(q) >= out_width else Cat(q, Const(0, out_width - len(q)))
    return Mux(zr, 0, Mux(ng, (-q)[:out_width], q))[:out_width].as_signed()


def _abs(v, width: int):
    """|v| of a signed value as ``width`` unsigned bits (|-2^31| = 2^31 fits 32 bits)."""
    return Mux(v < 0, -v, v)[:width]


class Divide(FmPipelineUnit):
    """{a, b} fm_t in, ``a / b`` fm_t out (trunc toward zero, wrapped; 0 for b = 0)."""

    def __init__(self, cfg: AcceleratorConfig):
        fm = fm_shape(cfg)
        super().__init__(cfg, data.StructLayout({"a": fm, "b": fm}))

    @property
    def num_bits(self) -> int:
        return self.width + self.frac

    @property
    def latency(self) -> int:
        return self.num_bits + 3

    def register_input(self, pipe):
        w = self.width
        return (pipe.reg(self.i.payload.a, "a", shape=signed(w)),
                pipe.reg(self.i.payload.b, "b", shape=signed(w)))

    def stages(self, pipe, ab):
        a, b = ab
        w = self.width
        return divide_stages(pipe, _abs(a, w), self.frac, _abs(b, w), (a < 0) ^ (b < 0),
                             b == 0, w)


class Reciprocal(FmPipelineUnit):
    """fm_t in, ``hls::recip`` fm_t out: trunc0(2^(2F) / x) wrapped, 0 for 0."""

    @property
    def num_bits(self) -> int:
        return 2 * self.frac + 1

    @property
    def latency(self) -> int:
        return self.num_bits + 3

    def stages(self, pipe, x):
        return recip_stages(pipe, x, self.frac, self.width)


def recip_stages(pipe: StallPipeline, x, frac: int, width: int, prefix: str = "recip_"):
    """``hls::recip`` of the stage-k signed ``x`` inside ``pipe`` (2·frac+1 stages)."""
    return divide_stages(pipe, 1, 2 * frac, _abs(x, width), x < 0, x == 0, width, prefix)
