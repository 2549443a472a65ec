"""The Edge-MoE attention unit in Amaranth (spec §4.5), bit-exact with
:mod:`moevit.golden.attention`.

Two phases, each a component retiring one schedule step (b, key, db) per clock
(:mod:`moevit.hw.units.attention_schedule`), with AXI-like 256-bit stream beats of 8 fm_t:

* :class:`AttentionQK` — Q·Kᵀ over 8-wide feature blocks with the per-block ×2^-shift floor,
  P query lanes with the staggered cyclic key order (lane o reloads its q row block by block
  at key o, so one q block and one k block per clock whatever P), the single-pass softmax
  statistics per (row, head), the score buffer streamed out in its DRAM layout (§7) and one
  softmax-info beat per row, rows in order.
* :class:`AttentionAV` — softmax·V with the same stagger: reads the score buffer and the
  info rows back (as from DRAM), one V block per clock, emits output rows in order.
* :class:`Attention` — both phases side by side (ports ``q k s_out i_out v s_in i_in o``).

Arithmetic per lane is combinational within the step (exp and the 1/sum divider are
:mod:`moevit.hw.units.attention_math` instances); the design is functional RTL with one
output register per stream, not retimed for 300 MHz.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.hw.units.attention_math import CombExp, CombRecip
from moevit.hw.units.attention_schedule import geometry

FM_W = 32


def _word(value, j):
    return value[FM_W * j:FM_W * (j + 1)].as_signed()


def _wrap32(expr):
    return expr[:FM_W].as_signed()


def _beat_sig(cfg):
    return stream.Signature(cfg.axi_width)


class _Counters:
    """(b, key, db) step counters plus base = P*b, advanced by ``advance``."""

    def __init__(self, m, g, advance):
        self.b = Signal(range(g.query_blocks), name="blk")
        self.key = Signal(range(g.tokens), name="key")
        self.db = Signal(range(g.feature_blocks), name="db")
        self.base = Signal(range(g.lanes * g.query_blocks + 1), name="base")
        last_db = self.db == g.feature_blocks - 1
        last_key = self.key == g.tokens - 1
        last_b = self.b == g.query_blocks - 1
        self.last_db, self.last_step = last_db, last_db & last_key & last_b
        self.last_entry = last_key & last_b
        with m.If(advance):
            m.d.sync += self.db.eq(Mux(last_db, 0, self.db + 1))
            with m.If(last_db):
                m.d.sync += self.key.eq(Mux(last_key, 0, self.key + 1))
                with m.If(last_key):
                    m.d.sync += [self.b.eq(Mux(last_b, 0, self.b + 1)),
                                 self.base.eq(Mux(last_b, 0, self.base + g.lanes))]
        bph = g.blocks_per_head
        self.head = self.db // bph if bph & (bph - 1) else self.db >> (bph.bit_length() - 1)
        self.head_first = (self.db % bph) == 0
        self.head_last = (self.db % bph) == bph - 1

    def row_valid(self, g, o):
        """Validity of lane o's current row (P*b+o from key o on, else P*(b-1)+o)."""
        return Mux(self.key >= o, self.base + o < g.tokens,
                   (self.b > 0) & (self.base + o - g.lanes < g.tokens))

    def finishing(self, g, o):
        """Lane o is at the last key of its cyclic order (and its row is valid)."""
        k_last = g.last_key(o)
        if o == 0:
            return (self.key == k_last) & (self.base < g.tokens)
        return (self.key == k_last) & (self.b > 0) & (self.base + o - g.lanes < g.tokens)


class _OutReg:
    """A registered stream source: ``push(m, data)`` when ``can_push``."""

    def __init__(self, m, port, width):
        self.valid = Signal(name=f"{port.payload.name}_v")
        self.data = Signal(width, name=f"{port.payload.name}_d")
        self.port = port
        m.d.comb += [port.valid.eq(self.valid), port.payload.eq(self.data)]
        self.can_push = ~self.valid | port.ready
        with m.If(port.ready):
            m.d.sync += self.valid.eq(0)

    def push(self, m, data):
        m.d.sync += [self.valid.eq(1), self.data.eq(data)]


class AttentionQK(wiring.Component):
    """Q·Kᵀ scores, online softmax statistics, score buffer and softmax-info streams."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg, self.g = cfg, geometry(cfg)
        s = _beat_sig(cfg)
        super().__init__({"q": In(s), "k": In(s), "scores": Out(s), "info": Out(s)})

    def elaborate(self, platform):
        m = Module()
        g, cfg = self.g, self.cfg
        P, FB, FBW, H, HL, E = (g.lanes, g.feature_blocks, g.feature_block, g.heads,
                                g.head_lanes, g.entry_words)
        W = cfg.axi_width
        frac = cfg.formats.fm.frac
        fire = Signal()
        c = _Counters(m, g, fire)
        load = Signal()
        m.d.comb += load.eq((c.key < P) & (c.base + c.key < g.tokens))
        emit = Signal()  # an info row leaves at the end of this key
        emit_lanes = [c.finishing(g, o) for o in range(P)]
        m.d.comb += emit.eq(Cat(*emit_lanes).any())

        # ------------------------------------------------ score packer (entry -> beats)
        entry = Signal(E * FM_W)
        if E >= FBW:
            nb = E // FBW
            pend = Signal(E * FM_W)
            pcnt = Signal(range(nb + 1))
            pidx = Signal(range(nb))
            m.d.comb += [self.scores.valid.eq(pcnt != 0),
                         self.scores.payload.eq(pend.word_select(pidx, W))]
            pack_ok = (pcnt == 0) | ((pcnt == 1) & self.scores.ready)
            with m.If(self.scores.valid & self.scores.ready):
                m.d.sync += [pcnt.eq(pcnt - 1), pidx.eq(pidx + 1)]
            with m.If(fire & c.last_db):
                m.d.sync += [pend.eq(entry), pcnt.eq(nb), pidx.eq(0)]
        else:
            epb = FBW // E
            gather = Signal(W)
            gn = Signal(range(epb))
            gfull = Signal()
            m.d.comb += [self.scores.valid.eq(gfull), self.scores.payload.eq(gather)]
            pack_ok = ~gfull | self.scores.ready
            with m.If(self.scores.ready):
                m.d.sync += gfull.eq(0)
            with m.If(fire & c.last_db):
                with m.If(gn == 0):
                    m.d.sync += gather.eq(entry)
                with m.Else():
                    m.d.sync += gather.word_select(gn, E * FM_W).eq(entry)
                with m.If((gn == epb - 1) | c.last_entry):
                    m.d.sync += [gfull.eq(1), gn.eq(0)]
                with m.Else():
                    m.d.sync += gn.eq(gn + 1)

        info = _OutReg(m, self.info, W)
        m.d.comb += fire.eq(self.k.valid & (~load | self.q.valid)
                            & (~c.last_db | pack_ok) & (~(c.last_db & emit) | info.can_push))
        m.d.comb += [self.k.ready.eq(fire), self.q.ready.eq(fire & load)]

        # ------------------------------------------------ lanes
        scale = cfg.attn_scale_shift
        lane_scores = []  # per lane: list of head score values for the entry
        emit_sum = Signal(signed(FM_W))
        emit_sums = []
        new_biases = []
        bias_regs = []
        for o in range(P):
            qmem = memory.Memory(shape=unsigned(W), depth=FB, init=[])
            m.submodules[f"qbuf{o}"] = qmem
            rd = qmem.read_port(domain="comb")
            wr = qmem.write_port()
            here = load & (c.key == o)
            m.d.comb += [rd.addr.eq(c.db), wr.addr.eq(c.db), wr.data.eq(self.q.payload),
                         wr.en.eq(fire & here)]
            qblk = Mux(here, self.q.payload, rd.data)
            prods = [_wrap32((_word(qblk, j) * _word(self.k.payload, j)) >> frac)
                     for j in range(FBW)]
            blk = Signal(signed(FM_W), name=f"blk{o}")
            m.d.comb += blk.eq(_wrap32(sum(prods)))
            acc = Signal(signed(FM_W), name=f"acc{o}")
            acc_new = Signal(signed(FM_W), name=f"acc_new{o}")
            m.d.comb += acc_new.eq(_wrap32(Mux(c.head_first, 0, acc) + (blk >> scale)))
            with m.If(fire):
                m.d.sync += acc.eq(acc_new)
            valid = c.row_valid(g, o)
            sc = [Signal(signed(FM_W), name=f"sc{o}_{h}") for h in range(H)]
            sums = [Signal(signed(FM_W), name=f"sum{o}_{h}") for h in range(H)]
            biases = [Signal(signed(FM_W), name=f"bias{o}_{h}") for h in range(H)]
            bias_regs.append(biases)
            # online softmax update of head `head` with s = acc_new (spec §4.5.3)
            first = c.key == o
            cur_sum = Mux(first, 0, Array(sums)[c.head])
            cur_bias = Mux(first, -(1 << (FM_W - 1)), Array(biases)[c.head])
            d = Signal(signed(FM_W + 1), name=f"d{o}")
            m.d.comb += d.eq(cur_bias - acc_new)
            newmax = d < 0
            ex = CombExp()
            m.submodules[f"exp{o}"] = ex
            m.d.comb += ex.x.eq(_wrap32(Mux(newmax, d, -d)))
            e = Cat(ex.y, Const(0, 1)).as_signed()
            new_sum = Signal(signed(FM_W), name=f"new_sum{o}")
            new_bias = Signal(signed(FM_W), name=f"new_bias{o}")
            m.d.comb += [
                new_sum.eq(Mux(newmax, _wrap32(((cur_sum * e) >> frac) + (1 << frac)),
                               _wrap32(cur_sum + e))),
                new_bias.eq(Mux(newmax, acc_new, cur_bias))]
            with m.If(fire & c.head_last):
                for h in range(H):
                    with m.If(c.head == h):
                        m.d.sync += [sc[h].eq(Mux(valid, acc_new, 0)), sums[h].eq(new_sum),
                                     biases[h].eq(new_bias)]
            words = [sc[h] if h < H - 1 else Mux(valid, acc_new, 0) for h in range(H)]
            words += [Const(0, FM_W)] * (HL - H)
            lane_scores.append(words)
            emit_sums.append((emit_lanes[o], new_sum))
            new_biases.append(new_bias)
        m.d.comb += entry.eq(Cat(*[w for lane in lane_scores for w in lane]))

        # ------------------------------------------------ 1/sum of the finishing lane
        rc = CombRecip()
        m.submodules.recip = rc
        sel = Const(0, signed(FM_W))
        for cond, val in emit_sums:
            sel = Mux(cond, val, sel)
        m.d.comb += [emit_sum.eq(sel), rc.x.eq(emit_sum)]
        rcp = [Signal(signed(FM_W), name=f"rcp{h}") for h in range(H)]
        with m.If(fire & c.head_last):
            for h in range(H - 1):
                with m.If(c.head == h):
                    m.d.sync += rcp[h].eq(rc.y)
        # info row: [recip_h, max_h]..., pads 0
        maxes = []
        for h in range(H):
            val = Const(0, signed(FM_W))
            for o in range(P):
                cur = bias_regs[o][h] if h < H - 1 else new_biases[o]
                val = Mux(emit_lanes[o], cur, val)
            maxes.append(val)
        row_words = []
        for h in range(H):
            row_words += [rcp[h] if h < H - 1 else rc.y, maxes[h]]
        row_words += [Const(0, FM_W)] * (FBW - 2 * H)
        with m.If(fire & c.last_db & emit):
            info.push(m, Cat(*row_words))
        return m


class AttentionAV(wiring.Component):
    """softmax·V from the score buffer and softmax-info streams; output rows in order."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg, self.g = cfg, geometry(cfg)
        s = _beat_sig(cfg)
        super().__init__({"v": In(s), "scores": In(s), "info": In(s), "out": Out(s)})

    def elaborate(self, platform):
        m = Module()
        g, cfg = self.g, self.cfg
        P, FB, FBW, H, HL, E = (g.lanes, g.feature_blocks, g.feature_block, g.heads,
                                g.head_lanes, g.entry_words)
        W = cfg.axi_width
        frac = cfg.formats.fm.frac
        fire = Signal()
        c = _Counters(m, g, fire)
        take = fire & (c.db == 0)

        # ------------------------------------------------ score unpacker (beats -> entry)
        ent = Signal(E * FM_W)
        if E >= FBW:
            nb = E // FBW
            nxt = Signal(E * FM_W)
            ncnt = Signal(range(nb + 1))
            avail = ncnt == nb
            m.d.comb += [self.scores.ready.eq(~avail), ent.eq(nxt)]
            with m.If(self.scores.valid & self.scores.ready):
                m.d.sync += [nxt.word_select(ncnt, W).eq(self.scores.payload),
                             ncnt.eq(ncnt + 1)]
            with m.If(take):
                m.d.sync += ncnt.eq(0)
        else:
            epb = FBW // E
            sbuf = Signal(W)
            sfull = Signal()
            sj = Signal(range(epb))
            avail = sfull
            m.d.comb += [self.scores.ready.eq(~sfull), ent.eq(sbuf.word_select(sj, E * FM_W))]
            with m.If(self.scores.valid & self.scores.ready):
                m.d.sync += [sbuf.eq(self.scores.payload), sfull.eq(1)]
            with m.If(take):
                with m.If((sj == epb - 1) | c.last_entry):
                    m.d.sync += [sfull.eq(0), sj.eq(0)]
                with m.Else():
                    m.d.sync += sj.eq(sj + 1)
        cur = Signal(E * FM_W)
        with m.If(take):
            m.d.sync += cur.eq(ent)
        entry_now = Mux(c.db == 0, ent, cur)

        need_info = Signal()
        m.d.comb += need_info.eq((c.db == 0) & (c.key < P) & (c.base + c.key < g.tokens))
        out_lanes = [c.finishing(g, o) for o in range(P)]
        need_out = Cat(*out_lanes).any()
        out = _OutReg(m, self.out, W)
        m.d.comb += fire.eq(self.v.valid & ((c.db != 0) | avail)
                            & (~need_info | self.info.valid) & (~need_out | out.can_push))
        m.d.comb += [self.v.ready.eq(fire), self.info.ready.eq(fire & need_info)]

        out_sel = Const(0, W)
        for o in range(P):
            load = need_info & (c.key == o)
            rc = [Signal(signed(FM_W), name=f"rc{o}_{h}") for h in range(H)]
            mx = [Signal(signed(FM_W), name=f"mx{o}_{h}") for h in range(H)]
            rc_now = [Mux(load, _word(self.info.payload, 2 * h), rc[h]) for h in range(H)]
            mx_now = [Mux(load, _word(self.info.payload, 2 * h + 1), mx[h]) for h in range(H)]
            with m.If(fire & load):
                m.d.sync += [r.eq(v) for r, v in zip(rc + mx, rc_now + mx_now)]
            s = Array([_word(entry_now, o * HL + h) for h in range(H)])[c.head]
            ex = CombExp()
            m.submodules[f"exp{o}"] = ex
            m.d.comb += ex.x.eq(_wrap32(s - Array(mx_now)[c.head]))
            e = Cat(ex.y, Const(0, 1)).as_signed()
            a_new = _wrap32((e * Array(rc_now)[c.head]) >> frac)
            aw = Signal(signed(FM_W), name=f"aw{o}")
            a_now = Signal(signed(FM_W), name=f"a_now{o}")
            m.d.comb += a_now.eq(Mux(c.head_first, a_new, aw))
            with m.If(fire):
                m.d.sync += aw.eq(a_now)
            amem = memory.Memory(shape=unsigned(W), depth=FB, init=[])
            m.submodules[f"acc{o}"] = amem
            rd = amem.read_port(domain="comb")
            wr = amem.write_port()
            reset = c.key == o
            new_words = [_wrap32(Mux(reset, 0, _word(rd.data, j))
                                 + _wrap32((_word(self.v.payload, j) * a_now) >> frac))
                         for j in range(FBW)]
            new_blk = Signal(W, name=f"acc_blk{o}")
            m.d.comb += [new_blk.eq(Cat(*new_words)), rd.addr.eq(c.db), wr.addr.eq(c.db),
                         wr.data.eq(new_blk), wr.en.eq(fire)]
            out_sel = Mux(out_lanes[o], new_blk, out_sel)
        with m.If(fire & need_out):
            out.push(m, out_sel)
        return m


class Attention(wiring.Component):
    """Both attention phases; the score buffer and info rows go out (``s_out``, ``i_out``)
    and come back (``s_in``, ``i_in``) through the host's memory, as in Edge-MoE."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        s = _beat_sig(cfg)
        super().__init__({"q": In(s), "k": In(s), "s_out": Out(s), "i_out": Out(s),
                          "v": In(s), "s_in": In(s), "i_in": In(s), "o": Out(s)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.qk = qk = AttentionQK(self.cfg)
        m.submodules.av = av = AttentionAV(self.cfg)
        wiring.connect(m, wiring.flipped(self.q), qk.q)
        wiring.connect(m, wiring.flipped(self.k), qk.k)
        wiring.connect(m, qk.scores, wiring.flipped(self.s_out))
        wiring.connect(m, qk.info, wiring.flipped(self.i_out))
        wiring.connect(m, wiring.flipped(self.v), av.v)
        wiring.connect(m, wiring.flipped(self.s_in), av.scores)
        wiring.connect(m, wiring.flipped(self.i_in), av.info)
        wiring.connect(m, av.out, wiring.flipped(self.o))
        return m
