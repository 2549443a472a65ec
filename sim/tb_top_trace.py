"""cocotb testbench: a timeline of one image through ``moevit_top``, for the top cycle model.

The same host and memory as :mod:`moevit.sim.tb_top_e2e` (cocotbext-axi ``AxiRam`` per port,
seeded weights and images, no random pauses unless ``pause`` is set), one ``ap_start`` of one
image; every clock it samples the sequencer's and the MoE FSM's state registers and the AXI
handshakes of every port (the build must expose internal signals: the default, blanket
``--public-flat-rw`` Verilator build).

Metrics:

* ``cycles``: the ``cycles`` register of the run; ``output_ok``: ``x`` equals the golden model;
* ``events``: ``[cycle, what, value]`` for every change of ``seq_state``, ``moe_state``,
  ``moe_expert``, ``moe_length`` and the top-level registers named in ``extra_signals``
  (cycle 0 = the first cycle the sequencer leaves IDLE);
* ``axi``: per port, the AR-handshake → first-R-beat latencies, the cycles between bursts of
  one read stream (first R beat of a burst minus the previous burst's last beat), and the
  last-W-beat → B latencies, as {min, max, count} -- the ideal memory the cycle model uses.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from moevit.golden.model import GoldenModel
from moevit.golden.weights import seeded_weights
from moevit.host.layout import GATE_POINTER
from moevit.host.packing import pack_weights
from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_top_e2e import REGMAP_POINTERS, Dram, Host

TRACED = ("seq_state", "moe_state", "moe_expert", "moe_length")


class _Stat:
    def __init__(self):
        self.values = []

    def add(self, v: int) -> None:
        self.values.append(int(v))

    def summary(self) -> dict:
        v = self.values
        return {"min": min(v), "max": max(v), "count": len(v)} if v else {"count": 0}


async def _trace(dut, cfg, out: dict, stop: list, traced=TRACED) -> None:
    """Sample every clock until ``stop`` is set (see module doc)."""
    last = {n: None for n in traced}
    t0 = None
    ports = []
    for k in range(cfg.mem_ports):
        def sig(s, k=k):
            return getattr(dut, f"m_axi_gmem{k}_{s}")
        ports.append(dict(sig=sig, ar=[], r_first=True, r_last_end=None, w_last=[],
                          ar_busy_since_last=False,
                          lat=_Stat(), gap=_Stat(), b=_Stat()))
    cyc = 0
    while not stop:
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        cyc += 1
        vals = {n: int(getattr(dut, n).value) for n in traced}
        if t0 is None and vals["seq_state"] != 0:
            t0 = cyc
        if t0 is not None:
            for n, v in vals.items():
                if v != last[n]:
                    out["events"].append([cyc - t0, n, v])
        last = vals
        for p in ports:
            s = p["sig"]
            if int(s("ARVALID").value) and int(s("ARREADY").value):
                p["ar"].append(cyc)
            if int(s("RVALID").value) and int(s("RREADY").value):
                if p["r_first"]:
                    p["lat"].add(cyc - p["ar"].pop(0))
                    if p["r_last_end"] is not None and p["ar_busy_since_last"]:
                        p["gap"].add(cyc - p["r_last_end"])
                p["r_first"] = bool(int(s("RLAST").value))
                if p["r_first"]:
                    p["r_last_end"] = cyc
                    # a next burst already requested: its distance is a streaming gap
                    p["ar_busy_since_last"] = bool(p["ar"])
            if int(s("WVALID").value) and int(s("WREADY").value) and int(s("WLAST").value):
                p["w_last"].append(cyc)
            if int(s("BVALID").value) and int(s("BREADY").value):
                p["b"].add(cyc - p["w_last"].pop(0))
    out["axi"] = [{"read_latency": p["lat"].summary(), "read_burst_gap": p["gap"].summary(),
                   "write_b_latency": p["b"].summary()} for p in ports]


@cocotb.test()
async def top_trace(dut):
    cfg = tb_config()
    p = tb_params()
    seed = p.get("seed", 1)
    task = p.get("task", 0)
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
    dut.ap_rst_n.value = 0
    weights = seeded_weights(cfg, seed)
    packed = pack_weights(weights, cfg, cache=False)
    dram = Dram(cfg, 1)
    host = Host(dut, cfg, dram, p.get("pause", 0.0), seed)
    await ClockCycles(dut.ap_clk, 4)
    dut.ap_rst_n.value = 1
    await ClockCycles(dut.ap_clk, 2)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(1, cfg.image_channels, cfg.image_height,
                                        cfg.image_width), dtype=np.uint8)
    for name, arr in packed.arrays.items():
        dram.write(name, arr)
    dram.write("images", images)
    for name in REGMAP_POINTERS:
        await host.reg(name, dram.addr[name])
    dram.write(GATE_POINTER, packed.gates[task])
    await host.reg(GATE_POINTER, dram.addr[GATE_POINTER])
    await host.reg("GIER", 1)
    await host.reg("IP_IER", 1)

    out, stop = {"events": []}, []
    tracer = cocotb.start_soon(_trace(dut, cfg, out, stop,
                                         TRACED + tuple(p.get("extra_signals", ()))))
    cycles, _ = await host.run(num_images=1, reload=1, max_cycles=p.get("max_cycles",
                                                                       3_000_000))
    stop.append(True)
    await tracer
    want = GoldenModel(cfg, weights).run(images, task=task).output
    ok = bool(np.array_equal(dram.read("x")[:1].reshape(-1), np.asarray(want).reshape(-1)))
    write_metrics({"cycles": cycles, "output_ok": ok, **out})
    assert ok, "the traced run's output differs from the golden model"
