"""Stream replay (:mod:`moevit.hw.units.stream_replay`) in Amaranth's simulator.

Checked: commands back to back (1 and several passes, one beat, the full depth, the most
passes) under random and bursty valid/ready on all three streams -- the output is each
command's input sequence repeated ``passes`` times, exactly the command's beats are taken
from the input (the next command's data follows on the same source), nothing more leaves
after the last command; at full rate the first beat leaves in the cycle it arrives and the
passes follow each other with no gap; zero-length commands; the K/V sizes of the presets;
and that the buffer is a memory in the Verilog (not a register file).
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.units.common import silence
from moevit.hw.units.stream_replay import StreamReplay
from moevit.hw.verilog import verilog_text
from moevit.sim.tb_stream import Bursts, SimSink, SimSource, sim_drive_streams, sim_expect_idle

WIDTH, DEPTH, MAX_PASSES = 32, 24, 5


def run_replay(comp, commands, *, p_cmd=1.0, p_in=1.0, p_out=1.0, seed=0, idle=60):
    """Drive ``commands`` [(beats, passes)] with random data (none for a command of 0
    passes); returns (data per command, output beats, extra output after the run, input
    handshake cycles, output handshake cycles)."""
    rng = np.random.default_rng(seed)
    data = [[int(v) for v in rng.integers(0, 1 << comp.width, size=b if p else 0,
                                          dtype=np.uint64)]
            for b, p in commands]
    src = SimSource(comp.i, sum(data, []), p_in, rng)
    cmd = SimSource(comp.cmd, [b | (p << comp.depth.bit_length()) for b, p in commands],
                    p_cmd, rng)
    n_out = sum(b * p for b, p in commands)
    snk = SimSink(comp.o, n_out, p_out, rng)
    extra = []

    async def bench(ctx):
        await sim_drive_streams(ctx, [cmd, src, snk], max_cycles=40 * (n_out + 50),
                                what="stream replay")
        extra.extend(await sim_expect_idle(ctx, [comp.o], idle))
        assert ctx.get(comp.idle), "not idle after the last command"

    sim = Simulator(comp)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return data, snk.items, extra, src.cycles, snk.cycles


def expected(data, commands):
    return sum((d * p for d, (_, p) in zip(data, commands)), [])


COMMANDS = [(DEPTH, 3), (1, 4), (7, 1), (DEPTH, MAX_PASSES), (2, 2), (5, 3), (DEPTH, 1),
            (1, 1), (13, 2)]


@pytest.mark.parametrize("p_cmd,p_in,p_out,seed", [(0.5, 0.7, 0.6, 1), (0.3, 0.9, 0.4, 2),
                                                   (1.0, 0.5, 0.9, 3)])
def test_replays_under_random_backpressure(p_cmd, p_in, p_out, seed):
    comp = StreamReplay(WIDTH, DEPTH, MAX_PASSES)
    data, got, extra, *_ = run_replay(comp, COMMANDS, p_cmd=p_cmd, p_in=p_in, p_out=p_out,
                                      seed=seed)
    want = expected(data, COMMANDS)
    bad = [k for k in range(len(want)) if got[k] != want[k]]
    assert not bad, f"{len(bad)} of {len(want)} beats differ, first at {bad[0]}"
    assert not extra, f"{len(extra)} beats after the last expected one"


def test_bursty_streams():
    comp = StreamReplay(WIDTH, DEPTH, MAX_PASSES)
    data, got, extra, *_ = run_replay(comp, COMMANDS, p_cmd=Bursts(3, 9), p_in=Bursts(10, 6),
                                      p_out=Bursts(4, 11), seed=5)
    assert got == expected(data, COMMANDS) and not extra


@pytest.mark.parametrize("beats,passes", [(DEPTH, MAX_PASSES), (1, 3), (9, 1)])
def test_full_rate_no_latency_no_gaps(beats, passes):
    """Input always valid, output always ready: beat k of the first pass leaves in the
    cycle it arrives, and every later beat in the next cycle (no bubble between passes)."""
    comp = StreamReplay(WIDTH, DEPTH, MAX_PASSES)
    _, got, _, in_c, out_c = run_replay(comp, [(beats, passes)], seed=4)
    assert out_c[:beats] == in_c
    gaps = [int(g) for g in np.diff(out_c)]
    assert len(got) == beats * passes
    # one beat: it is read back the cycle after it is written, one bubble after pass 1
    want = [1] * (beats * passes - 1)
    if beats == 1 and passes > 1:
        want[0] = 2
    assert gaps == want


def test_zero_commands_do_nothing():
    """Commands of 0 beats or 0 passes are taken and move nothing; the next one runs."""
    comp = StreamReplay(WIDTH, DEPTH, MAX_PASSES)
    cmds = [(0, 3), (4, 0), (0, 0), (3, 2)]
    data, got, extra, in_c, _ = run_replay(comp, cmds, p_in=0.8, p_out=0.8, seed=6)
    assert len(in_c) == 3, "input beats taken by an empty command"
    assert got == data[3] * 2 and not extra


@pytest.mark.parametrize("name,depth,passes", [("tiny", None, None), ("edge-moe", 3096, 33),
                                               ("zcu104", 3096, 17)])
def test_attention_sizes(name, depth, passes):
    cfg = preset(name)
    comp = StreamReplay.for_attention(cfg)
    silence(comp)           # sizes only
    assert comp.width == cfg.axi_width
    assert comp.depth == cfg.tokens * cfg.feature_blocks
    assert comp.max_passes == cfg.query_blocks
    if depth is not None:
        assert (comp.depth, comp.max_passes) == (depth, passes)


def test_buffer_is_a_memory():
    """The buffer is one inferred memory (``reg [W-1:0] .. [0:N-1]``), not N registers."""
    comp = StreamReplay(256, 300, 7)
    text = verilog_text(comp, "replay")
    assert "reg [255:0] buffer [" in text.replace("\\", "")
    assert text.count("[255:0]") < 12


@pytest.mark.parametrize("kw", [dict(width=0, depth=4, max_passes=2),
                                dict(width=8, depth=0, max_passes=2),
                                dict(width=8, depth=4, max_passes=0)])
def test_bad_sizes(kw):
    with pytest.raises(ConfigError, match="StreamReplay"):
        StreamReplay(**kw)
