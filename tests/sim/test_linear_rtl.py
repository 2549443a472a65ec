"""The linear engine and the patch embedding in RTL simulation (cocotb) against the golden
model: golden-model layer taps, corner values and MoE routing corners through every mode
under random back-pressure, and the full-rate cycle counts against the cycle model.

tiny runs in CI; the full edge-moe shapes are ``slow``.  The edge-moe FC1 run and the
edge-moe MoE expert loop are recorded in bench/linear.json by scripts/bench_linear.py.
"""

import pytest

from moevit import tools
from moevit.config import preset
from moevit.sim.runner import SimulationError
from moevit.sim.units import run_unit

pytestmark = pytest.mark.rtl


def _within(measured, model, tol=0.01):
    return abs(measured - model) <= tol * model


def _check_linear(m, cfg, phases):
    assert m["mismatches"] == 0, m.get("errors")
    assert not m["errors"]
    assert set(m["phases"]) == set(phases)
    for ph in m["phases"].values():
        assert ph["outputs"] > 0 and ph["mismatches"] == 0
    if "corners" in phases:
        c = m["phases"]["corners"]
        assert c["experts_with_all_tokens"] == 1 and c["experts_without_tokens"] == 1
    if "rate" in phases:
        r = m["phases"]["rate"]
        for got, want in zip(r["pass_cycles"], r["model_pass_cycles"]):
            assert _within(got, want), (r["pass_cycles"], r["model_pass_cycles"])
        assert _within(r["span_cycles"], r["model_cycles"])


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_linear_tiny(sim):
    tools.require_simulator(sim)
    cfg = preset("tiny")
    phases = ["model", "corners", "rate"]
    m = run_unit("linear", cfg, sim=sim, seed=3, params={"phases": phases})
    _check_linear(m, cfg, phases)


def test_linear_tiny_harness_catches_a_wrong_expectation():
    tools.require_simulator("verilator")
    with pytest.raises(SimulationError, match="differ"):
        run_unit("linear", preset("tiny"), seed=1,
                 params={"phases": ["corners"], "corrupt": True})


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_patch_embed_tiny(sim):
    tools.require_simulator(sim)
    cfg = preset("tiny")
    m = run_unit("patch_embed", cfg, sim=sim, seed=4)
    assert m["mismatches"] == 0 and not m["errors"], m.get("errors")
    r = m["phases"]["rate"]
    assert _within(r["pass_cycles"], r["model_cycles"])


def test_patch_embed_tiny_harness_catches_a_wrong_expectation():
    tools.require_simulator("verilator")
    with pytest.raises(SimulationError, match="differ"):
        run_unit("patch_embed", preset("tiny"), seed=1,
                 params={"phases": ["model"], "corrupt": True})


@pytest.mark.slow
def test_linear_edge_moe_fc1_full_rate():
    """Full edge-moe FC1 (129 × 192 → 768, GELU) then FC2 with its weights loading during
    FC1: bit-exact, ≥ 0.98 tile steps per cycle, cycles within 1 % of the model."""
    tools.require_simulator("verilator")
    cfg = preset("edge-moe")
    m = run_unit("linear", cfg, seed=5, params={"phases": ["rate"]})
    _check_linear(m, cfg, ["rate"])
    assert m["phases"]["rate"]["steps_per_cycle"] >= 0.98
    assert m["phases"]["rate"]["weights_load_hidden"] == [True, True]


@pytest.mark.slow
def test_patch_embed_edge_moe():
    tools.require_simulator("verilator")
    cfg = preset("edge-moe")
    m = run_unit("patch_embed", cfg, seed=6)
    assert m["mismatches"] == 0 and not m["errors"], m.get("errors")
    r = m["phases"]["rate"]
    assert _within(r["pass_cycles"], r["model_cycles"])
    assert r["steps_per_cycle"] >= 0.98
