"""LayerNorm and residual units in RTL simulation (cocotb on the generated Verilog).

Each run streams back-to-back calls with random valid/ready back-pressure on every stream
(corner tokens first), compares every output with the golden stage function, checks that
nothing extra arrives afterwards, then times an unthrottled call against the cycle model.
tiny runs in CI; the full edge-moe shapes (129 tokens x 192) are marked slow.
"""

import pytest

from moevit.config import preset
from moevit import tools
from moevit.hw.units.layernorm import layernorm_cycles
from moevit.hw.units.residual import residual_cycles
from moevit.sim.units import run_unit

pytestmark = pytest.mark.rtl


def _check(m, model_cycles):
    assert m["mismatches"] == 0 and m["outputs"] > 0
    assert m["corner_vectors"] > 0
    assert m["extra_outputs"] == 0
    assert abs(m["cycles"] - model_cycles) <= 0.01 * model_cycles, (m["cycles"], model_cycles)
    assert m["model_cycles"] == model_cycles
    assert m["items_per_cycle"] == 1.0


def _run(unit, preset_name, sim, seed):
    tools.require_simulator(sim)
    cfg = preset(preset_name)
    m = run_unit(unit, cfg, sim=sim, seed=seed)
    blocks = cfg.tokens * cfg.feature_blocks
    model = (layernorm_cycles(cfg)["cycles"] if unit == "layernorm"
             else residual_cycles(cfg, blocks))
    _check(m, model)
    assert m["ideal_cycles"] == blocks
    return m


@pytest.mark.parametrize("unit", ["layernorm", "residual"])
@pytest.mark.parametrize("sim,seed", [("verilator", 2026), ("icarus", 7)])
def test_tiny(unit, sim, seed):
    _run(unit, "tiny", sim, seed)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["layernorm", "residual"])
def test_edge_moe_full_shapes(unit):
    """129 tokens x 192 per call on Verilator."""
    m = _run(unit, "edge-moe", "verilator", 1)
    assert m["tokens"] == 129 and m["dim"] == 192
