"""Host side of the linear-engine testbenches: passes (one linear layer over a list of rows),
the stream items that feed :class:`moevit.hw.units.linear.Linear`, and a memory model that
plays DRAM (gather reads, scatter writes, read-modify-write accumulate) with the
read-after-write ordering an accelerator top must keep.

Pure Python (no simulator): the cocotb testbenches drive these items through their ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Shape

from moevit.config import AcceleratorConfig
from moevit.golden import linear as gl
from moevit.golden.kernels import GeluSpec, gelu
from moevit.golden.moe import Routing, combine
from moevit.hw.units.linear import layouts
from moevit.hw.units.linear_schedule import WEIGHT_BITS, LinearGeometry


def pack(values, width: int) -> int:
    """Little-endian pack of integers (two's complement, ``width`` bits each)."""
    mask = (1 << width) - 1
    out = 0
    for j, v in enumerate(values):
        out |= (int(v) & mask) << (width * j)
    return out


def unpack(word: int, width: int, count: int, signed: bool = True) -> np.ndarray:
    mask = (1 << width) - 1
    vals = np.array([(word >> (width * j)) & mask for j in range(count)], dtype=np.int64)
    if signed:
        vals = np.where(vals >= 1 << (width - 1), vals - (1 << width), vals)
    return vals


class Fields:
    """Pack/unpack a stream payload by its StructLayout."""

    def __init__(self, layout):
        self.f = {n: (f.offset, Shape.cast(f.shape).width) for n, f in layout}

    def pack(self, **vals) -> int:
        out = 0
        for n, v in vals.items():
            off, w = self.f[n]
            out |= (int(v) & ((1 << w) - 1)) << off
        return out

    def get(self, word: int, name: str) -> int:
        off, w = self.f[name]
        return (word >> off) & ((1 << w) - 1)


@dataclass
class Pass:
    """One compute pass: ``w`` [out][in] raw, ``b`` [out] raw (``attn_bias``: F9 else F11);
    rows ``rows`` of buffer ``src`` in, rows written at the same token ids of ``dst``;
    ``gelu``, ``score`` (×``scores``[i] per row), ``add`` (+ the dst row: accumulate)."""

    name: str
    bank: int
    w: np.ndarray
    b: np.ndarray
    src: str
    rows: list
    dst: str
    attn_bias: bool = False
    gelu: bool = False
    score: bool = False
    add: bool = False
    scores: list | None = None
    keep: bool = False
    load: bool = True  # stream this pass's weights (False: reuse a kept bank)
    cls: bool = False  # patch embedding: the dst row 0 (pos_embed[0]) passes first as token 0
    pixel: bool = False  # uint8 pixel rows (the engine's pixel mode: the patch embedding)
    cls_row: bool = False  # the engine's cls mode: the pass's first row gets no bias

    @property
    def n_in(self) -> int:
        return self.w.shape[1]

    @property
    def n_out(self) -> int:
        return self.w.shape[0]


@dataclass
class Memory:
    """DRAM model: named [rows][cols] int64 buffers, with per-row pending writers."""

    bufs: dict
    writers: dict = field(default_factory=dict)  # (buf, row) -> set of pass ids writing it

    def available(self, buf: str, row: int, pass_id: int) -> bool:
        """Every earlier pass that writes (buf, row) has written it."""
        return all(q >= pass_id for q in self.writers.get((buf, row), ()))


class Program:
    """The stream items of a sequence of passes, and the memory model they run against.

    ``x``/``d`` items are callables returning the beat, or None while the row still has a
    pending write from an earlier pass (a real top waits for the write response).
    """

    def __init__(self, cfg: AcceleratorConfig, g: LinearGeometry, passes: list[Pass],
                 memory: dict):
        self.cfg, self.g, self.passes = cfg, g, passes
        lay = layouts(g)
        self.fx, self.fy = Fields(lay["x"]), Fields(lay["y"])
        self.fcmd, self.fwcmd = Fields(lay["cmd"]), Fields(lay["wcmd"])
        self.mem = Memory({k: np.array(v, dtype=np.int64) for k, v in memory.items()})
        fb = cfg.feature_block
        self.fb = fb
        for p, ps in enumerate(passes):
            g.check_shape(ps.n_in, ps.n_out, len(ps.rows))
            for r in list(ps.rows) + ([0] if ps.cls else []):
                self.mem.writers.setdefault((ps.dst, int(r)), set()).add(p)
        self.wcmd, self.w, self.b, self.cmd, self.x, self.d = [], [], [], [], [], []
        self.y_expected = []  # (pass, row index, beat)
        wpb = g.w_per_beat
        for p, ps in enumerate(passes):
            it, ot = ps.n_in // g.tile_in, ps.n_out // g.tile_out
            if ps.load:
                self.wcmd.append(self.fwcmd.pack(bank=ps.bank, in_tiles=it, out_tiles=ot,
                                                 attn_bias=int(ps.attn_bias)))
                flat = np.asarray(ps.w, dtype=np.int64).reshape(-1, wpb)
                self.w += [pack(r, WEIGHT_BITS) for r in flat]
                self.b += [pack(r, WEIGHT_BITS) for r in np.asarray(ps.b).reshape(-1, wpb)]
            self.cmd.append(self.fcmd.pack(bank=ps.bank, in_tiles=it, out_tiles=ot,
                                           tokens=len(ps.rows), gelu=int(ps.gelu),
                                           score=int(ps.score), add=int(ps.add),
                                           keep=int(ps.keep), pixel=int(ps.pixel),
                                           cls=int(ps.cls_row)))
            nb_in = g.in_beats(ps.n_in, ps.pixel)
            if ps.cls:
                for k in range(ps.n_out // fb):
                    self.y_expected.append((p, -1, k))
                    self.d.append(self._d_item(p, 0, k))
            for i, r in enumerate(ps.rows):
                sc = int(ps.scores[i]) if ps.scores is not None else 0
                for k in range(nb_in):
                    self.x.append(self._x_item(p, int(r), k, sc))
                for k in range(ps.n_out // fb):
                    self.y_expected.append((p, i, k))
                    if ps.add:
                        self.d.append(self._d_item(p, int(r), k))
        self.y_done = 0
        self.rows_written = [0] * len(passes)
        self._row_beats = {}

    # ------------------------------------------------------------ lazy items
    def _x_item(self, p, r, k, sc):
        ps = self.passes[p]
        xpb, xw = ((self.g.pixel_per_beat, self.g.pixel_bits) if ps.pixel else
                   (self.g.x_per_beat, self.g.fmt.x_width))

        def item():
            if not self.mem.available(ps.src, r, p):
                return None
            vals = self.mem.bufs[ps.src][r, k * xpb:(k + 1) * xpb]
            return self.fx.pack(data=pack(vals, xw), token=r, score=sc)
        return item

    def _d_item(self, p, r, k):
        ps, fb = self.passes[p], self.fb

        def item():
            if not self.mem.available(ps.dst, r, p):
                return None
            return pack(self.mem.bufs[ps.dst][r, k * fb:(k + 1) * fb], 32)
        return item

    # ------------------------------------------------------------ outputs
    def take_y(self, word: int) -> str | None:
        """Store one output beat at its token (scatter); returns an error text if the beat
        is extra or carries the wrong token id."""
        if self.y_done >= len(self.y_expected):
            return f"extra output beat {word:#x}"
        p, i, k = self.y_expected[self.y_done]
        ps = self.passes[p]
        tok = self.fy.get(word, "token")
        want = int(ps.rows[i]) if i >= 0 else 0
        self.y_done += 1
        vals = unpack(self.fy.get(word, "data"), 32, self.fb)
        self.mem.bufs[ps.dst][tok if tok < len(self.mem.bufs[ps.dst]) else want,
                              k * self.fb:(k + 1) * self.fb] = vals
        if k == ps.n_out // self.fb - 1:
            self.mem.writers[(ps.dst, want)].discard(p)
        if tok != want:
            return f"pass {ps.name} row {i}: token id {tok}, expected {want}"
        return None

    def pass_of_beat(self, n: int) -> int:
        return self.y_expected[n][0]


# ---------------------------------------------------------------------------- golden
def golden_pass(cfg: AcceleratorConfig, ps: Pass, mem: dict, *, w_frac: int) -> np.ndarray:
    """The golden result of one pass on the memory state ``mem`` (updated in place)."""
    f = cfg.formats
    bias_frac = f.wt_attn_bias.frac if ps.attn_bias else f.wt_bias.frac
    spec = GeluSpec.from_config(cfg)
    x = mem[ps.src][np.asarray(ps.rows, dtype=np.int64)]
    y = gl.linear_ref(x, ps.w, ps.b, w_frac=w_frac, bias_frac=bias_frac,
                      gelu=(lambda v: gelu(v, spec)) if ps.gelu else None)
    if ps.score:
        y = combine(y, np.asarray(ps.scores, dtype=np.int64))
    for i, r in enumerate(ps.rows):
        mem[ps.dst][r] = (mem[ps.dst][r] + y[i] + (1 << 31)) % (1 << 32) - (1 << 31) \
            if ps.add else y[i]
    return y


def expert_passes(rt: Routing, w1, b1, w2, b2, *, src="x", hidden="hidden", dst="out"):
    """Expert FC1 (+GELU, gather, scatter into ``hidden``) and FC2 (gather from ``hidden``,
    ×gate probability, accumulate into ``dst``) for every expert of the metaqueue, FC1 in
    the ping bank and FC2 in the pong bank (spec §4.6.7)."""
    passes = []
    for e in rt.metaqueue:
        rows = [int(t) for t in rt.queues[e]]
        passes.append(Pass(f"expert{e}.fc1", 0, w1[e], b1[e], src, rows, hidden, gelu=True))
        passes.append(Pass(f"expert{e}.fc2", 1, w2[e], b2[e], hidden, rows, dst, score=True,
                           add=True, scores=[int(s) for s in rt.queue_probs[e]]))
    return passes
