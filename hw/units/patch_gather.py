"""Patch gather (im2col) in front of the patch embedding (spec §4.1, §7).

The image lies in DRAM as uint8 ``[C][H][W]`` row-major, so a patch is not contiguous.  The
reader fetches, per patch row (strip) ``py`` and channel ``c``, the ``p`` image rows
``py·p .. py·p+p-1`` of that channel: the input stream ``pix`` carries, per strip, beats in
``(c, ky, x-beat)`` order, ``C·p·W/B`` beats (``B`` pixels per beat, pixel ``j`` at bits
``8j``).  :class:`PatchGather` buffers a strip and emits the patch rows the linear engine's
``x`` stream takes in :func:`moevit.sim.tb_patch_embed.image_pass`: first one all-zero row
(token 0, the cls slot), then each patch ``(py, px)`` in row-major order as ``C·p·p/B``
beats in ``(c, ky, kx)`` order — the rows of :func:`moevit.golden.patch_embed.patches`.

Buffering: two strip halves (ping/pong) so that strip ``py+1`` is received while strip ``py``
is emitted.  A beat holds ``r = B/p`` patch rows of ``p`` pixels (``p <= B``) or ``1/q`` of one
(``p = q·B``); the strip sits in ``r`` banks, bank ``ky mod r``, each word one input beat.  An
input beat is one write to one bank; an output beat (``r`` consecutive ``ky`` of one patch and
channel) is one read per bank plus an ``r``-way segment select.  Every bank is an
:class:`amaranth.lib.memory.Memory` (block RAM) with one write and one read port.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.common import silence

#: cycles from a read issued to its beat on ``rows`` (bank read register, output register)
READ_LATENCY = 2


@dataclass(frozen=True)
class GatherGeometry:
    """Sizes of the patch gather, all derived from an :class:`AcceleratorConfig`."""

    channels: int        # C
    patch: int           # p
    grid_h: int          # strips per image (H / p)
    grid_w: int          # patches per strip (W / p)
    pixel_bits: int      # bits per pixel (8)
    beat_pixels: int     # B: pixels per AXI beat
    row_beats: int       # W / B: beats per image row
    rows_per_beat: int   # r: patch rows (ky) per output beat = banks (1 when p >= B)
    beats_per_row: int   # q: beats per patch row (1 when p <= B)

    @property
    def banks(self) -> int:
        return self.rows_per_beat

    @property
    def groups(self) -> int:
        """Output-beat row groups per strip: (c, ky // r) pairs, C·p/r."""
        return self.channels * self.patch // self.rows_per_beat

    @property
    def half_depth(self) -> int:
        """Words per bank for one strip (one ping/pong half)."""
        return self.groups * self.row_beats

    @property
    def strip_beats(self) -> int:
        """Input beats per strip: C·p·W/B."""
        return self.channels * self.patch * self.row_beats

    @property
    def patch_beats(self) -> int:
        """Output beats per patch row (and of the zero cls row): C·p·p/B."""
        return self.channels * self.patch * self.patch // self.beat_pixels

    @property
    def segment_bits(self) -> int:
        """Bits of one bank's share of an output beat."""
        return self.patch * self.pixel_bits if self.rows_per_beat > 1 else \
            self.beat_pixels * self.pixel_bits

    @property
    def input_beats(self) -> int:
        """``pix`` beats per image."""
        return self.grid_h * self.strip_beats

    @property
    def output_beats(self) -> int:
        """``rows`` beats per image with the zero row: one row per token."""
        return (1 + self.grid_h * self.grid_w) * self.patch_beats


def gather_geometry(cfg: AcceleratorConfig) -> GatherGeometry:
    """The gather's geometry; :class:`ConfigError` for image/patch/beat shapes it cannot cut."""
    A, pb = cfg.axi_width, cfg.formats.pixel.width
    C, H, W, p = cfg.image_channels, cfg.image_height, cfg.image_width, cfg.patch_size

    def need(cond, msg):
        if not cond:
            raise ConfigError(f"config {cfg.name!r}: patch gather: {msg}")

    need(A % pb == 0, f"axi_width {A} is not a whole number of {pb}-bit pixels; use an "
                      f"axi_width that is a multiple of {pb}")
    B = A // pb
    need(W % B == 0, f"image_width {W} is not a multiple of the {B} pixels per {A}-bit beat, "
                     f"so image rows do not start on a beat; use a width that is a multiple "
                     f"of {B} (e.g. {max(B, W // B * B)})")
    need(B % p == 0 or p % B == 0,
         f"patch_size {p} neither divides nor is a multiple of the {B} pixels per beat, so a "
         f"beat would hold part of a patch row; use a patch size that is a power of two "
         f"dividing or multiple of {B}")
    need((p * p) % B == 0,
         f"a patch channel of {p}x{p} = {p * p} pixels is not a whole number of {B}-pixel "
         f"beats, so an output beat would mix channels; use a patch size whose square is a "
         f"multiple of {B} (e.g. {p * B // math.gcd(p * p, B)})")
    r = B // p if p <= B else 1
    return GatherGeometry(channels=C, patch=p, grid_h=H // p, grid_w=W // p, pixel_bits=pb,
                          beat_pixels=B, row_beats=W // B, rows_per_beat=r,
                          beats_per_row=max(1, p // B))


def patch_gather_cycles(cfg: AcceleratorConfig, images: int = 1, *,
                        zero_row: bool = True) -> int:
    """Cycle model: cycles from the first ``pix`` beat to the last ``rows`` beat (inclusive)
    for ``images`` back-to-back images, input always valid and output always ready.

    A strip half becomes readable the cycle after its last beat is written and writable the
    cycle after its last read is issued; the zero row (``zero_row``) starts the cycle after
    the image's first beat is taken.  The reader issues one read per cycle; a beat leaves
    ``READ_LATENCY`` cycles after its read.
    """
    g = gather_geometry(cfg)
    S, R = g.strip_beats, (g.patch_beats if zero_row else 0)
    writable = [0, 0]      # cycle each half may be written again
    t_w = t_r = 0          # next free cycle of the writer / the reader
    half = 0
    for _ in range(images):
        for s in range(g.grid_h):
            w_start = max(t_w, writable[half])
            t_w = w_start + S                   # strip readable from here
            if s == 0 and R:                    # zero row once the image has begun
                t_r = max(t_r, w_start + 1) + R
            t_r = max(t_r, t_w) + S             # S reads, one per cycle
            writable[half] = t_r
            half ^= 1
    return t_r + READ_LATENCY              # last read at t_r - 1; count both ends


class PatchGather(wiring.Component):
    """``pix`` (image strips, (c, ky, x-beat) order) -> ``rows`` (zero row, then patch rows).

    Ports: ``pix`` In(stream of ``axi_width`` bits), ``rows`` Out(stream of ``axi_width``
    bits).  Images follow each other with no command; an image's zero row is sent once its
    first ``pix`` beat has been taken, so nothing leaves while no image is coming.  With
    ``zero_row=False`` only the patch rows leave (the linear engine's ``x`` stream takes
    tokens 1..T-1 only: a top that keeps the zero row drops it).
    """

    #: the default: every image starts with the all-zero (cls slot) row
    LEADING_ZERO_ROW = True

    def __init__(self, cfg: AcceleratorConfig, *, zero_row: bool = LEADING_ZERO_ROW):
        self.cfg = cfg
        try:
            self.geom = gather_geometry(cfg)
        except ConfigError:
            silence(self)
            raise
        self.zero_row = bool(zero_row)
        super().__init__({"pix": In(stream.Signature(cfg.axi_width)),
                          "rows": Out(stream.Signature(cfg.axi_width))})

    def elaborate(self, platform):
        m = Module()
        g = self.geom
        A, D, WB, r, q = self.cfg.axi_width, g.half_depth, g.row_beats, g.banks, g.beats_per_row
        addr_shape = range(2 * D)

        ports = []
        for b in range(r):
            mem = memory.Memory(shape=unsigned(A), depth=2 * D, init=[])
            m.submodules[f"strip_bank{b}"] = mem
            ports.append((mem.write_port(), mem.read_port()))

        # Half flags, kept relative to the reader: "cur" is the half it reads now, "nxt" the
        # other one.  used: a strip has begun arriving; full: the strip is complete.  The
        # writer is in "cur" or (w_ahead) in "nxt".  No mux by half index on the issue path.
        cur_used, cur_full = Signal(name="cur_used"), Signal(name="cur_full")
        nxt_used, nxt_full = Signal(name="nxt_used"), Signal(name="nxt_full")
        w_ahead = Signal(name="w_ahead")

        # ----------------------------------------------------------- writer (pix -> banks)
        # the writer waits only in "cur": once ahead, "nxt" is the half it is filling, and
        # when that completes it moves on to "cur" (w_ahead drops), so nxt_full => ~w_ahead
        m.d.comb += self.pix.ready.eq(~(cur_full & ~w_ahead))
        take = Signal()
        m.d.comb += take.eq(self.pix.valid & self.pix.ready)
        wh = Signal(name="w_half")
        xb, xb_last = _counter(m, WB, take, "w_xbeat")
        w_bank, bank_last = _counter(m, r, take & xb_last, "w_bank")
        _, wgroup_last = _counter(m, g.groups, take & xb_last & bank_last, "w_group")
        _, w_last = _counter(m, g.strip_beats, take, "w_strip_beat")
        w_row = Signal(addr_shape, name="w_row_addr")   # first word of the row group
        w_addr = Signal(addr_shape, name="w_addr")
        for b, (wp, _) in enumerate(ports):
            m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(self.pix.payload),
                         wp.en.eq(take & (w_bank == b))]
        with m.If(take):
            with m.If(~xb_last):
                m.d.sync += w_addr.eq(w_addr + 1)
            with m.Elif(~bank_last):            # same words, next bank (ky + 1)
                m.d.sync += w_addr.eq(w_row)
            with m.Elif(~wgroup_last):          # next row group
                m.d.sync += [w_row.eq(w_row + WB), w_addr.eq(w_row + WB)]
            with m.Else():                      # strip complete: the other half next
                m.d.sync += [wh.eq(~wh), w_row.eq(_other_base(wh, D)),
                             w_addr.eq(_other_base(wh, D))]

        # ----------------------------------------------------------- reader (banks -> rows)
        rh = Signal(name="r_half")
        in_zero = Signal(init=int(self.zero_row), name="zero_row")  # emitting the zero row
        v1 = Signal(name="read_valid")      # a read (or zero beat) is in the bank registers
        j1 = Signal(range(r), name="read_segment")
        zero1 = Signal(name="read_zero")
        out_free = ~self.rows.valid | self.rows.ready
        s1_free = ~v1 | out_free
        issue, issue_px, release = Signal(), Signal(), Signal()
        m.d.comb += [issue.eq(Mux(in_zero, cur_used, cur_full) & s1_free),
                     issue_px.eq(issue & ~in_zero)]
        _, zero_last = _counter(m, g.patch_beats, issue & in_zero, "zero_beat")
        _, r_last = _counter(m, g.strip_beats, issue_px, "r_strip_beat")
        _, kb_last = _counter(m, q, issue_px, "r_kbeat")
        _, rgroup_last = _counter(m, g.groups, issue_px & kb_last, "r_group")
        patch_end = issue_px & kb_last & rgroup_last
        r_j, j_last = _counter(m, r, patch_end, "r_segment")
        _, px_last = _counter(m, g.grid_w, patch_end, "r_px")
        _, strip_last = _counter(m, g.grid_h, patch_end & px_last, "r_strip")
        m.d.comb += release.eq(issue_px & r_last)
        r_patch = Signal(addr_shape, name="r_patch_addr")  # first word of the patch
        r_row = Signal(addr_shape, name="r_row_addr")      # first word of the row group
        r_addr = Signal(addr_shape, name="r_addr")
        for _, rp in ports:
            m.d.comb += [rp.addr.eq(r_addr), rp.en.eq(s1_free)]
        with m.If(issue_px):
            with m.If(~kb_last):
                m.d.sync += r_addr.eq(r_addr + 1)
            with m.Elif(~rgroup_last):
                m.d.sync += [r_row.eq(r_row + WB), r_addr.eq(r_row + WB)]
            with m.Elif(~px_last & ~j_last):    # next patch: next segment of the same words
                m.d.sync += [r_row.eq(r_patch), r_addr.eq(r_patch)]
            with m.Elif(~px_last):              # next patch: the next words
                m.d.sync += [r_patch.eq(r_patch + q), r_row.eq(r_patch + q),
                             r_addr.eq(r_patch + q)]
            with m.Else():                      # strip complete: the other half next
                base = _other_base(rh, D)
                m.d.sync += [rh.eq(~rh), r_patch.eq(base), r_row.eq(base), r_addr.eq(base)]
        with m.If(issue & in_zero & zero_last):
            m.d.sync += in_zero.eq(0)
        if self.zero_row:
            with m.If(release & strip_last):    # image complete: the next image's zero row
                m.d.sync += in_zero.eq(1)

        with m.If(s1_free):
            m.d.sync += [v1.eq(issue), j1.eq(r_j), zero1.eq(in_zero)]
        segs = [rp.data.word_select(j1, g.segment_bits) if r > 1 else rp.data
                for _, rp in ports]
        with m.If(out_free):
            m.d.sync += [self.rows.valid.eq(v1),
                         self.rows.payload.eq(Mux(zero1, 0, Cat(*segs)))]

        # ----------------------------------------------------------- half flags
        w_done = take & w_last                  # the writer completes its strip
        set_cur, set_nxt = take & ~w_ahead, take & w_ahead
        done_cur, done_nxt = w_done & ~w_ahead, w_done & w_ahead
        with m.If(release):   # "nxt" becomes "cur"; the released half (full, so the writer
            m.d.sync += [cur_used.eq(nxt_used | set_nxt),   # is not in it) becomes "nxt"
                         cur_full.eq(nxt_full | done_nxt),
                         nxt_used.eq(0), nxt_full.eq(0)]
        with m.Else():
            m.d.sync += [cur_used.eq(cur_used | set_cur), cur_full.eq(cur_full | done_cur),
                         nxt_used.eq(nxt_used | set_nxt), nxt_full.eq(nxt_full | done_nxt)]
        m.d.sync += w_ahead.eq(w_ahead ^ w_done ^ release)
        return m


def _other_base(half, depth: int):
    """First word of the half other than ``half`` (halves are ``depth`` words)."""
    return Mux(half, 0, depth)


def _counter(m: Module, n: int, step, name: str):
    """A 0..n-1 counter advancing (and wrapping) on ``step``; returns (value, last), where
    ``last`` is a register equal to ``value == n - 1``, so no comparator sits on the paths
    that ``last`` feeds."""
    value = Signal(range(n), name=name)
    last = Signal(init=int(n == 1), name=f"{name}_last")
    if n > 1:
        with m.If(step):
            m.d.sync += [value.eq(Mux(last, 0, value + 1)), last.eq(~last & (value == n - 2))]
    return value, last
