"""``Gelu``: table GELU (spec §4.4), fully pipelined.

One ROM holds the pair (T[i], T[i+1]) per index, generated at elaboration from the erf
formula (``moevit.golden.kernels.GeluSpec``; geometry from the config: step 2^-step_log2,
``gelu_table_entries`` entries, cut-off (entries-1)·step).  Latency 6 cycles: input
register; |x|, cut-off and index; ROM; b - a; t·(b - a) (registered inputs and product);
interpolation and result.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux
from amaranth.lib import wiring

from moevit.config import AcceleratorConfig
from moevit.golden.kernels import GeluSpec
from moevit.hw.units.common import fm_shape, require_fm, stream_signature
from moevit.hw.units.exp import ROM_SPLIT_BITS
from moevit.hw.units.pipeline import StallPipeline


class Gelu(wiring.Component):
    """fm_t in, GELU(x) fm_t out; valid/ready, one result per cycle."""

    latency = 6

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "gelu", owner=self)
        self.cfg = cfg
        self.spec = GeluSpec.from_config(cfg)
        super().__init__(stream_signature(fm_shape(cfg), fm_shape(cfg)))

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        frac = self.cfg.formats.fm.frac
        sh = spec.index_shift
        tw = self.cfg.formats.fm_frac.width  # table entries are ap_ufixed<22,0>
        table = [int(v) for v in spec.table]
        pairs = [a | (table[min(k + 1, spec.entries - 1)] << tw) for k, a in enumerate(table)]

        pipe = StallPipeline(m, self.i, self.o)
        x = pipe.reg(self.i.payload, "x")
        pipe.next()
        # ---- stage 1: |x|, cut-off, index (registered before the ROM's address decode)
        neg = x < 0
        xa = Mux(neg, (-x)[:32].as_signed(), x)  # wrap32(-x): -2^31 stays -2^31
        sat = xa >= spec.cutoff_raw
        idx = pipe.reg(Mux(sat, 0, xa[sh:sh + spec.index_bits]), "idx")
        pipe.carry("relu", Mux(neg, 0, x))
        pipe.carry("sat", sat)
        pipe.carry("t", Cat(xa[:sh]) << (frac - sh))
        pipe.next()
        # ---- stage 2: ROM read (T[i], T[i+1])
        ab = pipe.rom(pairs, idx, "delta", width=2 * tw, split_bits=ROM_SPLIT_BITS)
        pipe.next()
        # ---- stage 3: b - a registered (the multiplier input)
        a, b = ab[:tw], ab[tw:2 * tw]
        bma = pipe.reg(Cat(b, 0).as_signed() - Cat(a, 0).as_signed(), "bma")
        pipe.carry("a", a)
        pipe.next()
        # ---- stage 4: t*(b-a), registered inputs and product
        prod = pipe.reg(pipe["t"] * bma, "tba")
        pipe.next()
        # ---- stage 5: delta = floor((a*2^F + t*(b-a)) / 2^F) mod 2^tw; relu - delta
        delta = ((pipe["a"] << frac) + prod)[frac:frac + tw]
        y = pipe.reg(Mux(pipe["sat"], pipe["relu"], pipe["relu"] - delta), "y",
                     shape=fm_shape(self.cfg))
        pipe.next()
        pipe.finish(y)
        assert pipe.latency == self.latency
        return m
