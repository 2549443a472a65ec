"""The MoE gate in RTL simulation against the golden stage functions and model taps.

tiny (CI): the golden-model layer, five corner layers and two random layers under random
valid/ready back-pressure on every stream, then an unthrottled rerun whose cycles must match
the cycle model within 1 %.  Full edge-moe shapes (129 tokens, 16 experts, dim 192): marked
``slow``; the recorded run is in bench/moe_gate.json (scripts/bench_moe_gate.py).
"""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.sim.units import run_unit

pytestmark = pytest.mark.rtl


def _check(m, cfg):
    assert m["mismatches"] == 0, m["mismatch_examples"]
    assert m["mismatches_taps"] == 0
    assert m["extra_outputs"] == 0
    assert m["items_per_cycle"] == 1.0                     # one x block per clock
    assert abs(m["cycles"] - m["model_cycles"]) <= 0.01 * m["model_cycles"]
    assert m["ideal_cycles"] == cfg.tokens * cfg.feature_blocks
    assert "initial_entry_kept" in m["layer_names"] and "format_extremes" in m["layer_names"]


@pytest.mark.parametrize("sim,seed", [("verilator", 5), ("icarus", 6)])
def test_moe_gate_tiny(sim, seed):
    tools.require_simulator(sim)
    cfg = preset("tiny")
    m = run_unit("moe_gate", cfg, sim=sim, vectors=2 * cfg.tokens, seed=seed)
    _check(m, cfg)
    assert m["layers"] == 1 + 5 + 2


@pytest.mark.slow
def test_moe_gate_edge_moe_full_shapes():
    tools.require_simulator("verilator")
    cfg = preset("edge-moe")
    m = run_unit("moe_gate", cfg, sim="verilator", vectors=cfg.tokens, seed=7)
    _check(m, cfg)
