"""``Exp``: ``hls::exp`` on fm_t, bit for bit (spec Appendix B), fully pipelined.

Six ROMs are generated at elaboration from the closed forms (``moevit.golden.exp.TABLES``);
three exact wide products (B·A, D·C, T1·Ecomb) each get their own stage.  :func:`exp_stages`
builds the same datapath inside another unit's pipeline (the online softmax).
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal

from moevit.config import AcceleratorConfig
from moevit.golden.exp import TABLES
from moevit.hw.units.common import FmPipelineUnit, require_fm
from moevit.hw.units.pipeline import StallPipeline

#: stages from the argument register to the combinational result (exp_stages)
EXP_STAGES = 7
#: the 256-entry ROMs (T1, T2) are read as eight 32-entry ROMs (5-input functions) + a mux
ROM_SPLIT_BITS = 5


def exp_stages(pipe: StallPipeline, x, prefix: str = "exp_"):
    """Append the exp datapath for the stage-k signed 32-bit ``x`` to ``pipe``.

    Returns the result (unsigned 31-bit value, combinational from stage k+EXP_STAGES
    registers).  Values the caller carries keep travelling alongside.
    """
    m = pipe.m
    p = prefix
    start = pipe.stage
    # ---- stage k: fields of u = (2x) mod 2^47 (bit 0 is always 0) -> ROM addresses
    u7 = Cat(Const(0, 1), x[0:6])            # u mod 2^7
    lsb = Cat(Const(0, 1), x[0:3])           # u[3:0]
    ind4 = x[3:6]                            # u[6:4]
    ind3 = x[6:11]                           # u[11:7]
    ind2 = x[11:19]                          # u[19:12]
    sign = x[31]
    ind1 = Cat(x[19:26], sign)               # (sign << 7) | u[26:20]
    ipart = x.as_signed() >> 22              # floor(x)
    frac2 = Cat(Const(0, 1), x[0:22])        # (2x) mod 2^23
    ovf = (ipart < -16) | (ipart >= 16) | ((ipart == 15) & (frac2 >= 0x78A014))
    t1 = pipe.rom(TABLES["T1"], ind1, p + "T1", split_bits=ROM_SPLIT_BITS)
    t2 = pipe.rom(TABLES["T2"], ind2, p + "T2", split_bits=ROM_SPLIT_BITS)
    t3 = pipe.rom(TABLES["T3"], ind3, p + "T3")
    t4h = pipe.rom(TABLES["T4h"], ind4, p + "T4h")
    t4l = pipe.rom(TABLES["T4l"], ind4, p + "T4l")
    tl = pipe.rom(TABLES["TL"], lsb, p + "TL")
    f = {n: pipe.reg(v, p + n) for n, v in
         dict(u7=u7, lsb=lsb, ind4=ind4, ind3=ind3, ind2=ind2).items()}
    pipe.carry(p + "ovf", ovf)                   # ovf, pos travel to stage k+7
    pipe.carry(p + "pos", ~sign)
    pipe.next()
    # ---- stage k+1: A, B, D (adds of non-overlapping fields)
    mlow = ((t4h << 3) + (tl >> 5) + f["ind4"] * f["lsb"])[:10]
    a = (f["u7"] << 35) + (mlow << 16) + (tl[:5] << 11) + t4l
    b = (f["ind3"] << 39) + t3
    d = t2 + (f["ind2"] << 41)
    ra, rb = pipe.reg(a, p + "A"), pipe.reg(b, p + "B")
    pipe.carry(p + "D", d)                       # D to stage k+4, T1 to stage k+7
    pipe.carry(p + "T1v", t1)
    pipe.next()
    # ---- stage k+2: B*A
    pba = pipe.reg(rb * ra, p + "BA")
    sa = pipe.reg((rb << 3) + ra, p + "B8A")
    pipe.next()
    # ---- stage k+3: C
    c = pipe.reg(((pba >> 55) + sa)[:48], p + "C")
    pipe.next()
    # ---- stage k+4: D*C
    rd = pipe[p + "D"]
    pipe.drop(p + "D")
    pdc = pipe.reg(rd * c, p + "DC")
    sdc = pipe.reg((rd << 6) + c, p + "D64C")
    pipe.next()
    # ---- stage k+5: Ecomb
    ecomb = pipe.reg((((pdc >> 52) + sdc) >> 6)[:50], p + "Ecomb")
    pipe.next()
    # ---- stage k+6: T1*Ecomb
    pte = pipe.reg(pipe[p + "T1v"] * ecomb, p + "TE")
    pipe.next()
    # ---- stage k+7: y27, y23, overflow and saturation (combinational)
    rt1, rovf, rpos = (pipe[p + n] for n in ("T1v", "ovf", "pos"))
    for n in ("T1v", "ovf", "pos"):
        pipe.drop(p + n)
    y23 = ((pte >> 52) + rt1)[4:50]
    y23 = Mux(rovf, Mux(rpos, (1 << 46) - 1, 0), y23)
    sat = Signal(32, name=p + "y23sat")
    m.d.comb += sat.eq(Mux(y23 >= (1 << 32), (1 << 32) - 1, y23))
    assert pipe.stage - start == EXP_STAGES
    return sat[1:32]


class Exp(FmPipelineUnit):
    """fm_t in, ``hls::exp`` fm_t out; valid/ready, one result per cycle.

    Latency ``EXP_STAGES + 2`` cycles (argument and result registered).
    """

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "exp", owner=self)
        super().__init__(cfg)

    latency = EXP_STAGES + 2

    def stages(self, pipe, x):
        return exp_stages(pipe, x)
