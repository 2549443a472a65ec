"""cocotb helpers for valid/ready stream units: clock/reset start-up (shared with the
attention testbench), a TB class owning the clock, one coroutine that drives the input and
drains the output with random back-pressure, and latency/throughput measurement.

Per cycle the driver writes on the falling edge and samples in the ReadOnly phase of the
same time step, when everything combinational (including ``i.ready``, which depends on
``o.ready``) has settled; those values hold until the next rising edge, so they are exactly
the handshakes that edge performs.  That is two triggers per cycle, the minimum for a
correct sampler with combinational ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


async def start_clock_reset(clk, rst, *, active: int = 1, period_ns: int = 10) -> None:
    """Start a ``period_ns`` clock on ``clk`` (``impl="gpi"`` on Icarus), hold ``rst`` at
    ``active`` for three rising edges, release it and wait one more edge."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    from moevit.sim.runner import tb_simulator
    kw = {"impl": "gpi"} if tb_simulator() == "icarus" else {}
    cocotb.start_soon(Clock(clk, period_ns, unit="ns", **kw).start())
    rst.value = active
    for _ in range(3):
        await RisingEdge(clk)
    rst.value = 1 - active
    await RisingEdge(clk)


@dataclass
class StreamRun:
    outputs: list = field(default_factory=list)   # raw output payloads (unsigned ints)
    in_cycles: list = field(default_factory=list)  # cycle of each input handshake
    out_cycles: list = field(default_factory=list)  # cycle of each output handshake
    cycles: int = 0


class StreamTB:
    """Owns the clock/reset of an Amaranth stream component (ports ``i__*``, ``o__*``)."""

    def __init__(self, dut, *, period_ns: int = 10, inp: str = "i", out: str = "o"):
        self.dut = dut
        self.clk = dut.clk
        self.rst = dut.rst
        self.i_valid = getattr(dut, f"{inp}__valid")
        self.i_ready = getattr(dut, f"{inp}__ready")
        self.i_payload = getattr(dut, f"{inp}__payload")
        self.o_valid = getattr(dut, f"{out}__valid")
        self.o_ready = getattr(dut, f"{out}__ready")
        self.o_payload = getattr(dut, f"{out}__payload")
        self.period_ns = period_ns

    async def start(self):
        self.i_valid.value = 0
        self.o_ready.value = 0
        self.i_payload.value = 0
        await start_clock_reset(self.clk, self.rst, period_ns=self.period_ns)

    async def run(self, inputs, n_out: int, *, p_valid: float = 1.0, p_ready: float = 1.0,
                  seed: int = 0, max_cycles: int | None = None) -> StreamRun:
        """Send ``inputs`` (unsigned ints) and collect ``n_out`` outputs.

        Each cycle the source offers the next item with probability ``p_valid`` (an offered
        item stays valid until taken, as AXI-Stream requires) and the sink is ready with
        probability ``p_ready``.
        """
        from cocotb.triggers import FallingEdge, ReadOnly

        n_in = len(inputs)
        if max_cycles is None:
            max_cycles = int((n_in + n_out + 200) / max(min(p_valid, p_ready), 0.05) * 2) + 1000
        rng = np.random.default_rng(seed)
        # precomputed coin flips (random.random() per cycle is a large share of the cost)
        offer = (rng.random(max_cycles) < p_valid).tolist() if p_valid < 1 else None
        ready = (rng.random(max_cycles) < p_ready).tolist() if p_ready < 1 else None
        inputs = [int(v) for v in inputs]
        res = StreamRun()
        outs, in_cyc, out_cyc = res.outputs, res.in_cycles, res.out_cycles
        i_valid, i_ready, i_payload = self.i_valid, self.i_ready, self.i_payload
        o_valid, o_ready, o_payload = self.o_valid, self.o_ready, self.o_payload
        clk = self.clk
        idx, offering, cur_ready = 0, False, None
        fall, ro = FallingEdge(clk), ReadOnly()
        cycle = 0
        while len(outs) < n_out:
            if cycle >= max_cycles:
                raise TimeoutError(
                    f"stream stalled: {idx}/{n_in} inputs taken, {len(outs)}/{n_out} outputs "
                    f"after {cycle} cycles")
            await fall
            if not offering and idx < n_in and (offer is None or offer[cycle]):
                i_payload.value = inputs[idx]
                i_valid.value = 1
                offering = True
            elif not offering:
                i_valid.value = 0
            r = True if ready is None else ready[cycle]
            if r is not cur_ready:
                o_ready.value = int(r)
                cur_ready = r
            await ro
            if offering and i_ready.value:
                in_cyc.append(cycle)
                idx += 1
                offering = False
            if r and o_valid.value:
                outs.append(o_payload.value.to_unsigned())
                out_cyc.append(cycle)
            cycle += 1
        await fall
        i_valid.value = 0
        res.cycles = cycle
        return res


def measure(run: StreamRun, out_to_in=None) -> dict:
    """Latency (cycles from an item's input handshake to its output handshake, minimum over
    items) and throughput (input items per cycle from first to last input handshake)."""
    in_c = np.asarray(run.in_cycles)
    out_c = np.asarray(run.out_cycles)
    idx = np.arange(len(out_c)) if out_to_in is None else np.asarray(out_to_in)
    lat = out_c - in_c[idx] if len(out_c) else np.array([0])
    span = int(in_c[-1] - in_c[0] + 1) if len(in_c) > 1 else 1
    ospan = int(out_c[-1] - out_c[0] + 1) if len(out_c) > 1 else 1
    return {"latency_cycles": int(lat.min()), "latency_max_cycles": int(lat.max()),
            "items_per_cycle": round(len(in_c) / span, 4),
            "outputs_per_cycle": round(len(out_c) / ospan, 4), "cycles": run.cycles}
