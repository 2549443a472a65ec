"""The units in Amaranth's own simulator (no Verilator/Icarus needed): corner cases plus a
few hundred to 2000 random vectors each, with random valid/ready back-pressure, against the golden
model.  The cocotb suites (tests/sim) run 100k vectors on the generated Verilog."""

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from moevit.config import preset
from moevit.sim.units import get_unit
from moevit.sim.vectors import VECTOR_SPECS, concat_fields

CFG = preset("edge-moe")


def _simulate(comp, inputs, n_out, seed, p=0.7):
    rng = np.random.default_rng(seed)
    in_sig = Value.cast(comp.i.payload)
    out_sig = Value.cast(comp.o.payload)
    in_w = len(in_sig)
    signed_in = in_sig.shape().signed
    outs, taken = [], [0]

    async def bench(ctx):
        idx, offering, cycles = 0, False, 0
        while len(outs) < n_out:
            cycles += 1
            assert cycles < 50 * (len(inputs) + 100), "stream stalled"
            if not offering and idx < len(inputs) and rng.random() < p:
                w = inputs[idx]
                if signed_in and w >= 1 << (in_w - 1):
                    w -= 1 << in_w
                ctx.set(comp.i.payload.as_value() if hasattr(comp.i.payload, "as_value")
                        else comp.i.payload, w)
                ctx.set(comp.i.valid, 1)
                offering = True
            elif not offering:
                ctx.set(comp.i.valid, 0)
            ready = rng.random() < p
            ctx.set(comp.o.ready, ready)
            in_fire = offering and ctx.get(comp.i.ready)
            if ready and ctx.get(comp.o.valid):
                outs.append(int(ctx.get(out_sig)) & ((1 << len(out_sig)) - 1))
            await ctx.tick()
            if in_fire:
                idx += 1
                offering = False
        taken[0] = idx

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outs


@pytest.mark.parametrize("unit,n", [("exp", 1000), ("gelu", 2000), ("recip", 1000),
                                    ("div", 500), ("sqrt", 1000), ("rsqrt", 500),
                                    ("softmax", 1000)])
def test_unit_in_amaranth_sim(unit, n):
    spec = VECTOR_SPECS[unit]
    rng = np.random.default_rng(42)
    fields = concat_fields(unit, spec.corners(CFG), spec.random(CFG, n, rng))
    if unit == "div":  # the full 48x48 corner grid is large for pysim: keep every 3rd pair
        fields = {k: v[::3] for k, v in fields.items()}
    vec = spec.make(CFG, fields)
    comp = get_unit(unit).build(CFG)
    got = _simulate(comp, vec.inputs, len(vec.expected), seed=3)
    bad = [k for k in range(len(got)) if got[k] != vec.expected[k]]
    assert not bad, f"{len(bad)} mismatches, first at output {bad[0]}: got {got[bad[0]]:#x}, " \
                    f"expected {vec.expected[bad[0]]:#x}"


def test_softmax_hazard_stall_in_amaranth_sim():
    """1 row (< MIN_INTERLEAVE): every score follows its row's previous one directly, so the
    hazard check must hold each back a cycle until the previous sum is written (forwarded);
    results stay exact."""
    from moevit.hw.units.softmax import MIN_INTERLEAVE
    assert MIN_INTERLEAVE == 2
    spec = VECTOR_SPECS["softmax"]
    rng = np.random.default_rng(5)
    fields = concat_fields("softmax", spec.corners(CFG, rows=1), spec.random(CFG, 1000, rng,
                                                                           rows=1))
    vec = spec.make(CFG, fields)
    comp = get_unit("softmax").build(CFG, rows=1, full_rate=False)
    got = _simulate(comp, vec.inputs, len(vec.expected), seed=4, p=0.9)
    assert got == vec.expected


def test_softmax_minimum_interleave_in_amaranth_sim():
    """MIN_INTERLEAVE = 2 rows: the sum is forwarded from the write stage on every score."""
    spec = VECTOR_SPECS["softmax"]
    rng = np.random.default_rng(6)
    fields = concat_fields("softmax", spec.corners(CFG, rows=2), spec.random(CFG, 1000, rng,
                                                                           rows=2))
    vec = spec.make(CFG, fields)
    got = _simulate(get_unit("softmax").build(CFG, rows=2), vec.inputs, len(vec.expected),
                    seed=8, p=0.95)
    assert got == vec.expected
