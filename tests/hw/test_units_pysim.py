"""The units in Amaranth's own simulator (no Verilator/Icarus needed): corner cases plus a
few hundred to 2000 random vectors each, with random valid/ready back-pressure (Bernoulli,
bursts, long stalls), against the golden model, and nothing more out of the unit after the
last expected item.  The cocotb suites (tests/sim) run 100k vectors on the generated Verilog."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from moevit.config import preset
from moevit.sim.tb_stream import (Bursts, LongStalls, SimSink, SimSource, sim_drive_streams,
                                  sim_expect_idle)
from moevit.sim.units import get_unit
from moevit.sim.vectors import VECTOR_SPECS, concat_fields

CFG = preset("edge-moe")
IDLE = 100  # cycles the sink stays ready after the last expected item (> any unit latency)


def _simulate(comp, inputs, n_out, seed, p=0.7, p_ready=None):
    """Drive ``comp`` with the stream parts; returns (outputs, extra outputs, inputs taken)."""
    rng = np.random.default_rng(seed)
    src = SimSource(comp.i, inputs, p, rng)
    snk = SimSink(comp.o, n_out, p if p_ready is None else p_ready, rng)
    extra = []

    async def bench(ctx):
        await sim_drive_streams(ctx, [src, snk], max_cycles=50 * (len(inputs) + 100),
                                what="unit")
        extra.extend(await sim_expect_idle(ctx, [comp.o], IDLE))

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return snk.items, extra, len(src.cycles)


def _check(got, extra, taken, vec):
    bad = [k for k in range(len(got)) if got[k] != vec.expected[k]]
    assert not bad, f"{len(bad)} mismatches, first at output {bad[0]}: got {got[bad[0]]:#x}, " \
                    f"expected {vec.expected[bad[0]]:#x}"
    assert not extra, f"extra output: {len(extra)} item(s) after the last expected one, " \
                      f"first {extra[0][1]:#x} {extra[0][0]} cycles later"
    assert taken == len(vec.inputs)


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
    _check(*_simulate(comp, vec.inputs, len(vec.expected), seed=3), vec)


@pytest.mark.parametrize("pattern", ["bursts", "stalls"])
@pytest.mark.parametrize("unit", ["exp", "softmax"])
def test_unit_in_amaranth_sim_bursts_and_long_stalls(unit, pattern):
    """Source and sink in bursts, or with stalls longer than the pipeline (every stage full
    and frozen): still exact, nothing extra."""
    spec = VECTOR_SPECS[unit]
    vec = spec.make(CFG, spec.random(CFG, 600, np.random.default_rng(8)))
    pv, pr = ((Bursts(12, 6), Bursts(10, 10)) if pattern == "bursts" else
              (LongStalls(0.9, every=200, length=90), LongStalls(0.9, every=150, length=120)))
    comp = get_unit(unit).build(CFG)
    _check(*_simulate(comp, vec.inputs, len(vec.expected), seed=9, p=pv, p_ready=pr), vec)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_softmax_hazard_stall_in_amaranth_sim(rows):
    """1, 2 or 3 interleaved rows with the hazard check on (full_rate=False): it must hold
    scores back until the row's previous update is written (or forwardable), whichever loop
    stage that update is in (1 row: the very next stage too); results stay exact."""
    spec = VECTOR_SPECS["softmax"]
    rng = np.random.default_rng(5)
    n = 1000 if rows == 3 else 300
    fields = concat_fields("softmax", spec.corners(CFG, rows=rows),
                           spec.random(CFG, n, rng, rows=rows))
    vec = spec.make(CFG, fields)
    comp = get_unit("softmax").build(CFG, rows=rows, full_rate=False)
    got, extra, taken = _simulate(comp, vec.inputs, len(vec.expected), seed=4, p=0.9)
    assert got == vec.expected
    _check(got, extra, taken, vec)


def test_patterns_have_the_advertised_shape():
    """The idle/back-pressure generators: duty cycles and run lengths as documented."""
    from moevit.sim.tb_stream import Always, Bernoulli, as_pattern
    rng = np.random.default_rng(0)
    n = 200_000
    assert Always().draw(10, rng).all()
    assert abs(Bernoulli(0.3).draw(n, rng).mean() - 0.3) < 0.01
    b = Bursts(on=20, off=5).draw(n, rng)
    assert abs(b.mean() - 0.8) < 0.03
    runs = np.diff(np.flatnonzero(np.diff(b.astype(int)) != 0))
    assert 10 < runs.mean() < 15  # alternating runs of mean 20 and 5
    s = LongStalls(p=1.0, every=400, length=150).draw(n, rng)
    off = np.diff(np.flatnonzero(np.diff(s.astype(int)) != 0))
    assert off.max() >= 150 and 0.55 < s.mean() < 0.8
    assert isinstance(as_pattern(1.0), Always) and as_pattern(0.5) == Bernoulli(0.5)
    with pytest.raises(ValueError, match="probability must be in"):
        Bernoulli(0.0)
    bound = Bernoulli(0.5).bind(np.random.default_rng(1))
    assert [bound[i] for i in range(5000)] == bound.bits[:5000]  # lazily extended, stable


def test_extra_output_is_caught_in_amaranth_sim():
    """Harness self-test: a unit that sends every item twice delivers the expected count
    early; the idle check sees the rest as extra output (and the inputs not all taken)."""
    from amaranth import Module
    from amaranth.lib import wiring

    from moevit.hw.units.common import fm_shape, stream_signature
    from moevit.hw.units.delay import Delay

    class Doubler(wiring.Component):  # every item twice
        def __init__(self):
            self.d = Delay(CFG, stages=2)
            super().__init__(stream_signature(fm_shape(CFG), fm_shape(CFG)))

        def elaborate(self, platform):
            from amaranth import Signal
            m = Module()
            m.submodules.d = d = self.d
            second = Signal()
            m.d.comb += [d.i.valid.eq(self.i.valid), d.i.payload.eq(self.i.payload),
                         self.i.ready.eq(d.i.ready), self.o.valid.eq(d.o.valid),
                         self.o.payload.eq(d.o.payload), d.o.ready.eq(self.o.ready & second)]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += second.eq(~second)
            return m

    items = list(range(1, 21))
    got, extra, taken = _simulate(Doubler(), items, len(items), seed=1)
    assert len(extra) > 0 and taken < len(items)


def test_softmax_minimum_interleave_in_amaranth_sim():
    """MIN_INTERLEAVE = 2 rows at full rate: the sum is forwarded from the write stage on
    every score."""
    from moevit.hw.units.softmax import MIN_INTERLEAVE
    assert MIN_INTERLEAVE == 2
    spec = VECTOR_SPECS["softmax"]
    rng = np.random.default_rng(6)
    fields = concat_fields("softmax", spec.corners(CFG, rows=2), spec.random(CFG, 1000, rng,
                                                                           rows=2))
    vec = spec.make(CFG, fields)
    _check(*_simulate(get_unit("softmax").build(CFG, rows=2), vec.inputs, len(vec.expected),
                      seed=8, p=0.95), vec)
