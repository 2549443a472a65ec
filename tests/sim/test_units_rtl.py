"""Every arithmetic unit against the golden model in RTL simulation (cocotb).

Verilator: 100k seeded random vectors per unit plus the corner cases, most of them under
random valid/ready back-pressure, then a full-rate phase that must reach 1 item/cycle with
the unit's documented latency.  Icarus: a smaller set (it is ~10x slower per cycle).
Set MOEVIT_RTL_VECTORS to change the Verilator count (e.g. 10000 for a quick run).
"""

import os

import pytest

from moevit.config import preset
from moevit import tools
from moevit.sim.units import STREAM_UNITS, run_unit, unit_latency
from moevit.sim.vectors import VECTOR_SPECS

pytestmark = pytest.mark.rtl

VERILATOR_VECTORS = int(os.environ.get("MOEVIT_RTL_VECTORS", 100_000))
ICARUS_VECTORS = 10_000
#: (simulator, random vectors, seed) of the per-unit runs
SIM_RUNS = [("verilator", VERILATOR_VECTORS, 2026), ("icarus", ICARUS_VECTORS, 7)]


def _check(m, unit, cfg, opts=None):
    assert m["mismatches"] == 0
    # counts observed on the DUT's ports: every input taken, exactly the expected outputs
    # (the sink stays ready after the last one: nothing extra arrives)
    assert m["inputs_taken"] == m["vectors"]
    assert m["outputs_received"] == m["outputs"] and m["extra_outputs"] == 0
    latency = unit_latency(unit, cfg, **(opts or {}))
    assert m["latency_cycles"] == latency
    assert m["latency_max_cycles"] == latency  # no back-pressure in the rate phase
    return m


@pytest.mark.parametrize("unit", STREAM_UNITS)
@pytest.mark.parametrize("sim,vectors,seed", [pytest.param(*r, id=r[0]) for r in SIM_RUNS])
def test_unit_rtl(sim, vectors, seed, unit):
    tools.require_simulator(sim)
    cfg = preset("edge-moe")
    m = run_unit(unit, cfg, sim=sim, vectors=vectors, seed=seed)
    _check(m, unit, cfg)
    # the vectors the testbench generated and sent (not the parameter echoed back)
    spec = VECTOR_SPECS[unit]
    n_corner = len(spec.make(cfg, spec.corners(cfg)).inputs)
    assert m["corner_vectors"] == n_corner > 0
    assert m["random_vectors"] >= vectors  # softmax rounds up to whole row groups
    assert m["vectors"] == n_corner + m["random_vectors"] == m["inputs_taken"]
    assert m["items_per_cycle"] == 1.0


def test_softmax_minimum_interleave_full_rate():
    """MIN_INTERLEAVE = 2 interleaved rows: the sum write-forwarding path is exercised on every
    score and the rate is still one score per cycle (tiny preset)."""
    tools.require_simulator("verilator")
    cfg = preset("tiny")
    from moevit.hw.units.softmax import MIN_INTERLEAVE
    opts = {"rows": MIN_INTERLEAVE}
    m = run_unit("softmax", cfg, vectors=20_000, seed=11, opts=opts)
    _check(m, "softmax", cfg, opts)
    assert m["items_per_cycle"] == 1.0


@pytest.mark.slow
def test_softmax_too_few_rows_stalls_but_stays_exact():
    """1 row: the hazard check inserts a bubble before every score (rate 1/2), results exact.
    (slow: a separate Verilator build; tests/hw/test_units_pysim.py covers the exactness.)"""
    tools.require_simulator("verilator")
    cfg = preset("edge-moe")
    opts = {"rows": 1, "full_rate": False}
    m = run_unit("softmax", cfg, vectors=10_000, seed=12, opts=opts)
    _check(m, "softmax", cfg, opts)
    # one bubble before every score except the first of each row instance: L/(2L-1) items per
    # cycle for rows of mean length L (the random groups average about 20: about 0.513)
    assert 0.5 < m["items_per_cycle"] < 0.53
