"""hw.units.dsp_mul: the split product equals the integer product (random and extreme
operands, Amaranth's simulator), and Yosys maps the 32 x 16 split onto one DSP48E2."""

import random

import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from moevit.hw.units.dsp_mul import low_bits_for, split_product, sync_reg


def _extremes(w):
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    return [lo, lo + 1, -1, 0, 1, hi - 1, hi, 31, -32, 1 << (w - 2)]


@pytest.mark.parametrize("wa,wb", [(32, 16), (32, 32), (27, 16), (20, 12)])
def test_split_product_is_exact(wa, wb):
    m = Module()
    a, b = Signal(signed(wa)), Signal(signed(wb))
    prod, stages = split_product(sync_reg(m), a, b, "p")
    y = Signal(signed(wa + wb))
    m.d.sync += y.eq(prod)
    assert stages == 1 and len(y) >= wa + wb
    rng = random.Random(wa * 100 + wb)
    pairs = [(x, z) for x in _extremes(wa) for z in _extremes(wb)]
    pairs += [(rng.randrange(-(1 << (wa - 1)), 1 << (wa - 1)),
               rng.randrange(-(1 << (wb - 1)), 1 << (wb - 1))) for _ in range(300)]
    bad = []

    async def bench(ctx):
        for x, z in pairs:
            ctx.set(a, x)
            ctx.set(b, z)
            await ctx.tick().repeat(2)
            if ctx.get(y) != x * z:
                bad.append((x, z, ctx.get(y)))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]


def test_split_width_fits_the_dsp_port():
    assert low_bits_for(32) == 5
    assert low_bits_for(27) == 0
