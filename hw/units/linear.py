"""The unified linear engine (spec §4.3) in Amaranth, bit-exact with
:func:`moevit.golden.linear.linear_ref`:

  Y[t][o] = post( G( wrap32( B_o·2^(22-Fb) + Σ_i ⌊X[t][i]·W[o][i] / 2^shift⌋ ) ) )

with ``post`` = identity, ×score (⌊y·p⌋, expert FC2) and/or + a destination row (the
accumulate of expert FC2, pos_embed in the patch embedding).

Streams (valid/ready; beats are ``axi_width`` = 256 bits, word j at bits 32j / 16j / 8j):

* ``wcmd`` {bank, in_tiles, out_tiles, attn_bias} then ``w`` (W[out][in] row-major, 16 int16
  per beat, as in DRAM) and ``b`` (16 int16 biases per beat) fill the ping (0), pong (1) or
  patch (2, :data:`~moevit.hw.units.linear_schedule.PATCH_BANK`) weight and bias bank.  A
  bank is loaded only when it is free (its last pass has issued its last step), so the next
  layer's weights load while the current one computes.  The patch bank holds the one-time
  patch-embedding weights: its passes ``keep`` it, so it stays loaded across images and runs.
* ``cmd`` {bank, in_tiles, out_tiles, tokens, gelu, score, add, keep, pixel, cls}: one compute
  pass over ``tokens`` rows with the weights of ``bank`` (waits until the bank is loaded;
  frees it at the end unless ``keep``).  ``pixel``: the x rows are uint8 pixels (32 per beat;
  the patch embedding, spec §4.1), each zero-extended into its 32-bit lane and shifted left
  by ``pixel_lshift`` so that the one ``>> 14`` floor of the products gives the patch
  format's ``⌊P·W / 4⌋``.  ``cls``: the pass's first row is the cls row: it gets no bias
  (with an all-zero x row and ``add`` its output is the d row itself, pos_embed[0]).
* ``x`` {data, token, score}: the pass's input rows in processing order, ``in/epb`` beats per
  row; ``token`` (the row's id) and ``score`` (its gate probability) ride along.  Direct
  mode: rows 0..T-1; gather mode: the rows of an expert queue.
* ``d``: with ``add``, one destination beat per output beat (the row being accumulated into).
* ``y`` {data, token}: output rows, ``out/8`` beats per row, in input order; ``token`` is
  where a writer puts the row (scatter).

The engine holds no activation memory: direct/gather/scatter/accumulate differ only in which
addresses the row reader and writer use (``token × row stride``), so an accelerator top
wires ``x``, ``d`` and ``y`` to AXI masters driven by the same token list
(docs/units.md).

Datapath: a compute issue stage (token → out-tile → in-tile counters; one step per clock
when the row cache holds the token's row, the weight bank is loaded and the output FIFO
has a credit), weight-tile memories (one per tile row, ``tile_in``×16 bits wide), a
double-buffered input-row cache, registered multiplier inputs and outputs, a registered
adder tree (``TREE_LEVELS_PER_STAGE`` levels per stage), the accumulator, an output-tile
FIFO, a serializer to 8-wide beats, ``feature_block`` lanes of the shared :class:`Gelu`, the
score multiply and the add.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.hw.units.gelu import Gelu
from moevit.hw.units.linear_schedule import (
    BANKS, OUT_PIPE_STAGES, PRE_TREE_STAGES, TREE_LEVELS_PER_STAGE, WEIGHT_BITS, LinearGeometry,
    bias_hold, geometry, tree_stages)
from moevit.hw.units.pipeline import StallPipeline

FM_W = 32


def _bits(n: int) -> int:
    """Width of an unsigned field holding 0..n."""
    return max(1, n.bit_length())


def layouts(g: LinearGeometry) -> dict:
    """Payload layouts of the engine's streams (shared with testbenches and tops)."""
    it, ot = unsigned(_bits(g.max_in_tiles)), unsigned(_bits(g.max_out_tiles))
    tok = unsigned(g.token_bits)
    bank = unsigned(_bits(BANKS - 1))
    return {
        "wcmd": data.StructLayout({"bank": bank, "in_tiles": it, "out_tiles": ot,
                                   "attn_bias": 1}),
        "cmd": data.StructLayout({"bank": bank, "in_tiles": it, "out_tiles": ot,
                                  "tokens": unsigned(_bits(g.tokens)), "gelu": 1, "score": 1,
                                  "add": 1, "keep": 1, "pixel": 1, "cls": 1}),
        "x": data.StructLayout({"data": g.beat_bits, "token": tok, "score": signed(FM_W)}),
        "y": data.StructLayout({"data": g.beat_bits, "token": tok}),
    }


def engine_signature(g: LinearGeometry) -> dict:
    """Ports of an engine instance (the linear engine and the patch embedding's wrapper)."""
    lay, W = layouts(g), g.beat_bits
    return {"wcmd": In(stream.Signature(lay["wcmd"])), "w": In(stream.Signature(W)),
            "b": In(stream.Signature(W)), "cmd": In(stream.Signature(lay["cmd"])),
            "x": In(stream.Signature(lay["x"])), "d": In(stream.Signature(W)),
            "y": Out(stream.Signature(lay["y"]))}


def fifo_depth(g: LinearGeometry) -> int:
    """Output tiles the FIFO holds: enough credits to cover the pipeline even with one
    in-tile per out-tile (a power of two)."""
    need = PRE_TREE_STAGES + tree_stages(g.tile_in) + 6
    return 1 << (need - 1).bit_length()


def out_fifo_depth(g: LinearGeometry) -> int:
    """Output beats the output FIFO holds: the credit loop through the GELU lanes and the
    score pipeline (a power of two)."""
    need = OUT_PIPE_STAGES + (4 if g.fmt.gelu else 0) + 6
    return 1 << (need - 1).bit_length()


class _Port:
    """A stream-like bundle of plain signals (for joins inside the engine)."""

    def __init__(self, payload_shape, name):
        self.valid = Signal(name=f"{name}_valid")
        self.ready = Signal(name=f"{name}_ready")
        self.payload = Signal(payload_shape, name=f"{name}_payload")


def _onehot(sel):
    """One-hot mask (``BANKS`` bits) of a bank select."""
    return Cat(*[sel == k for k in range(BANKS)])


def _bank_base(sel, size: int):
    """First address of bank ``sel`` in a memory of ``BANKS`` banks of ``size`` words."""
    return Mux(sel[1], 2 * size, Mux(sel[0], size, 0)) if BANKS == 3 else sel * size


def _log2(n: int) -> int:
    return n.bit_length() - 1


class Linear(wiring.Component):
    """The unified linear engine: fm_t × wt_linear passes, and pixel × wt_patch_embed passes
    (the patch embedding) selected per command (``pixel``)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.g = geometry(cfg)
        self.fmt = self.g.fmt
        super().__init__(engine_signature(self.g))

    # ---------------------------------------------------------------- weight/bias loader
    def _loader(self, m, g, wfull, set_full, clr_full):
        cfg = self.cfg
        TI, TO, wpb = g.tile_in, g.tile_out, g.w_per_beat
        f = cfg.formats
        wb_w = f.wt_wbias.width
        p = self.wcmd.payload
        busy = Signal(name="ld_busy")
        bank = Signal(range(BANKS), name="ld_bank")
        l_it = Signal.like(p.in_tiles, name="ld_in_tiles")
        l_ot = Signal.like(p.out_tiles, name="ld_out_tiles")
        attn = Signal(name="ld_attn_bias")
        w_done = Signal(name="ld_w_done")  # every weight beat of the load is in
        b_done = Signal(name="ld_b_done")
        cpt, bpt = TI // wpb, TO // wpb  # weight beats per tile row, bias beats per tile
        ck = Signal(range(cpt), name="ld_chunk")
        wib = Signal(range(g.max_in_tiles), name="ld_ib")
        wr = Signal(range(TO), name="ld_row")
        wobase = Signal(range(g.max_tiles + 1), name="ld_ob_base")
        wob = Signal(range(g.max_out_tiles), name="ld_ob")
        bck = Signal(range(bpt), name="ld_bchunk")
        bob = Signal(range(g.max_out_tiles), name="ld_bob")
        m.d.comb += self.wcmd.ready.eq(~busy)
        with m.If(self.wcmd.valid & ~busy):
            m.d.sync += [busy.eq(1), bank.eq(p.bank), l_it.eq(p.in_tiles), attn.eq(p.attn_bias),
                         l_ot.eq(p.out_tiles), w_done.eq(0), b_done.eq(0), ck.eq(0), wib.eq(0),
                         wr.eq(0), wob.eq(0), wobase.eq(0), bck.eq(0), bob.eq(0)]
        free = ~wfull.bit_select(bank, 1)
        w_go = busy & free & ~w_done
        # a freed bank's biases are still read for up to bias_hold cycles after its pass's
        # last step (the bias is read just before the accumulator stage, not at issue):
        # hold the bias writes of a load into the bank freed last until then
        # (a one-hot mask register beside ``wfull``, so the bias ready is as shallow as the
        # weight ready)
        hold_n = bias_hold(g)
        hold = Signal(range(hold_n + 1), name="ld_bias_hold")
        hold_mask = Signal(BANKS, name="ld_bias_hold_mask")
        with m.If(clr_full.any()):
            m.d.sync += [hold.eq(hold_n), hold_mask.eq(clr_full)]
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
            with m.If(hold == 1):
                m.d.sync += hold_mask.eq(0)
        b_go = busy & ~(wfull | hold_mask).bit_select(bank, 1) & ~b_done
        m.d.comb += [self.w.ready.eq(w_go), self.b.ready.eq(b_go)]
        w_fire = self.w.valid & w_go
        b_fire = self.b.valid & b_go
        m.d.comb += set_full.eq(Mux(busy & w_done & b_done, _onehot(bank), 0))
        with m.If(busy & w_done & b_done):
            m.d.sync += busy.eq(0)

        # weights: beat n = W[ob*TO + r][(ib*cpt + ck)*wpb ...]: tile ob*in_tiles + ib, row r
        waddr = Signal(range(BANKS * g.max_tiles), name="ld_waddr")
        m.d.comb += waddr.eq(_bank_base(bank, g.max_tiles) + wobase + wib)
        wports = []
        for r, mem in enumerate(self._wmems):
            wp = mem.write_port(granularity=wpb * WEIGHT_BITS if cpt > 1 else None)
            en = w_fire & (wr == r)
            m.d.comb += [wp.addr.eq(waddr), wp.data.eq(Cat(*([self.w.payload] * cpt))),
                         wp.en.eq(Cat(*[en & (ck == k) for k in range(cpt)]) if cpt > 1 else en)]
            wports.append(wp)
        with m.If(w_fire):
            last_ck, last_ib, last_r = ck == cpt - 1, wib == l_it - 1, wr == TO - 1
            m.d.sync += ck.eq(Mux(last_ck, 0, ck + 1))
            with m.If(last_ck):
                m.d.sync += wib.eq(Mux(last_ib, 0, wib + 1))
                with m.If(last_ib):
                    m.d.sync += wr.eq(Mux(last_r, 0, wr + 1))
                    with m.If(last_r):
                        m.d.sync += [wobase.eq(wobase + l_it), wob.eq(wob + 1)]
                        with m.If(wob == l_ot - 1):
                            m.d.sync += w_done.eq(1)

        # biases: 16 int16 per beat, widened exactly to wt_wbias (attention bias << 2)
        sh_attn = f.wt_wbias.frac - f.wt_attn_bias.frac
        sh_mlp = f.wt_wbias.frac - f.wt_bias.frac
        wide = []
        for k in range(wpb):
            v = self.b.payload[WEIGHT_BITS * k:WEIGHT_BITS * (k + 1)].as_signed()
            wide.append(Mux(attn, v << sh_attn, v << sh_mlp)[:wb_w])
        bp = self._bmem.write_port(granularity=wpb * wb_w if bpt > 1 else None)
        m.d.comb += [bp.addr.eq(_bank_base(bank, g.max_out_tiles) + bob),
                     bp.data.eq(Cat(*(wide * bpt))),
                     bp.en.eq(Cat(*[b_fire & (bck == k) for k in range(bpt)]) if bpt > 1
                              else b_fire)]
        with m.If(b_fire):
            m.d.sync += bck.eq(Mux(bck == bpt - 1, 0, bck + 1))
            with m.If(bck == bpt - 1):
                m.d.sync += bob.eq(bob + 1)
                with m.If(bob == l_ot - 1):
                    m.d.sync += b_done.eq(1)

    # ---------------------------------------------------------------- elaborate
    def elaborate(self, platform):
        m = Module()
        g, cfg, fmt = self.g, self.cfg, self.fmt
        TI, TO, W, xw = g.tile_in, g.tile_out, g.beat_bits, fmt.x_width
        fb = g.feature_block
        frac = cfg.formats.fm.frac
        wb_w = cfg.formats.wt_wbias.width
        wb_frac = cfg.formats.wt_wbias.frac

        # memories: weight banks (one per tile row), bias banks, input-row cache
        self._wmems = []
        for r in range(TO):
            mem = memory.Memory(shape=unsigned(TI * WEIGHT_BITS), depth=BANKS * g.max_tiles,
                                init=[])
            m.submodules[f"wbank{r}"] = mem
            self._wmems.append(mem)
        self._bmem = memory.Memory(shape=unsigned(TO * wb_w), depth=BANKS * g.max_out_tiles,
                                   init=[])
        m.submodules.bbank = self._bmem
        xmem = memory.Memory(shape=unsigned(g.x_word_bits), depth=2 * g.x_words, init=[])
        m.submodules.xcache = xmem

        wfull = Signal(BANKS, name="wfull")
        set_full = Signal(BANKS, name="wfull_set")
        clr_full = Signal(BANKS, name="wfull_clr")
        m.d.sync += wfull.eq((wfull | set_full) & ~clr_full)
        self._loader(m, g, wfull, set_full, clr_full)

        # ------------------------------------------------ command
        cp = self.cmd.payload
        # x_go (= act, rows left, the loading slot free) and "this is the row's last beat"
        # are registers computed from next-state values, so x.ready and the row-done
        # decision are one LUT from flip-flops (timing)
        x_go = Signal(name="x_go")
        xk_last = Signal(name="x_beat_last")
        act = Signal(name="c_active")
        c = {k: Signal.like(getattr(cp, k), name=f"c_{k}") for k in
             ("bank", "in_tiles", "out_tiles", "tokens", "gelu", "score", "add", "keep",
              "pixel", "cls")}
        row_last = Signal(range(g.in_beats(g.max_in) + 1), name="c_row_last")  # beats - 1
        rows_left = Signal(range(g.tokens + 1), name="c_rows_left")
        m.d.comb += self.cmd.ready.eq(~act)
        cmd_take = self.cmd.valid & ~act
        with m.If(cmd_take):
            m.d.sync += [act.eq(1), rows_left.eq(cp.tokens)]
            m.d.sync += [c[k].eq(getattr(cp, k)) for k in c]
            if TI >= g.x_per_beat:
                lin_last = cp.in_tiles * (TI // g.x_per_beat) - 1
            else:
                lin_last = (cp.in_tiles >> _log2(g.x_per_beat // TI)) - 1
            # pixel rows: pixel_tiles_per_beat input tiles per beat
            pix_last = (cp.in_tiles >> _log2(g.pixel_tiles_per_beat)) - 1
            new_last = Signal.like(row_last, name="c_row_last_new")
            m.d.comb += new_last.eq(Mux(cp.pixel, pix_last, lin_last))
            m.d.sync += [row_last.eq(new_last), xk_last.eq(new_last == 0)]

        # ------------------------------------------------ input-row loader (double-buffered)
        rfull = Signal(2, name="rfull")
        set_r, clr_r = Signal(2, name="rfull_set"), Signal(2, name="rfull_clr")
        m.d.sync += rfull.eq((rfull | set_r) & ~clr_r)
        lsel, csel = Signal(name="x_lsel"), Signal(name="x_csel")
        xk = Signal(range(max(g.in_beats(g.max_in), g.x_words)), name="x_beat")
        meta_tok = [Signal(g.token_bits, name=f"row{k}_token") for k in range(2)]
        meta_sc = [Signal(signed(FM_W), name=f"row{k}_score") for k in range(2)]
        m.d.comb += self.x.ready.eq(x_go)
        x_fire = self.x.valid & x_go
        bpw, tpw = g.beats_per_xword, g.tiles_per_xword
        xwp = xmem.write_port(granularity=W if bpw > 1 else None)
        lane = xk[:_log2(bpw)] if bpw > 1 else Const(0, 1)
        # pixel rows: one beat per word (its low ``beat_bits``), so word = beat
        m.d.comb += [xwp.addr.eq(Mux(lsel, g.x_words, 0) +
                                 Mux(c["pixel"], xk, xk >> _log2(bpw))),
                     xwp.data.eq(Cat(*([self.x.payload.data] * bpw))),
                     xwp.en.eq(Cat(*[x_fire & (Mux(c["pixel"], 0, lane) == k)
                                     for k in range(bpw)]) if bpw > 1 else x_fire)]
        row_done = x_fire & xk_last
        m.d.comb += set_r.eq(Mux(row_done, _onehot(lsel), 0))
        with m.If(x_fire):
            m.d.sync += [xk.eq(Mux(row_done, 0, xk + 1)),
                         xk_last.eq(Mux(row_done, row_last == 0, xk + 1 == row_last))]
        with m.If(row_done):
            m.d.sync += [lsel.eq(~lsel), rows_left.eq(rows_left - 1)]
            for k in range(2):
                with m.If(lsel == k):
                    m.d.sync += [meta_tok[k].eq(self.x.payload.token),
                                 meta_sc[k].eq(self.x.payload.score)]

        # ------------------------------------------------ issue (stage 0)
        depth = fifo_depth(g)
        used = Signal(range(depth + 1), name="credits_used")
        ib = Signal(range(g.max_in_tiles), name="ib")
        ob = Signal(range(g.max_out_tiles), name="ob")
        n = Signal(range(g.tokens), name="tok_n")
        # the weight and row-cache read addresses are registers (absolute: bank base +
        # tile, slot base + word), so no adder sits between a counter and a memory (timing)
        tile = Signal(range(BANKS * g.max_tiles), name="tile")
        wbase = Signal.like(tile, name="tile_base")
        bbase = Signal(range(BANKS * g.max_out_tiles), name="bias_base")
        xaddr = Signal(range(2 * g.x_words), name="x_raddr")
        # the issue conditions are registers (computed from next-state values), so ``fire``
        # is one LUT of flip-flops ahead of its fan-out (timing)
        first = Signal(init=1, name="ib_first")
        row_ok = Signal(name="row_ok")
        bank_ok = Signal(name="bank_ok")
        issue_ok = Signal(init=1, name="issue_ok")  # ~first | a credit of the tile FIFO
        fire = Signal(name="fire")
        m.d.comb += fire.eq(act & row_ok & bank_ok & issue_ok)
        # "last" flags of the three loop counters, kept one step ahead (registers), and
        # their AND ``end_tok`` (the token's last step) as a register of its own
        last_ib, last_ob, last_n = (Signal(name=f"{k}_last") for k in ("ib", "ob", "n"))
        end_tok = Signal(name="end_tok")
        c_it, c_ot, c_tok = c["in_tiles"], c["out_tiles"], c["tokens"]
        with m.If(cmd_take):
            m.d.sync += [last_ib.eq(cp.in_tiles == 1), last_ob.eq(cp.out_tiles == 1),
                         last_n.eq(cp.tokens == 1),
                         end_tok.eq((cp.in_tiles == 1) & (cp.out_tiles == 1)),
                         tile.eq(_bank_base(cp.bank, g.max_tiles)),
                         wbase.eq(_bank_base(cp.bank, g.max_tiles)),
                         bbase.eq(_bank_base(cp.bank, g.max_out_tiles)),
                         xaddr.eq(Mux(csel, g.x_words, 0))]
        with m.If(fire):
            ib_next = Mux(last_ib, c_it == 1, ib + 2 == c_it)
            ob_next = Mux(last_ib, Mux(last_ob, c_ot == 1, ob + 2 == c_ot), last_ob)
            m.d.sync += [last_ib.eq(ib_next), last_ob.eq(ob_next),
                         end_tok.eq(ib_next & ob_next)]
            with m.If(end_tok):
                m.d.sync += last_n.eq(Mux(last_n, c_tok == 1, n + 2 == c_tok))
        # row-cache word of the next in-tile: linear rows tpw tiles per word, pixel rows
        # pixel_tiles_per_beat per word; the word advances after a word's last tile
        lt, lp = _log2(tpw), _log2(g.pixel_tiles_per_beat)
        seg_w = max(lt, lp, 1)
        seg = Signal(seg_w, name="x_segment")
        m.d.comb += seg.eq(Mux(c["pixel"], ib[:lp] if lp else 0, ib[:lt] if lt else 0))
        word_end = Mux(c["pixel"], ib[:lp].all() if lp else 1, ib[:lt].all() if lt else 1)
        with m.If(fire):
            m.d.sync += [ib.eq(Mux(last_ib, 0, ib + 1)), tile.eq(Mux(end_tok, wbase, tile + 1)),
                         first.eq(last_ib)]
            with m.If(last_ib):
                # the row again (next out-tile), or the next token's row in the other slot
                m.d.sync += xaddr.eq(Mux(csel ^ end_tok, g.x_words, 0))
            with m.Else():
                m.d.sync += xaddr.eq(xaddr + word_end)
            with m.If(last_ib):
                m.d.sync += ob.eq(Mux(last_ob, 0, ob + 1))
            with m.If(end_tok):
                m.d.sync += [n.eq(Mux(last_n, 0, n + 1)), csel.eq(~csel)]
                with m.If(last_n):
                    m.d.sync += act.eq(0)
        m.d.comb += [clr_r.eq(Mux(fire & end_tok, _onehot(csel), 0)),
                     clr_full.eq(Mux(fire & end_tok & last_n & ~c["keep"], _onehot(c["bank"]),
                                     0))]
        # next-state values of the issue conditions, written out per case so that the late
        # signals (fire, row_done) enter one LUT before the flip-flop: a command is taken
        # only while no pass is active (no fire); a row that completes loading fills slot
        # lsel; a token that ends frees slot csel; a pass that ends frees its weight bank
        tok_end = fire & end_tok
        pass_end = tok_end & last_n
        bank_sel = wfull | set_full
        with m.If(cmd_take):
            m.d.sync += [bank_ok.eq(bank_sel.bit_select(cp.bank, 1)),
                         x_go.eq((cp.tokens != 0) & ~rfull.bit_select(lsel, 1))]
        with m.Else():
            m.d.sync += bank_ok.eq(bank_sel.bit_select(c["bank"], 1) & ~(pass_end & ~c["keep"]))
            free_other = ~rfull.bit_select(~lsel, 1) | (tok_end & (csel != lsel))
            free_same = ~rfull.bit_select(lsel, 1) | (tok_end & (csel == lsel))
            m.d.sync += x_go.eq(act & ~pass_end & Mux(row_done, free_other, free_same) &
                                Mux(row_done, rows_left != 1, rows_left != 0))
        m.d.sync += row_ok.eq(Mux(tok_end,
                                  rfull.bit_select(~csel, 1) | (row_done & (lsel != csel)),
                                  rfull.bit_select(csel, 1) | (row_done & (lsel == csel))))

        wrd = []
        for r, mem in enumerate(self._wmems):
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(tile)
            wrd.append(rp.data)
        xrp = xmem.read_port()
        m.d.comb += xrp.addr.eq(xaddr)

        # control pipeline: ctl[k] = the stage-k registers
        ctl0 = {"valid": fire, "first": first, "last": last_ib, "sel": seg,
                "pixel": c["pixel"], "nobias": c["cls"] & (n == 0),
                "baddr": bbase + ob,
                "token": Mux(csel, meta_tok[1], meta_tok[0]),
                "score": Mux(csel, meta_sc[1], meta_sc[0]),
                "gelu": c["gelu"], "scale": c["score"], "add": c["add"]}
        ts = tree_stages(TI)
        acc_stage = PRE_TREE_STAGES + ts
        ctl = [ctl0]
        for k in range(1, acc_stage + 1):
            prev = ctl[-1]
            nxt = {}
            for key, v in prev.items():
                s = Signal(Value.cast(v).shape(), name=f"{key}_s{k}")
                m.d.sync += s.eq(v)
                nxt[key] = s
            ctl.append(nxt)

        # stage 1: memory data; stage 2: multiplier input registers
        xt = Signal(TI * xw, name="x_tile")
        lin_t = xrp.data.word_select(ctl[1]["sel"][:lt], TI * xw) if lt else xrp.data[:TI * xw]
        pb, lsh = g.pixel_bits, g.pixel_lshift
        pix_t = (xrp.data[:W].word_select(ctl[1]["sel"][:lp], TI * pb) if lp else
                 xrp.data[:TI * pb])
        # pixel mode: each uint8 pixel zero-extended into its lane, shifted by pixel_lshift
        pix_lanes = Cat(*[Cat(Const(0, lsh), pix_t[pb * i:pb * (i + 1)],
                              Const(0, xw - lsh - pb)) for i in range(TI)])
        m.d.comb += xt.eq(Mux(ctl[1]["pixel"], pix_lanes, lin_t))
        x2 = Signal(TI * xw, name="x_s2")
        w2 = [Signal(TI * WEIGHT_BITS, name=f"w{r}_s2") for r in range(TO)]
        m.d.sync += x2.eq(xt)
        m.d.sync += [a.eq(b) for a, b in zip(w2, wrd)]
        # stage 3: multiplier outputs (per-product floor to fm_t, modulo 2^32)
        xs = [x2[xw * i:xw * (i + 1)] for i in range(TI)]
        xs = [v.as_signed() if fmt.x_signed else v for v in xs]
        terms = []
        for o in range(TO):
            row = []
            for i in range(TI):
                wv = w2[o][WEIGHT_BITS * i:WEIGHT_BITS * (i + 1)].as_signed()
                p = Signal(signed(FM_W), name=f"p{o}_{i}")
                m.d.sync += p.eq((xs[i] * wv) >> fmt.shift)
                row.append(p)
            terms.append(row)
        # adder tree, registered every TREE_LEVELS_PER_STAGE levels
        for st in range(ts):
            for o in range(TO):
                vals = terms[o]
                for _ in range(TREE_LEVELS_PER_STAGE):
                    if len(vals) == 1:
                        break
                    vals = [(vals[j] + vals[j + 1])[:FM_W].as_signed() if j + 1 < len(vals)
                            else vals[j] for j in range(0, len(vals), 2)]
                regs = []
                for j, v in enumerate(vals):
                    r = Signal(signed(FM_W), name=f"t{st}_{o}_{j}")
                    m.d.sync += r.eq(v)
                    regs.append(r)
                terms[o] = regs
        sums = [t[0] for t in terms]
        # bias read one stage ahead of the accumulator stage
        brp = self._bmem.read_port()
        m.d.comb += brp.addr.eq(ctl[acc_stage - 1]["baddr"])
        cs = ctl[acc_stage]
        acc_new = []
        for o in range(TO):
            acc = Signal(signed(FM_W), name=f"acc{o}")
            bias = (brp.data[wb_w * o:wb_w * (o + 1)].as_signed() << (frac - wb_frac))
            a = Signal(signed(FM_W), name=f"acc_new{o}")
            m.d.comb += a.eq(Mux(cs["first"], Mux(cs["nobias"], 0, bias), acc) + sums[o])
            with m.If(cs["valid"]):
                m.d.sync += acc.eq(a)
            acc_new.append(a)

        # ------------------------------------------------ output tile FIFO + serializer
        meta = data.StructLayout({"token": unsigned(g.token_bits), "score": signed(FM_W),
                                  "gelu": 1, "scale": 1, "add": 1})
        tile_fifo = fifo.SyncFIFOBuffered(width=TO * FM_W + meta.size, depth=depth)
        m.submodules.tile_fifo = tile_fifo
        wmeta = Signal(meta)
        m.d.comb += [wmeta.token.eq(cs["token"]), wmeta.score.eq(cs["score"]),
                     wmeta.gelu.eq(cs["gelu"]), wmeta.scale.eq(cs["scale"]),
                     wmeta.add.eq(cs["add"])]
        m.d.comb += [tile_fifo.w_data.eq(Cat(*acc_new, wmeta)),
                     tile_fifo.w_en.eq(cs["valid"] & cs["last"])]
        rmeta = Signal(meta)
        m.d.comb += rmeta.eq(tile_fifo.r_data[TO * FM_W:])
        obpt = g.out_beats_per_tile
        k = Signal(range(obpt), name="ser_beat")
        beat = tile_fifo.r_data[:TO * FM_W].word_select(k, W) if obpt > 1 else \
            tile_fifo.r_data[:W]
        ser = _Port(1, "ser")
        m.d.comb += ser.valid.eq(tile_fifo.r_rdy)
        ser_fire = ser.valid & ser.ready
        pop = ser_fire & (k == obpt - 1)
        with m.If(ser_fire):
            m.d.sync += k.eq(Mux(k == obpt - 1, 0, k + 1))
        m.d.comb += tile_fifo.r_en.eq(pop)
        take = fire & first
        used_next = Signal.like(used, name="credits_next")
        m.d.comb += used_next.eq(used + take - pop)
        m.d.sync += [used.eq(used_next),
                     issue_ok.eq(Mux(fire, ~last_ib, ~first) | (used_next < depth))]

        # ------------------------------------------------ GELU lanes + score (free-running)
        # The serializer issues a beat only with a credit of the output FIFO, so the GELU
        # lanes and the score pipeline never stall (no ready path runs through them).
        out_depth = out_fifo_depth(g)
        out_fifo = fifo.SyncFIFOBuffered(width=W + g.token_bits + 1, depth=out_depth)
        m.submodules.out_fifo = out_fifo
        o_used = Signal(range(out_depth + 1), name="out_credits_used")
        o_credit = Signal(init=1, name="out_credit_ok")
        m.d.comb += ser.ready.eq(o_credit)
        o_pop = out_fifo.r_en & out_fifo.r_rdy
        o_next = Signal.like(o_used, name="out_credits_next")
        m.d.comb += o_next.eq(o_used + ser_fire - o_pop)
        m.d.sync += [o_used.eq(o_next), o_credit.eq(o_next < out_depth)]

        def delay(value, n, name):
            for k in range(n):
                r = Signal(Value.cast(value).shape(), name=f"{name}_d{k + 1}")
                m.d.sync += r.eq(value)
                value = r
            return value

        if fmt.gelu:
            lanes = [Gelu(cfg) for _ in range(fb)]
            for j, ln in enumerate(lanes):
                m.submodules[f"gelu{j}"] = ln
                m.d.comb += [ln.i.valid.eq(ser_fire),
                             ln.i.payload.eq(beat[FM_W * j:FM_W * (j + 1)]),
                             ln.o.ready.eq(1)]
            lat = lanes[0].latency
            g_valid = delay(ser_fire, lat, "gelu_valid")
            raw = delay(beat, lat, "gelu_raw")
            gm = delay(rmeta, lat, "gelu_meta")
            gval = Cat(*[ln.o.payload for ln in lanes])
        else:
            g_valid, raw, gm, gval = ser_fire, beat, rmeta, beat
        gm = Value.cast(gm)
        gmeta = Signal(meta, name="post_meta")
        m.d.comb += gmeta.eq(gm)

        # stage 1: select GELU or raw; stage 2: registered y·p; stage 3: ⌊·/2^22⌋ or y
        v1 = Signal(W, name="post_v")
        p1 = Signal(signed(FM_W), name="post_p")
        m.d.sync += [v1.eq(Mux(gmeta.gelu, gval, raw) if fmt.gelu else raw),
                     p1.eq(gmeta.score)]
        meta1 = delay(Cat(g_valid, gmeta.scale, gmeta.add, gmeta.token), 1, "post_m1")
        words = [v1[FM_W * j:FM_W * (j + 1)].as_signed() for j in range(fb)]
        prods = []
        for j, wv in enumerate(words):
            if fmt.score:
                pr = Signal(signed(2 * FM_W), name=f"post_prod{j}")
                m.d.sync += pr.eq(wv * p1)
                prods.append(pr)
        v2 = delay(v1, 1, "post_v2")
        meta2 = delay(meta1, 1, "post_m2")
        scale2 = meta2[1] if fmt.score else Const(0, 1)
        outs = []
        for j in range(fb):
            wj = v2[FM_W * j:FM_W * (j + 1)]
            sj = (prods[j] >> frac)[:FM_W] if fmt.score else wj
            outs.append(Mux(scale2, sj, wj))
        m.d.comb += [out_fifo.w_data.eq(delay(Cat(*outs, meta2[2], meta2[3:]), 1, "post_y")),
                     out_fifo.w_en.eq(delay(meta2[0], 1, "post_valid"))]

        # ------------------------------------------------ join with d (accumulate) -> y
        fl = data.StructLayout({"data": W, "add": 1, "token": unsigned(g.token_bits)})
        head = Signal(fl, name="out_head")
        m.d.comb += head.eq(out_fifo.r_data)
        src = _Port(1, "join")
        m.d.comb += src.valid.eq(out_fifo.r_rdy)
        pipe = StallPipeline(m, src, self.y, input_allow=~head.add | self.d.valid, prefix="y_")
        m.d.comb += [out_fifo.r_en.eq(src.ready), self.d.ready.eq(pipe.valid & head.add)]
        dd = Mux(head.add, self.d.payload, 0)
        ysum = Cat(*[(head.data[FM_W * j:FM_W * (j + 1)] + dd[FM_W * j:FM_W * (j + 1)])[:FM_W]
                     for j in range(fb)])
        yd = pipe.reg(ysum, "ydata")
        ytok = pipe.reg(head.token, "ytoken")
        pipe.next()
        out = Signal(self.y.payload.shape())
        m.d.comb += [out.data.eq(yd), out.token.eq(ytok)]
        pipe.finish(out)
        return m
