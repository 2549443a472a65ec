"""cocotb probe: how many cycles per second a built design simulates with nothing but its
clock running (no Python per cycle: a C++ GPI clock and one timer).  Parameters: ``clock``,
``reset``, ``reset_active`` (1: active high), ``cycles``.  Writes ``idle_cycles``,
``idle_wall_s``, ``idle_cpu_s`` (CPU time of the simulator process) and
``idle_cycles_per_cpu_s``."""

from __future__ import annotations

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Timer

from moevit.sim.runner import tb_params, write_metrics

PERIOD_NS = 10


@cocotb.test()
async def test_idle_clock(dut):
    p = tb_params()
    n = p.get("cycles", 200_000)
    rst = getattr(dut, p.get("reset", "rst"))
    active = p.get("reset_active", 1)
    rst.value = active
    cocotb.start_soon(Clock(getattr(dut, p.get("clock", "clk")), PERIOD_NS, unit="ns",
                            impl="gpi").start())
    await Timer(3 * PERIOD_NS, unit="ns")
    rst.value = 1 - active
    t, c = time.perf_counter(), time.process_time()
    await Timer(n * PERIOD_NS, unit="ns")
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    write_metrics({"idle_cycles": n, "idle_wall_s": round(wall, 3), "idle_cpu_s": round(cpu, 3),
                   "idle_cycles_per_cpu_s": round(n / cpu)})
