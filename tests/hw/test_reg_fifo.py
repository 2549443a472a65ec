"""hw.units.reg_fifo: RegFlagFIFO behaves cycle for cycle like Amaranth's SyncFIFOBuffered
(same w_rdy, r_rdy and r_data every cycle under random writes and reads, filling it to
full and draining it), for memory depths that are and are not powers of two."""

import random

import pytest
from amaranth import Module, Signal
from amaranth.lib import fifo
from amaranth.sim import Simulator

from moevit.errors import ConfigError
from moevit.hw.units.reg_fifo import RegFlagFIFO


@pytest.mark.parametrize("depth", [2, 3, 5, 8, 9, 17])
def test_matches_sync_fifo_buffered(depth):
    m = Module()
    m.submodules.dut = dut = RegFlagFIFO(width=8, depth=depth)
    m.submodules.ref = ref = fifo.SyncFIFOBuffered(width=8, depth=depth)
    w_en, r_en, data = Signal(), Signal(), Signal(8)
    for f in (dut, ref):
        m.d.comb += [f.w_en.eq(w_en), f.w_data.eq(data), f.r_en.eq(r_en)]
    rng = random.Random(depth)
    # phases: mostly writes (fills to full), mixed, mostly reads (drains to empty)
    probs = [(0.9, 0.1)] * 60 + [(0.5, 0.5)] * 200 + [(0.1, 0.9)] * 60 + [(0.6, 0.4)] * 100
    seen = {"full": 0, "read": 0}
    bad = []

    async def bench(ctx):
        for cyc, (pw, pr) in enumerate(probs):
            ctx.set(w_en, rng.random() < pw)
            ctx.set(r_en, rng.random() < pr)
            ctx.set(data, rng.randrange(256))
            got = (ctx.get(dut.w_rdy), ctx.get(dut.r_rdy))
            want = (ctx.get(ref.w_rdy), ctx.get(ref.r_rdy))
            if got != want or (want[1] and ctx.get(dut.r_data) != ctx.get(ref.r_data)):
                bad.append((cyc, got, want))
            seen["full"] += not want[0]
            seen["read"] += want[1] and ctx.get(r_en)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]
    assert seen["full"] > 0 and seen["read"] > 50       # the run reached full and moved data


def test_rejects_depth_below_two():
    with pytest.raises(ConfigError, match="depth must be >= 2"):
        RegFlagFIFO(width=8, depth=1)
