"""``Sqrt`` (``hls::sqrt`` on fm_t) and ``Rsqrt`` (the LayerNorm rstd path), pipelined.

``hls::sqrt`` = 0 for v < 0, else round-half-up of √v at 2^-F:
``S = (isqrt(V·2^(F+2)) + 1) >> 1`` (spec §3.3).  A restoring square root produces one
root bit per stage.  ``Rsqrt`` chains it with the reciprocal divider:
``r = wrap32(trunc0(2^(2F) / S))`` (spec §4.2 step 5).
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux

from moevit.hw.units.common import FmPipelineUnit
from moevit.hw.units.divide import recip_stages
from moevit.hw.units.pipeline import StallPipeline


def sqrt_geometry(width: int, frac: int) -> tuple[int, int]:
    """(radicand bits, root bits) for V·2^(frac+2) with V < 2^(width-1), rounded to pairs."""
    mbits = width - 1 + frac + 2
    mbits += mbits % 2
    return mbits, mbits // 2


def sqrt_stages(pipe: StallPipeline, v, width: int, frac: int, prefix: str = "sqrt_"):
    """Append ``hls::sqrt`` of the stage-k signed ``v`` to ``pipe`` (1 + root-bit stages);
    returns the non-negative result, combinational from the last stage.

    The radicand V·2^(F+2) is consumed two bits per stage, most significant first; only
    the not yet consumed bits of V are registered (the trailing zeros are wired in).
    """
    mbits, rbits = sqrt_geometry(width, frac)
    vw = width - 1
    lead = mbits - vw - (frac + 2)                       # leading zero bits (0 or 1)
    rw = rbits + 2                                       # remainder <= 2*root
    var = pipe.reg(Mux(v < 0, 0, v[:vw]), prefix + "v", shape=vw)
    pipe.next()

    def bit(pos):
        """MSB-first radicand bit ``pos``: a bit of V (from the register) or a zero."""
        j = pos - lead
        if 0 <= j < vw:
            return var[vw - 1 - j]                      # index in the original V
        return Const(0, 1)

    rem, root = Const(0, rw), None
    for k in range(rbits):
        hi, lo = bit(2 * k), bit(2 * k + 1)
        rem2 = Cat(lo, hi, rem)                          # (rem << 2) | next two bits
        trial = Cat(Const(1, 2), root) if root is not None else Const(1, 2)  # (root<<2)|1
        diff = rem2 - trial                              # one subtractor: its sign is the
        ge = ~diff[-1]                                   # comparison (a single carry chain)
        rem_n = Mux(ge, diff[:rw], rem2[:rw])
        root_n = ge if root is None else Cat(ge, root)
        if k < rbits - 1:
            rem = pipe.reg(rem_n, prefix + "rem", shape=rw)
            keep = vw - max(0, min(vw, 2 * k + 2 - lead))  # V bits still to consume
            if keep > 0:
                var = pipe.reg(var[:keep], prefix + "v")
        root = pipe.reg(root_n, prefix + "root")
        pipe.next()
    return (root + 1) >> 1


class Sqrt(FmPipelineUnit):
    """fm_t in, ``hls::sqrt`` fm_t out (round half up; 0 for negative inputs)."""

    in_name = "v"

    @property
    def latency(self) -> int:
        return sqrt_geometry(self.width, self.frac)[1] + 3

    def stages(self, pipe, v):
        return sqrt_stages(pipe, v, self.width, self.frac)


class Rsqrt(FmPipelineUnit):
    """fm_t variance in, LayerNorm rstd ``fm_t(1) / hls::sqrt(var)`` out."""

    in_name = "v"

    @property
    def latency(self) -> int:
        return sqrt_geometry(self.width, self.frac)[1] + 2 * self.frac + 5

    def stages(self, pipe, v):
        s = sqrt_stages(pipe, v, self.width, self.frac)
        return recip_stages(pipe, s, self.frac, self.width)
