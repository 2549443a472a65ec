"""Drive an Amaranth component's valid/ready streams in Amaranth's own simulator: several
sources and sinks at once, random back-pressure, handshake cycles recorded."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator


def run_pysim(comp, sources: dict, sinks: dict, *, p_valid=1.0, p_ready=1.0, seed=0,
              idle_after: int = 0, max_cycles: int | None = None):
    """``sources`` {port name: list of payload ints}, ``sinks`` {port name: count}.

    Returns ({sink: payloads}, {port: handshake cycles}, extra) where ``extra`` counts
    output beats that arrived during ``idle_after`` cycles of ready-high after the run."""
    rng = np.random.default_rng(seed)
    total = sum(len(v) for v in sources.values()) + sum(sinks.values())
    max_cycles = max_cycles or int(20 * total / max(min(p_valid, p_ready), 0.05)) + 2000
    got = {k: [] for k in sinks}
    fired = {k: [] for k in list(sources) + list(sinks)}
    extra = [0]

    def port(name):
        return getattr(comp, name)

    async def bench(ctx):
        idx = {k: 0 for k in sources}
        offering = {k: False for k in sources}
        cycle = 0
        while any(idx[k] < len(v) for k, v in sources.items()) or \
                any(len(got[k]) < n for k, n in sinks.items()):
            assert cycle < max_cycles, f"streams stalled: {idx}, {[len(v) for v in got.values()]}"
            for k, items in sources.items():
                p = port(k)
                if not offering[k]:
                    if idx[k] < len(items) and rng.random() < p_valid:
                        ctx.set(Value.cast(p.payload), items[idx[k]])
                        ctx.set(p.valid, 1)
                        offering[k] = True
                    else:
                        ctx.set(p.valid, 0)
            rdy = {}
            for k, n in sinks.items():
                rdy[k] = bool(rng.random() < p_ready) and len(got[k]) < n
                ctx.set(port(k).ready, rdy[k])
            fire_in = {k: offering[k] and ctx.get(port(k).ready) for k in sources}
            for k in sinks:
                p = port(k)
                if rdy[k] and ctx.get(p.valid):
                    got[k].append(int(ctx.get(Value.cast(p.payload))) &
                                  ((1 << len(Value.cast(p.payload))) - 1))
                    fired[k].append(cycle)
            await ctx.tick()
            for k in sources:
                if fire_in[k]:
                    fired[k].append(cycle)
                    idx[k] += 1
                    offering[k] = False
            cycle += 1
        for k in sources:
            ctx.set(port(k).valid, 0)
        for k in sinks:
            ctx.set(port(k).ready, 1)
        for _ in range(idle_after):
            for k in sinks:
                if ctx.get(port(k).valid):
                    extra[0] += 1
            await ctx.tick()

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, fired, extra[0]
