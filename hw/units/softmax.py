"""``OnlineSoftmax``: the single-pass softmax statistics of spec §4.5.3 for interleaved rows.

Input items carry a score, a row id and first/last flags; the unit keeps (sum, max) per row
in a small state memory and, at each row's last score, emits ``(hls_recip(sum), max, row)``.

The loop-carried dependency (read state -> exp -> multiply/add -> write state) is
``LOOP_STAGES`` = 9 stages deep; a write-forwarding path from the write stage to the read
stage shortens the distance two items of the same row must keep to
``MIN_INTERLEAVE`` = 8 items.  Interleaving R >= 8 independent rows (the attention unit has
P x head lanes = 4 x 4 = 16) runs at one score per cycle.  Fewer rows still give exact
results: a hazard check holds the input (inserting bubbles) while the row's previous score is
in the loop, so the rate drops to R/8.  Constructing the unit for fewer rows raises
:class:`ConfigError` unless ``full_rate=False`` acknowledges the slowdown.
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

#: stages from the state read (stage 1) to the state write
LOOP_STAGES = EXP_STAGES + 2
#: minimum same-row distance (items) for one score per cycle (write forwarding saves one)
MIN_INTERLEAVE = LOOP_STAGES - 1


def default_rows(cfg: AcceleratorConfig) -> int:
    """Rows interleaved by the attention unit: P query lanes x head lanes."""
    return cfg.attn_parallel * cfg.head_lanes


def softmax_latency(cfg: AcceleratorConfig) -> int:
    """OnlineSoftmax latency: cycles from a row's last score to its result (the state loop,
    the 2F+1-bit reciprocal, input and output registers)."""
    return LOOP_STAGES + 2 * cfg.formats.fm.frac + 3


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

        state = memory.Memory(shape=2 * w, depth=1 << self.row_bits, init=[])
        m.submodules.state = state
        rd = state.read_port(domain="comb")
        wr = state.write_port()

        # ---- stage 1: registered input, state read (or forwarded), exp argument
        pipe.carry("s", inp.score)
        pipe.carry("row", inp.row)
        pipe.carry("first", inp.first)
        pipe.carry("last", inp.last)
        pipe.next()
        s, row, first = pipe["s"], pipe["row"], pipe["first"]
        pipe.drop("first")
        fwd_hit = Signal(name="fwd_hit")
        fwd_data = Signal(2 * w, name="fwd_data")
        m.d.comb += rd.addr.eq(row)
        stored = Mux(fwd_hit, fwd_data, rd.data)
        total = Mux(first, 0, stored[:w].as_signed())
        bias = Mux(first, fm_min, stored[w:].as_signed())
        d = bias - s                                   # exact 33-bit difference
        new_max = d < 0
        arg = Mux(new_max, d, -d)[:w].as_signed()      # wrap32
        pipe.carry("total", total)
        pipe.carry("bias", bias)
        pipe.carry("new_max", new_max)
        e = exp_stages(pipe, arg)
        # (stages 2..1+EXP_STAGES are the exp pipeline)
        # ---- stage 1+EXP_STAGES: sum * e
        prod = pipe.reg(pipe["total"] * e, "prod")
        pipe.carry("e", e)
        pipe.next()
        # ---- stage LOOP_STAGES: new state, written back
        total, e = pipe["total"], pipe["e"]
        new_total = Mux(pipe["new_max"], ((prod >> frac) + one)[:w], (total + e)[:w]).as_signed()
        new_bias = Mux(pipe["new_max"], pipe["s"], pipe["bias"])
        assert pipe.stage == LOOP_STAGES
        m.d.comb += [wr.addr.eq(pipe["row"]), wr.data.eq(Cat(new_total, new_bias)),
                     wr.en.eq(pipe.valid & pipe.advance)]
        # write forwarding: the item being written feeds the item reading the same row
        m.d.comb += [fwd_hit.eq(pipe.valid & (pipe["row"] == row)),
                     fwd_data.eq(Cat(new_total, new_bias))]
        # hazard: a same-row item in stages 1..LOOP_STAGES-1 (not yet written, not
        # forwardable when this item reaches stage 1) holds the input back
        conflicts = [v & (r == inp.row) for stage, v, r in pipe.trace["row"]
                     if 1 <= stage <= LOOP_STAGES - 2]
        assert len(conflicts) == LOOP_STAGES - 2
        m.d.comb += allow.eq(inp.first | ~Cat(*conflicts).any())
        pipe.drop("total")
        pipe.drop("e")
        pipe.drop("new_max")
        pipe.drop("s")
        pipe.carry("max", new_bias)
        # ---- reciprocal of the running sum (only the last one leaves the unit)
        r = recip_stages(pipe, new_total, frac, w)
        out = pipe.reg(Cat(r, pipe["max"], pipe["row"]), "out", shape=self.out_layout.size)
        last = pipe.reg(pipe["last"], "last_out")
        pipe.next()
        pipe.finish(out, valid=pipe.valid & last)
        assert pipe.latency == self.latency, (pipe.latency, self.latency)
        return m
