"""Patch embedding (spec §4.1) on the linear engine, bit-exact with
:func:`moevit.golden.patch_embed.patch_embed`:

  X0[t] = wrap32( B·2^(22-11) + Σ ⌊P·W / 2^2⌋ + Pos[t] ),  t = 1..T-1;   X0[0] = Pos[0]

The 16×16 stride-16 convolution is a linear layer over each patch's C·p·p = 768 pixels in
(c, ky, kx) order, so :class:`PatchEmbed` is the unified :class:`~moevit.hw.units.linear.Linear`
engine run in its ``pixel`` mode (uint8 ``pixel_t`` inputs, 32 per beat; ``wt_patch_embed``
weights; products floored to fm_t as ⌊P·W / 4⌋), whose ``add`` input is the pos_embed stream.
A small front adds the cls row: after each command the first pos_embed row (cls + pos[0])
goes straight to ``y`` as token 0, then the engine's rows 1..T-1 follow, each plus its
pos_embed row.  (The accelerator top has no PatchEmbed: it runs the patch stage on its one
linear engine with the engine's own ``cls`` mode and a zero x row; this wrapper is the
engine's pixel mode as a stand-alone unit, tested against the golden patch embedding.)

Ports as :class:`Linear`: ``wcmd``/``w``/``b`` (conv weights [D][C·p·p] and bias, as in
DRAM, bias format wt_bias), ``cmd`` (``tokens`` = patches; ``gelu``/``score``/``cls`` are
ignored, ``add`` and ``pixel`` are forced), ``x`` (patch rows, token = 1 + patch index),
``d`` (pos_embed rows 0..T-1), ``y``.  With ``keep`` the weights stay loaded for the next image
(``reload_one_time_weights``).  A command is taken once the previous image's last row has
left, so the cls row is always the first row of its image.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from moevit.config import AcceleratorConfig
from moevit.hw.units.linear import Linear, engine_signature
from moevit.hw.units.linear_schedule import geometry


class PatchEmbed(wiring.Component):
    """Patch rows (uint8 pixels) + pos_embed rows -> token rows (fm_t), cls row first."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.g = geometry(cfg)
        super().__init__(engine_signature(self.g))

    def elaborate(self, platform):
        m = Module()
        g = self.g
        eng = m.submodules.engine = Linear(self.cfg)
        for name in ("wcmd", "w", "b", "x"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(eng, name))
        row_beats = self.cfg.dim // g.feature_block
        cls_left = Signal(range(row_beats + 1), name="cls_left")
        pending = Signal(range(g.tokens + 1), name="pending_rows")  # engine rows still due
        beat = Signal(range(row_beats), name="out_beat")
        idle = (cls_left == 0) & (pending == 0)
        # command: forced modes; taken only when the previous image has fully left
        m.d.comb += [eng.cmd.payload.eq(self.cmd.payload), eng.cmd.payload.add.eq(1),
                     eng.cmd.payload.gelu.eq(0), eng.cmd.payload.score.eq(0),
                     eng.cmd.payload.pixel.eq(1), eng.cmd.payload.cls.eq(0),
                     eng.cmd.valid.eq(self.cmd.valid & idle),
                     self.cmd.ready.eq(eng.cmd.ready & idle)]
        take = self.cmd.valid & self.cmd.ready
        in_cls = cls_left != 0
        # cls row: pos_embed row 0 straight to y (token 0); then the engine's rows
        m.d.comb += [eng.d.payload.eq(self.d.payload),
                     eng.d.valid.eq(self.d.valid & ~in_cls),
                     self.d.ready.eq(Mux(in_cls, self.y.ready, eng.d.ready)),
                     self.y.valid.eq(Mux(in_cls, self.d.valid, eng.y.valid)),
                     self.y.payload.data.eq(Mux(in_cls, self.d.payload, eng.y.payload.data)),
                     self.y.payload.token.eq(Mux(in_cls, 0, eng.y.payload.token)),
                     eng.y.ready.eq(self.y.ready & ~in_cls)]
        eng_out = eng.y.valid & eng.y.ready
        with m.If(take):
            m.d.sync += [cls_left.eq(row_beats), pending.eq(self.cmd.payload.tokens)]
        with m.Elif(in_cls & self.d.valid & self.y.ready):
            m.d.sync += cls_left.eq(cls_left - 1)
        with m.If(eng_out):
            m.d.sync += beat.eq(Mux(beat == row_beats - 1, 0, beat + 1))
            with m.If(beat == row_beats - 1):
                m.d.sync += pending.eq(pending - 1)
        return m
