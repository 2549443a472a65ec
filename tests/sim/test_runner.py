"""The simulation harness itself: cached builds, metrics, failures raise, both simulators."""

import pytest

from moevit.config import preset
from moevit.errors import ToolNotFoundError
from moevit import tools
from moevit.sim.runner import SimulationError, build_simulator, generate_verilog
from moevit.sim.units import get_unit, run_unit

pytestmark = pytest.mark.rtl
CFG = preset("edge-moe")


@pytest.mark.parametrize("sim", tools.SIMULATORS)
def test_delay_passes_and_measures(sim):
    tools.require_simulator(sim)
    m = run_unit("delay", CFG, sim=sim, vectors=600, seed=5)
    assert m["mismatches"] == 0
    assert m["latency_cycles"] == 3  # the Delay unit's stage count
    assert m["items_per_cycle"] == 1.0
    assert m["simulator"] == sim and m["simulator_version"]


def test_failing_cocotb_test_raises():
    tools.require_simulator("verilator")
    with pytest.raises(SimulationError, match=r"(?s)1 mismatches .*expected"):
        run_unit("delay", CFG, vectors=50, params={"corrupt": True})


def test_build_is_cached():
    tools.require_simulator("verilator")
    v = generate_verilog(lambda: get_unit("delay").build(CFG), CFG, "delay")
    assert v == generate_verilog(lambda: get_unit("delay").build(CFG), CFG, "delay")
    b1 = build_simulator(v, "delay")
    stamp = (b1 / ".built").stat().st_mtime
    assert build_simulator(v, "delay") == b1
    assert (b1 / ".built").stat().st_mtime == stamp


def test_unknown_simulator_is_named():
    with pytest.raises(ToolNotFoundError, match="supported: verilator, icarus"):
        tools.find_simulator("modelsim")


@pytest.mark.parametrize("sim", tools.SIMULATORS)
def test_waves_flag_writes_a_trace(sim):
    tools.require_simulator(sim)
    from pathlib import Path
    m = run_unit("delay", CFG, sim=sim, vectors=50, waves=True)
    assert m["waves"] and Path(m["waves"]).stat().st_size > 0
    assert Path(m["waves"]).suffix in (".vcd", ".fst")
    assert Path(m["waves"]).parent == Path(m["run_dir"])  # the run's own folder
