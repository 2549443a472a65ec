"""``OnlineSoftmax``: the single-pass softmax statistics of spec §4.5.3 for interleaved rows.

Input items carry a score, a row id and first/last flags; the unit keeps (sum, max) per row
and, at each row's last score, emits ``(hls_recip(sum), max, row)``.

The state is split into two loops, each short:

* the **max** loop (``max`` memory): read, compare with the score, write, all in stage 1 —
  a one-stage read-modify-write, so consecutive items of the same row are fine;
* the **sum** loop (``sum`` memory): the exp argument is formed from the old max in stages
  1-2, exp runs in its own pipeline, and the sum is read only where it is needed
  (``SUM_READ_STAGE``), registered with e, multiplied (registered product) and written
  two stages later; a write-forwarding path from the write stage to the read stage makes
  the minimum same-row distance ``MIN_INTERLEAVE`` = 2 items.

A hazard check holds an item back (a bubble) while the previous item of its row is right
ahead of it, so any interleave is exact; R >= 2 rows run at one score per cycle, one row at
1/2.  Constructing the unit for fewer rows raises :class:`ConfigError` unless
``full_rate=False`` acknowledges the slowdown.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.common import require_fm, silence, stream_signature
from moevit.hw.units.divide import recip_stages
from moevit.hw.units.exp import EXP_STAGES, exp_stages
from moevit.hw.units.pipeline import StallPipeline

#: stage of the sum read: input register (1), max loop + difference (-> 2), exp argument
#: (-> 3), the exp pipeline (EXP_STAGES)
SUM_READ_STAGE = 3 + EXP_STAGES
#: stages from the state read (stage 1) to the sum write
LOOP_STAGES = SUM_READ_STAGE + 2
#: minimum same-row distance (items) for one score per cycle: the sum is read at
#: SUM_READ_STAGE and written (forwarded) at SUM_READ_STAGE + 2
MIN_INTERLEAVE = 2


def default_rows(cfg: AcceleratorConfig) -> int:
    """Rows interleaved by the attention unit: P query lanes x head lanes."""
    return cfg.attn_parallel * cfg.head_lanes


def softmax_latency(cfg: AcceleratorConfig) -> int:
    """OnlineSoftmax latency: cycles from a row's last score to its result (input register,
    max loop, exp argument, exp, sum·e, the new sum registered, the 2F+1-bit reciprocal,
    output register)."""
    return LOOP_STAGES + 2 * cfg.formats.fm.frac + 4


class OnlineSoftmax(wiring.Component):
    """Scores {score, row, first, last} in; {recip, max, row} out at each row's last score."""

    def __init__(self, cfg: AcceleratorConfig, rows: int | None = None, full_rate: bool = True):
        require_fm(cfg, "online softmax", owner=self)
        self.cfg = cfg
        self.rows = rows or default_rows(cfg)
        if full_rate and self.rows < MIN_INTERLEAVE:
            silence(self)
            raise ConfigError(
                f"config {cfg.name!r}: the online softmax loop needs >= {MIN_INTERLEAVE} "
                f"interleaved rows for one score per cycle, got {self.rows} (attn_parallel "
                f"{cfg.attn_parallel} x head lanes {cfg.head_lanes}); interleave more rows, "
                f"or pass full_rate=False to accept {self.rows}/{MIN_INTERLEAVE} scores/cycle")
        self.row_bits = max(1, (self.rows - 1).bit_length())
        fm = signed(cfg.formats.fm.width)
        self.in_layout = data.StructLayout({"score": fm, "row": unsigned(self.row_bits),
                                            "first": 1, "last": 1})
        self.out_layout = data.StructLayout({"recip": fm, "max": fm,
                                             "row": unsigned(self.row_bits)})
        super().__init__(stream_signature(self.in_layout, self.out_layout))

    @property
    def latency(self) -> int:
        """Cycles from a row's last score to its result (:func:`softmax_latency`)."""
        return softmax_latency(self.cfg)

    def elaborate(self, platform):
        m = Module()
        w, frac = self.cfg.formats.fm.width, self.cfg.formats.fm.frac
        one = 1 << frac
        fm_min = -(1 << (w - 1))
        allow = Signal(name="no_hazard")
        pipe = StallPipeline(m, self.i, self.o, input_allow=allow)
        inp = self.i.payload
        depth = 1 << self.row_bits
        m.submodules.max_state = max_mem = memory.Memory(shape=w, depth=depth, init=[])
        m.submodules.sum_state = sum_mem = memory.Memory(shape=w, depth=depth, init=[])
        max_rd, max_wr = max_mem.read_port(domain="comb"), max_mem.write_port()
        sum_rd, sum_wr = sum_mem.read_port(domain="comb"), sum_mem.write_port()

        # ---- stage 1: registered input; max loop (read, compare, write in one stage)
        pipe.carry("s", inp.score)
        pipe.carry("row", inp.row)
        pipe.carry("first", inp.first)
        pipe.carry("last", inp.last)
        pipe.next()
        s, row, first = pipe["s"], pipe["row"], pipe["first"]
        m.d.comb += max_rd.addr.eq(row)
        bias = Mux(first, fm_min, max_rd.data.as_signed())
        d = bias - s                                   # exact 33-bit difference
        new_max = d < 0
        new_bias = Mux(new_max, s, bias)
        m.d.comb += [max_wr.addr.eq(row), max_wr.data.eq(new_bias),
                     max_wr.en.eq(pipe.valid & pipe.advance)]
        dr = pipe.reg(d, "d")
        pipe.drop("s")
        pipe.carry("new_max", new_max)
        pipe.carry("max", new_bias)
        pipe.next()
        # ---- stage 2: exp argument wrap32(-|d|)
        arg = pipe.reg(Mux(pipe["new_max"], dr, -dr)[:w].as_signed(), "arg")
        pipe.next()
        # ---- stages 3 .. 2+EXP_STAGES: exp
        e = exp_stages(pipe, arg)
        # ---- stage SUM_READ_STAGE: sum read (or forwarded), registered with e
        assert pipe.stage == SUM_READ_STAGE
        fwd_hit = Signal(name="fwd_hit")
        fwd_data = Signal(w, name="fwd_data")
        m.d.comb += sum_rd.addr.eq(pipe["row"])
        total = Mux(pipe["first"], 0, Mux(fwd_hit, fwd_data, sum_rd.data).as_signed())
        read_row, read_valid = pipe["row"], pipe.valid
        tr = pipe.reg(total, "total", shape=signed(w))
        er = pipe.reg(e, "e", shape=unsigned(w - 1))
        pipe.next()
        # ---- SUM_READ_STAGE + 1: sum·e (registered inputs and product)
        prod = pipe.reg(tr * er, "prod")
        pipe.carry("total", tr)
        pipe.carry("e", er)
        pipe.next()
        # ---- LOOP_STAGES: new sum, written back (and forwarded to the reader)
        total, e = pipe["total"], pipe["e"]
        new_total = Mux(pipe["new_max"], ((prod >> frac) + one)[:w], (total + e)[:w]).as_signed()
        assert pipe.stage == LOOP_STAGES
        m.d.comb += [sum_wr.addr.eq(pipe["row"]), sum_wr.data.eq(new_total),
                     sum_wr.en.eq(pipe.valid & pipe.advance),
                     fwd_hit.eq(pipe.valid & (pipe["row"] == read_row) & read_valid),
                     fwd_data.eq(new_total)]
        # hazard: the row's previous score right ahead (stage 1) would reach the sum read
        # one stage before the write: hold this one back a cycle
        conflicts = [v & (r == inp.row) for stage, v, r in pipe.trace["row"]
                     if 1 <= stage <= MIN_INTERLEAVE - 1]
        assert len(conflicts) == MIN_INTERLEAVE - 1
        m.d.comb += allow.eq(inp.first | ~Cat(*conflicts).any())
        for n in ("total", "e", "new_max", "first"):
            pipe.drop(n)
        # ---- reciprocal of the running sum (only the last one leaves the unit), from a
        # register (its zero test and |sum| would otherwise follow the adders)
        nt = pipe.reg(new_total, "new_total")
        pipe.next()
        r = recip_stages(pipe, nt, frac, w)
        out = pipe.reg(Cat(r, pipe["max"], pipe["row"]), "out", shape=self.out_layout.size)
        last = pipe.reg(pipe["last"], "last_out")
        pipe.next()
        pipe.finish(out, valid=pipe.valid & last)
        assert pipe.latency == self.latency, (pipe.latency, self.latency)
        return m
