"""Stream replay: pass a stream through once while recording it, then send it again.

The attention unit reads every key (and every value) once per query block: the whole K (V)
tensor ``query_blocks`` times.  Fetching it from DRAM each time costs ``query_blocks`` x the
tensor's bytes; :class:`StreamReplay` fetches it once.  On a command ``(beats, passes)`` it

1. passes the first ``beats`` input beats straight through (combinationally: valid, ready and
   payload, so the first pass adds no latency) and writes each taken beat into a block RAM;
2. then sends the recorded sequence ``passes - 1`` more times from the RAM, one beat per
   cycle while the consumer is ready, without a gap between passes nor between the first
   pass and the second (the RAM read for beat 0 is issued with the last pass-through beat);
3. takes the next command once its last beat has left.

``o`` holds valid and payload while not ready (the RAM read port is enabled only when its
output register moves).  A command with ``beats`` or ``passes`` 0 is taken and does nothing.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.common import silence


#: the K/V buffer's RAM in UltraRAM on Xilinx (Yosys ``synth_xilinx`` and Vivado honour
#: ``ram_style``): at edge-moe sizes 4 URAM288 and ~630 LUT instead of 25.5 BRAM36 and
#: ~1,130 LUT (the block RAMs cascade in depth and need an output mux), and the design's
#: other memories already fill most of the BRAM
ATTENTION_RAM_STYLE = "ultra"


def command_layout(depth: int, max_passes: int) -> data.StructLayout:
    """``beats`` (1..depth) per pass and the number of ``passes`` (the first included)."""
    return data.StructLayout({"beats": unsigned(depth.bit_length()),
                              "passes": unsigned(max_passes.bit_length())})


class StreamReplay(wiring.Component):
    """``i`` -> ``o``: the first pass through, then ``passes - 1`` replays (see module doc).

    Ports: ``cmd`` In(stream of :func:`command_layout`), ``i`` In(stream of ``width`` bits),
    ``o`` Out(stream of ``width`` bits), ``idle`` Out(1) (no command running).  The RAM is
    ``depth`` x ``width`` bits (one write port, one synchronous read port with enable);
    ``ram_style`` becomes its ``ram_style`` attribute (e.g. ``"ultra"``, ``"block"``)."""

    def __init__(self, width: int, depth: int, max_passes: int, *, ram_style: str | None = None):
        for what, v in (("width", width), ("depth", depth), ("max_passes", max_passes)):
            if int(v) < 1:
                silence(self)
                raise ConfigError(f"StreamReplay: {what} must be >= 1 (got {v})")
        self.width, self.depth, self.max_passes = int(width), int(depth), int(max_passes)
        self.ram_style = ram_style
        super().__init__({"cmd": In(stream.Signature(command_layout(self.depth,
                                                                    self.max_passes))),
                          "i": In(stream.Signature(self.width)),
                          "o": Out(stream.Signature(self.width)),
                          "idle": Out(1)})

    @classmethod
    def for_attention(cls, cfg: AcceleratorConfig) -> "StreamReplay":
        """The K/V replay of the top: one activation tensor (tokens x feature_blocks beats of
        ``axi_width`` bits), up to ``query_blocks`` passes."""
        if cfg.axi_width != cfg.feature_block * cfg.formats.fm.width:
            raise ConfigError(f"config {cfg.name!r}: the K/V replay keeps one "
                              f"{cfg.feature_block}-word feature block per {cfg.axi_width}-bit "
                              f"beat; axi_width must be feature_block x fm width")
        return cls(cfg.axi_width, cfg.tokens * cfg.feature_blocks, cfg.query_blocks,
                   ram_style=ATTENTION_RAM_STYLE)

    def elaborate(self, platform):
        m = Module()
        N = self.depth
        mem = memory.Memory(shape=unsigned(self.width), depth=N, init=[],
                            attrs={"ram_style": self.ram_style} if self.ram_style else None)
        m.submodules.buffer = mem
        wp = mem.write_port()
        rp = mem.read_port()          # synchronous, not transparent; data held while ~en

        # the address before this command's last one (beats - 2), one beat only; the "at the
        # last address" flags of both pointers are registers (no compare on the path into
        # the FSM and the pass counter)
        last_m1 = Signal(range(N), name="last_addr_m1")
        single = Signal(name="single_beat")
        wa_last, ra_last = Signal(name="write_at_last"), Signal(name="read_at_last")
        passes_left = Signal(range(self.max_passes + 1), name="passes_left")  # to read
        wa = Signal(range(N), name="write_addr")
        ra = Signal(range(N), name="read_addr")
        out_valid = Signal(name="out_valid")                 # rp.data is an unsent beat
        rd_issue = Signal(name="read_issue")

        # RAM reads: one per issue, wrapping at the pass end (then one pass fewer to read)
        m.d.comb += [rp.addr.eq(ra), rp.en.eq(rd_issue)]

        with m.FSM(name="replay"):
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), self.idle.eq(1)]
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    one = p.beats == 1
                    m.d.sync += [last_m1.eq(p.beats - 2), single.eq(one),
                                 wa_last.eq(one), ra_last.eq(one),
                                 passes_left.eq(p.passes - 1), wa.eq(0), ra.eq(0),
                                 out_valid.eq(0)]
                    with m.If((p.beats != 0) & (p.passes != 0)):
                        m.next = "THROUGH"
            with m.State("THROUGH"):
                m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload),
                             self.i.ready.eq(self.o.ready),
                             wp.addr.eq(wa), wp.data.eq(self.i.payload)]
                take = self.i.valid & self.o.ready
                m.d.comb += wp.en.eq(take)
                with m.If(take):
                    m.d.sync += [wa.eq(wa + 1), wa_last.eq(wa == last_m1)]
                    with m.If(wa_last):
                        with m.If(passes_left == 0):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "REPLAY"
                            # beat 0 was written in an earlier cycle unless it is this one
                            with m.If(~single):
                                m.d.comb += rd_issue.eq(1)
                                m.d.sync += out_valid.eq(1)
            with m.State("REPLAY"):
                m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(rp.data)]
                move = ~out_valid | self.o.ready
                with m.If(move):
                    m.d.comb += rd_issue.eq(passes_left != 0)
                    m.d.sync += out_valid.eq(passes_left != 0)
                    with m.If(passes_left == 0):
                        m.next = "IDLE"

        with m.If(rd_issue):
            m.d.sync += [ra.eq(Mux(ra_last, 0, ra + 1)),
                         ra_last.eq(Mux(ra_last, single, ra == last_m1))]
            with m.If(ra_last):
                m.d.sync += passes_left.eq(passes_left - 1)
        return m


__all__ = ["StreamReplay", "command_layout"]
