"""Combinational arithmetic used inside the attention unit: ``hls::exp`` (spec Appendix B)
and ``hls::recip`` (spec §3.3) on fm_t raw values.

These are the attention unit's own instances of the golden rules (the unit retires one
schedule step per clock and needs P exps per clock with no handshake); they are checked
bit for bit against :mod:`moevit.golden` in tests/hw/test_attention_math.py.
"""


from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from moevit.hw.hls_config import exp_tables

_TABLE_WIDTHS = {"T1": 50, "T2": 46, "T3": 33, "T4h": 6, "T4l": 19, "TL": 8}


class CombExp(wiring.Component):
    """y = hls::exp(x) for fm_t raw x (signed 32) -> raw y (unsigned 31), combinational.

    Six ROMs (asynchronous read) and three wide multipliers, following spec Appendix B.
    """

    x: In(signed(32))
    y: Out(unsigned(31))

    def elaborate(self, platform):
        m = Module()
        tables = exp_tables()
        for name, width in _TABLE_WIDTHS.items():
            assert max(tables[name]) < (1 << width), name

        def rom(name, index):
            mem = memory.Memory(shape=unsigned(_TABLE_WIDTHS[name]), depth=len(tables[name]),
                                init=tables[name])
            m.submodules[f"rom_{name}"] = mem
            port = mem.read_port(domain="comb")
            m.d.comb += port.addr.eq(index)
            return port.data

        xl = Signal(signed(33))
        m.d.comb += xl.eq(self.x * 2)
        u = xl.as_unsigned()  # bits 0..32; bits 33..46 of the 47-bit value equal the sign
        sign = xl[32]
        ovf = Signal()
        m.d.comb += ovf.eq((xl < -(1 << 27)) | (xl >= (1 << 27))
                           | (((xl >> 23) == 15) & (xl[:23] >= 0x78A014)))
        ind1 = Signal(8)
        ind2, ind3, ind4, lsb = Signal(8), Signal(5), Signal(3), Signal(4)
        m.d.comb += [ind1.eq(Cat(u[20:27], sign)), ind2.eq(u[12:20]), ind3.eq(u[7:12]),
                     ind4.eq(u[4:7]), lsb.eq(u[0:4])]
        t1, t2, t3 = rom("T1", ind1), rom("T2", ind2), rom("T3", ind3)
        t4h, t4l, tl = rom("T4h", ind4), rom("T4l", ind4), rom("TL", lsb)

        mm = Signal(10)
        m.d.comb += mm.eq(((t4h << 3) + (tl >> 5) + ind4 * lsb)[:10])
        a = Signal(42)
        m.d.comb += a.eq((u[:7] << 35) + (mm << 16) + (tl[:5] << 11) + t4l)
        b = Signal(45)
        m.d.comb += b.eq((ind3 << 39) + t3)
        c = Signal(48)
        m.d.comb += c.eq((((b * a) >> 55) + (b << 3) + a)[:48])
        d = Signal(50)
        m.d.comb += d.eq(t2 + (ind2 << 41))
        ecomb = Signal(50)
        m.d.comb += ecomb.eq(((((d * c) >> 52) + (d << 6) + c) >> 6)[:50])
        y27 = Signal(51)
        m.d.comb += y27.eq(((t1 * ecomb) >> 52) + t1)
        y23 = Signal(46)
        m.d.comb += y23.eq(Mux(ovf, Mux(self.x >= 0, (1 << 46) - 1, 0), y27[4:50]))
        m.d.comb += self.y.eq(Mux(y23 >= (1 << 32), (1 << 32) - 1, y23) >> 1)
        return m


class CombRecip(wiring.Component):
    """y = hls::recip(x) = 0 if x == 0 else wrap32(trunc0(2^44 / x)), combinational."""

    x: In(signed(32))
    y: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        mag = Signal(unsigned(32))
        m.d.comb += mag.eq(Mux(self.x < 0, -self.x, self.x))
        quo = Signal(unsigned(45))
        m.d.comb += quo.eq(Const(1 << 44, 45) // mag)
        m.d.comb += self.y.eq(Mux(self.x == 0, 0, Mux(self.x < 0, -quo, quo)[:32]))
        return m
