"""hw.units.dsp_mul: the split product equals the integer product (random and extreme
operands, Amaranth's simulator), and Yosys maps the 32 x 16 split onto one DSP48E2."""

import random

import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from moevit.errors import ConfigError
from moevit.hw.units.dsp_mul import low_bits_for, split_floor_product, split_product, sync_reg


def _mismatches(m, a, b, y, pairs, ticks, want):
    """Drive (a, b) = each pair, wait ``ticks`` clocks, compare y with ``want(a, b)``."""
    bad = []

    async def bench(ctx):
        for x, z in pairs:
            ctx.set(a, x)
            ctx.set(b, z)
            await ctx.tick().repeat(ticks)
            if ctx.get(y) != want(x, z):
                bad.append((x, z, ctx.get(y), want(x, z)))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bad


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
    bad = _mismatches(m, a, b, y, pairs, 2, lambda x, z: x * z)
    assert not bad, bad[:5]


def test_split_width_fits_the_dsp_port():
    assert low_bits_for(32) == 5
    assert low_bits_for(27) == 0


def _floor_div_pow2(v, n):
    return v >> n          # Python's >> on ints is the floor division by 2^n


@pytest.mark.parametrize("wa,wb,shift,width", [(32, 16, 14, 32), (32, 16, 14, None),
                                               (32, 16, 3, 32), (32, 16, 0, None),
                                               (32, 16, 5, 24), (27, 16, 14, 32),
                                               (29, 16, 14, 32), (30, 12, 1, None)])
def test_split_floor_product_is_exact(wa, wb, shift, width):
    """floor(a·b / 2^shift) (mod 2^width): the shift above, at and below the 5 split bits,
    the unsplit case (27-bit a), 2 and 3 split bits, and a narrow result; Python's integer
    floor is the reference."""
    m = Module()
    a, b = Signal(signed(wa)), Signal(signed(wb))
    val, stages = split_floor_product(sync_reg(m), a, b, shift, "p", width=width)
    ybits = width if width is not None else wa + wb + 1
    y = Signal(ybits)
    m.d.sync += y.eq(val)
    assert stages == (2 if low_bits_for(wa) > 2 else 1)   # one add between registers
    rng = random.Random(wa * 1000 + wb * 10 + shift)
    pairs = [(x, z) for x in _extremes(wa) for z in _extremes(wb)]
    pairs += [(x, z) for x in range(-40, 40) for z in (-3, 7, -(1 << (wb - 1)))]
    pairs += [(rng.randrange(-(1 << (wa - 1)), 1 << (wa - 1)),
               rng.randrange(-(1 << (wb - 1)), 1 << (wb - 1))) for _ in range(300)]
    bad = _mismatches(m, a, b, y, pairs, stages + 1,
                      lambda x, z: _floor_div_pow2(x * z, shift) % (1 << ybits))
    assert not bad, bad[:5]


def test_split_floor_product_rejects_negative_shift():
    with pytest.raises(ConfigError, match="shift must be >= 0"):
        split_floor_product(lambda v, n, shape=None: v, Signal(signed(32)),
                            Signal(signed(16)), -1, "p")


def test_floor_product_pipe_counts_its_stages():
    from moevit.hw.units.dsp_mul import FloorProductPipe
    p = FloorProductPipe(Signal(signed(32)), Signal(signed(16)), 14, "p", width=32)
    assert p.stages == 2                  # DSP + 2-bit LUT partials, then two pair sums
    with pytest.raises(RuntimeError, match="0 of 2 stages"):
        p.value
    regs = []
    for _ in range(2):
        p.step(lambda v, n, shape=None: regs.append(n) or Signal(shape, name=n))
    with pytest.raises(RuntimeError, match="all 2 stages"):
        p.step(lambda v, n, shape=None: v)
    assert "p_dsp" in regs and len(regs) == 4 + 2
