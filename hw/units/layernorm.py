"""``LayerNorm``: the LayerNorm of spec §4.2 on a stream of tokens, bit-exact with
:func:`moevit.golden.layernorm.layernorm`.

Ports (valid/ready streams):

* ``x``: token blocks, ``cfg.feature_block`` fm_t per beat, ``dim / feature_block`` beats per
  token, tokens in order.
* ``p``: the parameters of one LayerNorm call as 256-bit beats of int16 (``axi_width / 16``
  per beat, element 0 in the low bits): the ``dim`` gains (``norm_weights[l][n]``, wt_norm)
  then the ``dim`` biases (``norm_bias[l][n]``, wt_bias), the DRAM rows of spec §7.
* ``o``: normalised blocks, in the order of ``x``.

A call is one parameter set followed by ``tokens`` tokens (default ``cfg.tokens``).  The
gains/biases live in two banks: the next call's parameters load while the current call's
tokens are still normalised.

Dataflow (the spec's accumulate-then-output, overlapped across tokens):

1. *Statistics* (:class:`StallPipeline`): per block, ``t_d = floor(X_d·c)`` (c = fm_t(1/dim))
   and ``floor(X_d·t_d)``, summed by adder trees and accumulated over the token; at the
   token's last block ``sqm = floor(mean²)``, ``var = wrap32(meansq - sqm + eps)`` and the
   rstd ``r = wrap32(trunc0(2^44 / sqrt_rhu(var)))`` by the restoring square root and divider
   of :mod:`~moevit.hw.units.sqrt` / :mod:`~moevit.hw.units.divide` (r wraps for
   var <= 3.8e-6 exactly as in the spec).  ``(mean, r)`` per token go to a small FIFO.
2. *Token buffer*: every block also enters a block FIFO deep enough to cover the statistics
   latency, so token t+1 accumulates while token t is normalised.
3. *Normalise* (:class:`StallPipeline`): ``wrap32(X - mean)``, ``floor(·r)``,
   ``floor(·gain)``, ``+ bias`` (exact widening), one block per clock.

Every multiplier has registered inputs and a registered product; adder trees have at most
``TREE_LEVELS_PER_STAGE`` levels between registers.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.golden.layernorm import inv_dim_raw
from moevit.hw.units.common import silence
from moevit.hw.units.divide import recip_stages
from moevit.hw.units.pipeline import StallPipeline, adder_trees, tree_registers
from moevit.hw.units.reg_fifo import RegFlagFIFO
from moevit.hw.units.residual import block_shape, lane
from moevit.hw.units.sqrt import sqrt_geometry, sqrt_stages

#: adder levels between pipeline registers in the statistics sums (two levels measured
#: two LUT6 in front of the carry chain: abc merges them into a compressor)
TREE_LEVELS_PER_STAGE = 1
#: normalise pipeline: input register, X - mean, ·r, ·gain, +bias (output register)
NORM_STAGES = 5
#: cycles from the statistics pipeline's output to the normalise input: the stats FIFO
#: (a :class:`~moevit.hw.units.reg_fifo.RegFlagFIFO`, 2 when empty) and the two head
#: registers ``next``/``cur``
FIFO_LATENCY = 4


def _param_geometry(cfg: AcceleratorConfig) -> tuple[int, int]:
    """(int16 per parameter beat, feature blocks per parameter beat)."""
    per_beat = cfg.axi_width // cfg.formats.wt_norm.width
    return per_beat, per_beat // cfg.feature_block


def stats_latency(cfg: AcceleratorConfig) -> int:
    """Statistics pipeline: cycles from a token's last input block to its (mean, r)."""
    tree_regs = tree_registers(cfg.feature_block, TREE_LEVELS_PER_STAGE)
    rbits = sqrt_geometry(cfg.formats.fm.width, cfg.formats.fm.frac)[1]
    recip_bits = 2 * cfg.formats.fm.frac + 1
    # input register, X·c, X·t, tree registers, block sums, accumulate, mean², var,
    # square root (1 + root bits), divider (1 + numerator bits), output register
    return 3 + tree_regs + 1 + 3 + (1 + rbits) + (1 + recip_bits) + 1


def layernorm_latency(cfg: AcceleratorConfig) -> int:
    """Cycles from the handshake of a token's last input block to the handshake of its first
    output block, with unthrottled streams (statistics, the stats FIFO, normalise)."""
    return stats_latency(cfg) + FIFO_LATENCY + NORM_STAGES


def layernorm_cycles(cfg: AcceleratorConfig, tokens: int | None = None) -> dict:
    """Cycle model of one call with unthrottled streams (parameters offered with the first
    token): ``ideal`` = one block per clock, ``cycles`` = first input handshake to last
    output handshake."""
    tokens = cfg.tokens if tokens is None else tokens
    fb = cfg.feature_blocks
    blocks = tokens * fb
    cycles = (fb - 1) + layernorm_latency(cfg) + blocks if blocks else 0
    return {"tokens": tokens, "blocks": blocks, "ideal": blocks, "cycles": cycles,
            "latency": layernorm_latency(cfg)}


def block_fifo_depth(cfg: AcceleratorConfig) -> int:
    """Token-buffer blocks: the statistics latency plus two tokens (full rate)."""
    return layernorm_latency(cfg) + 2 * cfg.feature_blocks + 4


class LayerNorm(wiring.Component):
    """Token blocks ``x`` and parameter beats ``p`` in, normalised blocks ``o`` out."""

    def __init__(self, cfg: AcceleratorConfig, tokens: int | None = None):
        per_beat, bpb = _param_geometry(cfg)
        if cfg.axi_width % cfg.formats.wt_norm.width or bpb < 1 or \
                per_beat % cfg.feature_block or cfg.dim % per_beat:
            silence(self)
            raise ConfigError(
                f"config {cfg.name!r}: LayerNorm loads {per_beat} int16 parameters per "
                f"{cfg.axi_width}-bit beat; dim {cfg.dim} must be a multiple of it and it a "
                f"multiple of the {cfg.feature_block}-wide feature block")
        if cfg.formats.wt_norm.frac > cfg.formats.fm.frac or \
                cfg.formats.wt_bias.frac > cfg.formats.fm.frac:
            silence(self)
            raise ConfigError(f"config {cfg.name!r}: LayerNorm needs gain/bias fractions <= "
                              f"the fm_t fraction {cfg.formats.fm.frac}")
        self.cfg = cfg
        self.tokens = cfg.tokens if tokens is None else int(tokens)
        if self.tokens < 1:
            silence(self)
            raise ConfigError(f"LayerNorm: tokens per call must be >= 1 (got {tokens})")
        self.per_beat, self.blocks_per_beat = per_beat, bpb
        blk = block_shape(cfg)
        super().__init__({"x": In(stream.Signature(blk)),
                          "p": In(stream.Signature(cfg.axi_width)),
                          "o": Out(stream.Signature(blk))})

    @property
    def latency(self) -> int:
        """Cycles from a token's last input block to its first output block (unthrottled)."""
        return layernorm_latency(self.cfg)

    # ------------------------------------------------------------------ statistics
    def _stats(self, m, xs, st):
        cfg = self.cfg
        w, frac, n = cfg.formats.fm.width, cfg.formats.fm.frac, cfg.feature_block
        pipe = StallPipeline(m, xs, st, prefix="st_")
        nb = n * w
        pipe.carry("last", xs.payload[nb + 1])
        pipe.carry("first", xs.payload[nb])
        x = [pipe.reg(lane(xs.payload, j, w), f"x{j}") for j in range(n)]
        pipe.next()
        # X·c: registered input, registered product
        c = inv_dim_raw(cfg)
        tp = [pipe.reg(x[j] * c, f"tp{j}") for j in range(n)]
        for j in range(n):
            pipe.carry(f"x{j}", x[j])
        pipe.next()
        t = [(tp[j] >> frac)[:w].as_signed() for j in range(n)]
        sp = [pipe.reg((pipe[f"x{j}"] * t[j])[:w + frac], f"sq{j}") for j in range(n)]
        tr = [pipe.reg(t[j], f"t{j}") for j in range(n)]
        for j in range(n):
            pipe.drop(f"x{j}")
        pipe.next()
        sq = [(sp[j] >> frac)[:w] for j in range(n)]
        tsum = adder_trees(pipe, [tr, sq], w, "sum", TREE_LEVELS_PER_STAGE)
        # the block sums are registered before the accumulate (a 3-operand add measured
        # two LUT6 levels in front of the carry chain)
        tsum = [pipe.reg(t, f"bsum{k}", shape=w) for k, t in enumerate(tsum)]
        pipe.next()
        # accumulate over the token (state registers, updated as the item passes)
        acc_t = Signal(w, name="acc_mean")
        acc_q = Signal(w, name="acc_meansq")
        first = pipe["first"]
        new_t = (Mux(first, 0, acc_t) + tsum[0])[:w]
        new_q = (Mux(first, 0, acc_q) + tsum[1])[:w]
        with m.If(pipe.valid & pipe.advance):
            m.d.sync += [acc_t.eq(new_t), acc_q.eq(new_q)]
        pipe.drop("first")
        mean = pipe.reg(new_t.as_signed(), "mean")
        meansq = pipe.reg(new_q.as_signed(), "meansq")
        pipe.next()
        # mean² (registered input and product); mean and meansq travel along
        msq = pipe.reg((mean * mean)[:w + frac], "msq")
        pipe.carry("mean", mean)
        pipe.carry("meansq", meansq)
        pipe.next()
        var = (pipe["meansq"] - (msq >> frac)[:w] + cfg.layernorm_eps_raw)[:w].as_signed()
        pipe.drop("meansq")
        v = pipe.reg(var, "var")
        pipe.next()
        s = sqrt_stages(pipe, v, w, frac)
        r = recip_stages(pipe, s, frac, w)
        out = pipe.reg(Cat(pipe["mean"], r), "stats", shape=2 * w)
        pipe.next()
        pipe.finish(out, valid=pipe.valid & pipe["last"])
        assert pipe.latency == stats_latency(cfg), (pipe.latency, stats_latency(cfg))

    # ------------------------------------------------------------------ elaborate
    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        w, frac, n = cfg.formats.fm.width, cfg.formats.fm.frac, cfg.feature_block
        fb = cfg.feature_blocks
        gw, gfrac, bfrac = cfg.formats.wt_norm.width, cfg.formats.wt_norm.frac, \
            cfg.formats.wt_bias.frac
        blk = block_shape(cfg)

        # ---- fork: every input block goes to the token buffer and the statistics
        in_db = Signal(range(fb), name="in_db")
        xs = stream.Signature(blk.width + 2).create(path=("xs",))   # {x, first, last}
        st = stream.Signature(2 * w).create(path=("st",))
        # (FIFOs with flip-flop flags: buf.w_rdy gates x.ready and the statistics input, and a
        # level comparator there measured two LUT levels, over the timing budget)
        m.submodules.buf = buf = RegFlagFIFO(width=blk.width, depth=block_fifo_depth(cfg))
        m.submodules.sfifo = sfifo = RegFlagFIFO(
            width=2 * w, depth=block_fifo_depth(cfg) // fb + 2)
        m.d.comb += [
            self.x.ready.eq(buf.w_rdy & xs.ready),
            xs.valid.eq(self.x.valid & buf.w_rdy),
            xs.payload.eq(Cat(self.x.payload, in_db == 0, in_db == fb - 1)),
            buf.w_en.eq(self.x.valid & xs.ready),
            buf.w_data.eq(self.x.payload),
        ]
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += in_db.eq(Mux(in_db == fb - 1, 0, in_db + 1))
        self._stats(m, xs, st)
        # The statistics pipeline never stalls (no ready path from the stats FIFO through
        # it into ``x``): a token's (mean, r) is in the pipeline or the stats FIFO only
        # while all of its blocks are still in the token buffer (its output starts after
        # its stats leave the FIFO), so the FIFO holds at most depth(buf) // fb entries
        assert sfifo.depth > buf.depth // fb, (sfifo.depth, buf.depth, fb)
        m.d.comb += [sfifo.w_data.eq(st.payload), sfifo.w_en.eq(st.valid), st.ready.eq(1)]

        # ---- parameters: two banks of gain and bias rows (one row = one parameter beat)
        rows = cfg.dim // self.per_beat
        row_bits = max(1, (rows - 1).bit_length())
        gmem = memory.Memory(shape=cfg.axi_width, depth=2 << row_bits, init=[])
        bmem = memory.Memory(shape=cfg.axi_width, depth=2 << row_bits, init=[])
        m.submodules.gain_mem, m.submodules.bias_mem = gmem, bmem
        # banks loaded and not yet used up: registered flags "at least one" / "two"
        have, two = Signal(name="bank_ready"), Signal(name="banks_full")
        wbank, rbank = Signal(name="wbank"), Signal(name="rbank")
        pbeat, p_last, _ = _counter(m, 2 * rows, "pbeat")
        is_bias = Signal(name="p_is_bias")          # registered: pbeat >= rows
        prow = Signal(row_bits, name="prow")        # registered: pbeat mod rows
        pfire = self.p.valid & self.p.ready
        gwp, bwp = gmem.write_port(), bmem.write_port()
        m.d.comb += [self.p.ready.eq(~two),
                     gwp.addr.eq(Cat(prow, wbank)), gwp.data.eq(self.p.payload),
                     gwp.en.eq(pfire & ~is_bias),
                     bwp.addr.eq(Cat(prow, wbank)), bwp.data.eq(self.p.payload),
                     bwp.en.eq(pfire & is_bias)]
        inc = pfire & p_last
        with m.If(pfire):
            m.d.sync += [*pbeat.next_value, prow.eq(Mux(prow == rows - 1, 0, prow + 1)),
                         is_bias.eq(Mux(p_last, 0, Mux(prow == rows - 1, 1, is_bias)))]
            with m.If(p_last):
                m.d.sync += wbank.eq(~wbank)

        # ---- normalise
        ot = stream.Signature(blk).create(path=("ot",))
        # the token's (mean, r) come from registers: the FIFO refills ``next`` on its own
        # (registered condition) and ``next`` moves to ``cur`` when a token ends, so the
        # output handshake never reaches into the FIFO's read logic
        cur = Signal(2 * w, name="stats_cur")
        nxt_s = Signal(2 * w, name="stats_next")
        cur_valid, nxt_valid = Signal(name="stats_cur_valid"), Signal(name="stats_next_valid")
        allow = cur_valid & have
        m.d.comb += [ot.valid.eq(buf.r_rdy), ot.payload.eq(buf.r_data)]
        pipe = StallPipeline(m, ot, self.o, input_allow=allow, prefix="nm_")
        m.d.comb += buf.r_en.eq(ot.ready)
        ofire = ot.valid & ot.ready
        out_db, last_blk, db_pre = _counter(m, fb, "out_db")
        tok, tok_last, tok_pre = _counter(m, self.tokens, "out_tok")
        at_end = Signal(name="call_end", init=fb * self.tokens == 1)  # last block of a call
        consume = ofire & last_blk
        move = (consume | ~cur_valid) & nxt_valid
        m.d.comb += sfifo.r_en.eq(~nxt_valid)
        with m.If(sfifo.r_rdy & ~nxt_valid):
            m.d.sync += nxt_s.eq(sfifo.r_data)
        with m.If(move):
            m.d.sync += cur.eq(nxt_s)
        # the valid flags as plain next-state expressions (the handshake enters one LUT in
        # front of D; as if/else updates they became a synchronous reset, 404 ps setup)
        m.d.sync += [nxt_valid.eq(Mux(nxt_valid, ~move, sfifo.r_rdy)),
                     cur_valid.eq(nxt_valid | (cur_valid & ~consume))]
        dec = ofire & at_end
        with m.If(ofire):
            m.d.sync += out_db.next_value
            with m.If(last_blk):
                m.d.sync += tok.next_value
            # the next block ends the call: last block of the last token
            m.d.sync += at_end.eq(Mux(last_blk, int(fb == 1) & (tok_pre if self.tokens > 1
                                                                else 1),
                                      (db_pre if fb > 1 else 1) & tok_last))
            with m.If(at_end):
                m.d.sync += rbank.eq(~rbank)
        up, down = inc & ~dec, dec & ~inc
        m.d.sync += [have.eq(Mux(up, 1, Mux(down, two, have))),
                     two.eq(Mux(up, have, Mux(down, 0, two)))]

        bpb = self.blocks_per_beat
        sel_bits = (bpb - 1).bit_length()
        grp, brp = gmem.read_port(domain="sync"), bmem.read_port(domain="sync")
        raddr = Cat(out_db.value[sel_bits:] if sel_bits else out_db.value, rbank)
        m.d.comb += [grp.addr.eq(raddr), grp.en.eq(pipe.advance),
                     brp.addr.eq(raddr), brp.en.eq(pipe.advance)]
        mean_in = cur[:w].as_signed()
        r_in = cur[w:].as_signed()
        xin = ot.payload
        # stage 1: registered X, mean, r; gain/bias rows read
        xr = [pipe.reg(lane(xin, j, w), f"x{j}") for j in range(n)]
        mean = pipe.reg(mean_in, "mean")
        r = pipe.reg(r_in, "r")
        sel = pipe.reg(out_db.value[:sel_bits], "sel") if sel_bits else None
        pipe.next()
        gl = n * gw

        def lanes(row):
            part = row.word_select(sel, gl) if sel is not None else row[:gl]
            return [part[gw * j:gw * (j + 1)].as_signed() for j in range(n)]
        d = [pipe.reg((xr[j] - mean)[:w].as_signed(), f"d{j}") for j in range(n)]
        g = [pipe.reg(v, f"g{j}") for j, v in enumerate(lanes(grp.data))]
        b = [pipe.reg(v, f"b{j}") for j, v in enumerate(lanes(brp.data))]
        pipe.carry("r", r)
        pipe.next()
        # stage 2: ·r (registered inputs d, r; registered product)
        p1 = [pipe.reg((d[j] * pipe["r"])[:w + frac], f"p1_{j}") for j in range(n)]
        pipe.drop("r")
        for j in range(n):
            pipe.carry(f"g{j}", g[j])
            pipe.carry(f"b{j}", b[j])
        pipe.next()
        # stage 3: ·gain (registered inputs: the product register's slice, the gain)
        y1 = [(p1[j] >> frac)[:w].as_signed() for j in range(n)]
        p2 = [pipe.reg((y1[j] * pipe[f"g{j}"])[:w + gfrac], f"p2_{j}") for j in range(n)]
        for j in range(n):
            pipe.drop(f"g{j}")
        pipe.next()
        # stage 4: + bias (exact widening), registered output
        y = Cat(*[((p2[j] >> gfrac)[:w] + (pipe[f"b{j}"] << (frac - bfrac)))[:w]
                  for j in range(n)])
        yr = pipe.reg(y, "y", shape=blk.width)
        pipe.next()
        pipe.finish(yr)
        assert pipe.latency == NORM_STAGES, pipe.latency
        return m



class _Count:
    """A wrapping counter register ``value`` (0..n-1); ``next_value`` is its increment."""

    def __init__(self, value, next_value):
        self.value, self.next_value = value, next_value


def _counter(m, n: int, name: str):
    """(counter, last, prelast): a 0..n-1 counter whose flags value == n-1 and value == n-2
    are registers of their own, so control logic does not wait for comparators."""
    v = Signal(range(max(n, 2)), name=name)
    last = Signal(name=f"{name}_last", init=n == 1)
    pre = Signal(name=f"{name}_prelast", init=n == 2)
    nxt = [v.eq(Mux(last, 0, v + 1)), last.eq((v == n - 2) if n > 1 else 1),
           pre.eq(Mux(last, int(n == 2), (v == n - 3) if n > 2 else 0))]
    return _Count(v, nxt), last, pre
