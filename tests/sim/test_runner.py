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
    assert m["mismatches"] == 0 and m["extra_outputs"] == 0
    assert m["inputs_taken"] == m["vectors"] == m["outputs_received"]
    assert m["latency_cycles"] == 3  # the Delay unit's stage count
    assert m["items_per_cycle"] == 1.0
    assert m["simulator"] == sim and m["simulator_version"]


def test_failing_cocotb_test_raises():
    tools.require_simulator("verilator")
    with pytest.raises(SimulationError, match=r"(?s)1 mismatches .*expected"):
        run_unit("delay", CFG, vectors=50, params={"corrupt": True})


class DelayWithExtra:
    """A faulty unit for the harness self-test: the Delay unit, plus one extra item (payload
    0x5A5A) once ``after`` items have left it."""

    def __new__(cls, cfg, after: int):
        from amaranth import Module, Mux, Signal
        from amaranth.lib import wiring

        from moevit.hw.units.common import fm_shape, stream_signature
        from moevit.hw.units.delay import Delay

        class _DelayWithExtra(wiring.Component):
            def __init__(self):
                super().__init__(stream_signature(fm_shape(cfg), fm_shape(cfg)))

            def elaborate(self, platform):
                m = Module()
                m.submodules.d = d = Delay(cfg, stages=3)
                count = Signal(range(after + 1))
                pending, spent = Signal(), Signal()
                m.d.comb += [d.i.valid.eq(self.i.valid), d.i.payload.eq(self.i.payload),
                             self.i.ready.eq(d.i.ready), d.o.ready.eq(self.o.ready),
                             self.o.valid.eq(d.o.valid | pending),
                             self.o.payload.eq(Mux(d.o.valid, d.o.payload, 0x5A5A))]
                with m.If(d.o.valid & self.o.ready & (count < after)):
                    m.d.sync += count.eq(count + 1)
                    with m.If((count == after - 1) & ~spent):
                        m.d.sync += [pending.eq(1), spent.eq(1)]
                with m.If(pending & ~d.o.valid & self.o.ready):
                    m.d.sync += pending.eq(0)
                return m

        return _DelayWithExtra()


@pytest.mark.parametrize("sim", tools.SIMULATORS)
def test_unit_emitting_one_extra_item_fails(sim):
    """A unit that sends one item more than expected (after the corner-case phase) fails
    as an extra output: the sink stays ready after the last expected item."""
    from moevit.sim.runner import run_testbench
    from moevit.sim.vectors import VECTOR_SPECS
    tools.require_simulator(sim)
    n_corner = len(VECTOR_SPECS["delay"].corners(CFG)["x"])
    params = {"unit": "delay", "vectors": 50, "seed": 1, "opts": {}}
    with pytest.raises(SimulationError, match=r"(?s)1 mismatches .*\(1 extra\).*"
                                              r"got \{'y': 23130\}, expected nothing "
                                              r"\(extra output\)") as err:
        run_testbench(lambda: DelayWithExtra(CFG, after=n_corner), CFG, "delay_extra",
                      "moevit.sim.tb_units", sim=sim, params=params)
    assert err.value.metrics["extra_outputs"] == 1
    assert err.value.metrics["outputs_received"] == err.value.metrics["outputs"] + 1
    # the same harness passes the unit without the fault
    ok = run_testbench(lambda: DelayWithExtra(CFG, after=10 ** 6), CFG, "delay_extra",
                       "moevit.sim.tb_units", sim=sim, params=params)
    assert ok["extra_outputs"] == 0 and ok["outputs_received"] == ok["outputs"]


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
