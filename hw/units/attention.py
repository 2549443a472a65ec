"""The Edge-MoE attention unit in Amaranth (spec §4.5), bit-exact with
:mod:`moevit.golden.attention`.

Two phases, each a component retiring one schedule step (b, key, db) per clock when its
streams and shared units keep up (:mod:`moevit.hw.units.attention_schedule`), with AXI-like
256-bit stream beats of 8 fm_t:

* :class:`AttentionQK` — Q·Kᵀ over 8-wide feature blocks with the per-block ×2^-shift floor,
  P query lanes with the staggered cyclic key order (lane o reloads its q row block by block
  at key o, so one q block and one k block per clock whatever P), the score buffer streamed
  out in its DRAM layout (§7).  The single-pass softmax statistics per (row, head) are
  computed by the shared pipelined :class:`~moevit.hw.units.softmax.OnlineSoftmax` (rows
  tagged lane×head_lanes+head, first/last per the cyclic key order): a head completes on all
  P lanes in the same step, and a serializer hands the valid lanes' scores over one per
  cycle (the step after the next head completion waits for it).  Its (recip, max) results
  are gathered head by head into one softmax-info beat per row, rows in order.
* :class:`AttentionAV` — softmax·V with the same stagger.  An A producer reads the score
  buffer and info rows back (as from DRAM) and computes A = floor(exp(s - max)·recip) for
  every (entry, head, lane) through the shared exp datapath
  (:func:`~moevit.hw.units.exp.exp_stages`, the ``Exp`` unit's pipeline) and a registered
  multiply, ahead of the V steps; a collector hands the P lanes' A of a head to the step that
  starts it.  One V block per clock, output rows in order.
* :class:`ProductArray` — the P x 8 fm_t multipliers with their operand and product
  registers, shared by the two phases (q·k and A·v are the same floored product): a
  registered grant gives the array to one phase for a whole layer (the core never runs them
  at once; if both are fed, they take turns, exactly).
* :class:`Attention` — both phases and the shared array (ports
  ``q k s_out i_out v s_in i_in o``).

Both phases run their steps in a :class:`StallPipeline` (issue → retire): Q·K has the
q/k blocks and the 8 products registered (in the array) and the adder tree every
``TREE_LEVELS`` levels (``qk_step_stages``); softmax·V the V beat and the lanes' A, then the
products (``AV_STEP_STAGES``, in the array); the per-step control flags travel down the
pipeline as registers.
Exp, the softmax state update and 1/sum are the pipelined shared units; the hand-overs
between the parts (head scores → ``nxt`` → serializer → softmax input register; A values →
``fill`` → ``hold``) are double-buffered with registered flags, so every stream keeps correct
valid/ready back-pressure and no ready path runs through more than one part.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig, Formats
from moevit.hw.units.attention_schedule import (A_PIPE_STAGES, AV_STEP_STAGES, TREE_LEVELS,
                                                geometry, qk_step_stages)
from moevit.hw.units.common import require_fm
from moevit.hw.units.exp import exp_stages
from moevit.hw.units.pipeline import StallPipeline, adder_trees
from moevit.hw.units.softmax import OnlineSoftmax

#: width of fm_t in this unit: the config's feature-map format, which every constructor
#: checks (require_fm: a config with another fm_t raises ConfigError instead of building
#: hardware of the wrong width)
FM_W = Formats().fm.width
FM_FRAC_BITS = Formats().fm.frac


def _word(value, j):
    return value[FM_W * j:FM_W * (j + 1)].as_signed()


def _wrap32(expr):
    return expr[:FM_W].as_signed()


def _lowest(mask, shape):
    """Index of the lowest set bit of ``mask`` (0 when none)."""
    pick = Const(0, shape)
    for o in reversed(range(len(mask))):
        pick = Mux(mask[o], o, pick)
    return pick


def _drop_lowest(mask):
    """``mask`` without its lowest set bit (bit i stays when a lower bit is set too)."""
    return Cat(*[mask[i] & mask[:i].any() if i else Const(0, 1) for i in range(len(mask))])


def _table(values, index, width):
    """``values[index]`` as logic (indices grouped by value), not as a ``case`` ROM: an
    always-block ROM whose index never changes is never evaluated by Icarus (X)."""
    out = Const(0, width)
    for v in sorted(set(values) - {0}):
        out = Mux(Cat(*[index == i for i, x in enumerate(values) if x == v]).any(), v, out)
    return out


def _beat_sig(cfg):
    return stream.Signature(cfg.axi_width)


class _Counters:
    """(b, key, db) step counters, advanced by ``advance``, and the per-lane flags of the
    current step from registers and small tables (timing): a thermometer ``key_ge[o]`` =
    key >= o (o <= P, shifted as the key advances) and per-block tables of which lane rows
    are valid (no base + o < T adders in front of the flags)."""

    def __init__(self, m, g, advance):
        P, T, QB = g.lanes, g.tokens, g.query_blocks
        self.b = Signal(range(QB), name="blk")
        self.key = Signal(range(T), name="key")
        self.db = Signal(range(g.feature_blocks), name="db")
        self.key_ge = [Const(1, 1)] + [Signal(name=f"key_ge{o}") for o in range(1, P + 1)]
        FB, bph = g.feature_blocks, g.blocks_per_head
        # db == FB-1, db % bph == 0 and db % bph == bph-1 are registers (timing)
        last_db = Signal(init=(FB == 1), name="last_db")
        self.head_first = Signal(init=1, name="head_first")
        self.head_last = Signal(init=(bph == 1), name="head_last")
        last_key = self.key == T - 1
        last_b = self.b == QB - 1
        self.last_db, self.last_step = last_db, last_db & last_key & last_b
        self.last_key, self.last_entry = last_key, last_key & last_b
        with m.If(advance):
            m.d.sync += self.db.eq(Mux(last_db, 0, self.db + 1))
            m.d.sync += [last_db.eq(Mux(last_db, FB == 1, self.db == FB - 2)),
                         self.head_first.eq(Mux(last_db, 1, (self.db + 1) % bph == 0)),
                         self.head_last.eq(Mux(last_db, bph == 1, (self.db + 2) % bph == 0))]
            with m.If(last_db):
                m.d.sync += self.key.eq(Mux(last_key, 0, self.key + 1))
                m.d.sync += [self.key_ge[o].eq(~last_key & self.key_ge[o - 1])
                             for o in range(1, P + 1)]
                with m.If(last_key):
                    m.d.sync += self.b.eq(Mux(last_b, 0, self.b + 1))
        # lane o's row in block b: P*b+o from key o on (``cur``), else P*(b-1)+o (``prev``)
        self._cur = [_table([int(P * b + o < T) for b in range(QB)], self.b, 1)
                     for o in range(P)]
        self._prev = [_table([int(b > 0 and P * (b - 1) + o < T) for b in range(QB)], self.b, 1)
                      for o in range(P)]
        self.head = self.db // bph if bph & (bph - 1) else self.db >> (bph.bit_length() - 1)

    def key_is(self, o):
        """key == o (o < P)."""
        return self.key_ge[o] & ~self.key_ge[o + 1]

    def row_valid(self, g, o):
        """Validity of lane o's current row (P*b+o from key o on, else P*(b-1)+o)."""
        return Mux(self.key_ge[o], self._cur[o], self._prev[o])

    def finishing(self, g, o):
        """Lane o is at the last key of its cyclic order (and its row is valid)."""
        if o == 0:
            return self.last_key & self._cur[0]
        return self.key_is(o - 1) & self._prev[o]


class _KeyRows:
    """Per key of the staggered order (a Q·K key, or a softmax·V score entry): whether it
    brings a new query row -- key < lim(b) = min(P, T - P*b) -- and for which lane
    (``lane_is[o]``: key == o).  Registers, stepped by ``step`` (the key advances) from
    registers: ``key_last`` (the key is T-1), ``left`` (rows the block still brings after
    this key) and a per-block table of the next block's lim indexed by ``blk``; so no
    key + 1 or base + key comparison sits in front of them (timing)."""

    def __init__(self, m, g, step, key_last, blk, name):
        P, T, QB = g.lanes, g.tokens, g.query_blocks
        lims = [max(0, min(P, T - P * b)) for b in range(QB)]
        nxt = [lims[(b + 1) % QB] for b in range(QB)]
        self.need = Signal(init=lims[0] > 0, name=f"{name}_row_load")
        left = Signal(range(max(2, P)), init=max(0, lims[0] - 1), name=f"{name}_rows_left")
        self.lane_is = [Signal(init=(o == 0), name=f"{name}_key_is{o}") for o in range(P)]
        self.next_block_need = _table([int(n > 0) for n in nxt], blk, 1)
        next_left = _table([max(0, n - 1) for n in nxt], blk, len(left))
        with m.If(step):
            m.d.sync += [self.need.eq(Mux(key_last, self.next_block_need, left != 0)),
                         left.eq(Mux(key_last, next_left, Mux(left != 0, left - 1, 0))),
                         self.lane_is[0].eq(key_last)]
            m.d.sync += [self.lane_is[o].eq(~key_last & self.lane_is[o - 1])
                         for o in range(1, P)]


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


def mul_client_signature(g) -> wiring.Signature:
    """A phase's port to the shared :class:`ProductArray` (directions as the phase sees
    them): its operands ``x`` (P x 8 words, lane-major) and ``y`` (8 words) of the step it
    issues, the handshake state the arbiter needs, and back the ``grant`` and the
    registered products ``prod`` = wrap32(floor(x·y / 2^22)) (P x 8 words)."""
    words = g.lanes * g.feature_block
    return wiring.Signature({
        "want": Out(1),     # a step is presented (before the grant)
        "issue": Out(1),    # a step is issued: its operands are taken this cycle
        "advance": Out(1),  # the phase's step pipeline advances (enables the array's stages)
        "busy": Out(1),     # a step of this phase is in the array (operand or product stage)
        "last": Out(1),     # the step presented is the phase's last of the layer
        "at_start": Out(1),  # (register) the next step is a layer's first
        "x": Out(unsigned(words * FM_W)),
        "y": Out(unsigned(g.feature_block * FM_W)),
        "grant": In(1),
        "prod": In(unsigned(words * FM_W)),
    })


def _drive_client(m, mul, *, want, issue, advance, last):
    at_start = Signal(init=1, name="at_layer_start")
    with m.If(issue):
        m.d.sync += at_start.eq(last)
    m.d.comb += [mul.want.eq(want), mul.issue.eq(issue), mul.advance.eq(advance),
                 mul.last.eq(last), mul.at_start.eq(at_start)]


def _array_products(mul, lanes, fbw):
    """The array's products as per-lane lists of fm_t words (stage-2 values)."""
    return [[_word(mul.prod, o * fbw + j) for j in range(fbw)] for o in range(lanes)]


class ProductArray(wiring.Component):
    """The P x 8 fm_t multipliers shared by Q·Kᵀ (q·k) and softmax·V (A·V), with their
    operand and product registers (stages 1 and 2 of either phase's step pipeline).

    A registered grant says which phase holds the array; the operand registers take that
    phase's x/y, and both register stages load when that phase's pipeline advances, so a
    product waits (stalled) for the phase that owns it.  The holder keeps the array for a
    whole layer: once it has issued the layer's last step it may issue no more, and the
    grant moves to the other phase as soon as the holder's steps have left the array (so a
    phase that starts after the other finished loses no cycle).  A holder that has not
    started a layer yields too when, in the previous cycle, the other phase presented a
    step and the holder did not (so Q·Kᵀ twice in a row, e.g. after a debug stop, costs a
    cycle or two, never a deadlock).  After reset Q·Kᵀ holds it.  Every decision is made
    from registers: the grant, a ``done`` flag, each phase's between-layers flag and its
    step request of the previous cycle, and its array stages' valid flags.  If both phases
    are fed at once they take turns layer by layer; results stay exact and only the cycle
    counts differ from ``cycles_per_layer`` (which assumes the phases in turn, as the core
    runs them).
    """

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "attention", FM_W, FM_FRAC_BITS, owner=self)
        self.cfg, self.g = cfg, geometry(cfg)
        sig = mul_client_signature(self.g)
        super().__init__({"qk": In(sig), "av": In(sig)})

    def elaborate(self, platform):
        m = Module()
        P, FBW = self.g.lanes, self.g.feature_block
        frac = self.cfg.formats.fm.frac
        qk, av = self.qk, self.av
        to_av = Signal(name="grant_av")    # 0: Q·Kᵀ holds the array, 1: softmax·V
        done = Signal(name="holder_done")  # the holder issued its layer's last step
        flip = Signal(name="grant_flip")  # the grant moves at the end of this cycle
        # yields[c]: c was between layers in the previous cycle, the other phase presented
        # a step and c did not (a register: every input of the decision is one)
        yields = {c: Signal(name=f"{n}_yields") for c, n in ((qk, "qk"), (av, "av"))}
        m.d.sync += [yields[qk].eq(qk.at_start & av.want & ~qk.want),
                     yields[av].eq(av.at_start & qk.want & ~av.want)]
        h_busy = Mux(to_av, av.busy, qk.busy)
        h_yields = Mux(to_av, yields[av], yields[qk])
        # decided while the holder is drained and blocked (done or yielding); the holder
        # stays blocked in the flip cycle
        m.d.sync += flip.eq(~flip & ~h_busy & (done | h_yields))
        with m.If(flip):
            m.d.sync += [to_av.eq(~to_av), done.eq(0)]
        with m.Elif(Mux(to_av, av.issue & av.last, qk.issue & qk.last)):
            m.d.sync += done.eq(1)
        m.d.comb += [qk.grant.eq(~to_av & ~done & ~yields[qk] & ~flip),
                     av.grant.eq(to_av & ~done & ~yields[av] & ~flip)]
        load = Signal(name="mul_advance")
        m.d.comb += load.eq(Mux(to_av, av.advance, qk.advance))
        x = Signal(P * FBW * FM_W, name="mul_x")
        y = Signal(FBW * FM_W, name="mul_y")
        prod = Signal(P * FBW * FM_W, name="mul_p")
        with m.If(load):
            m.d.sync += [x.eq(Mux(to_av, av.x, qk.x)), y.eq(Mux(to_av, av.y, qk.y))]
            m.d.sync += prod.eq(Cat(*[_wrap32((_word(x, o * FBW + j) * _word(y, j)) >> frac)
                                      for o in range(P) for j in range(FBW)]))
        m.d.comb += [qk.prod.eq(prod), av.prod.eq(prod)]
        return m


class AttentionQK(wiring.Component):
    """Q·Kᵀ scores, online softmax statistics, score buffer and softmax-info streams."""

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "attention", FM_W, FM_FRAC_BITS, owner=self)
        self.cfg, self.g = cfg, geometry(cfg)
        s = _beat_sig(cfg)
        super().__init__({"q": In(s), "k": In(s), "scores": Out(s), "info": Out(s),
                          "mul": Out(mul_client_signature(self.g))})

    def elaborate(self, platform):
        m = Module()
        g, cfg = self.g, self.cfg
        P, FB, FBW, H, HL, E = (g.lanes, g.feature_blocks, g.feature_block, g.heads,
                                g.head_lanes, g.entry_words)
        W = cfg.axi_width

        # ------------------------------------------------ step pipeline (issue -> retire)
        # A step is issued (its k beat, and q beat if it loads one, taken) at stage 0 and
        # retires at stage QK_STEP_STAGES: q/k blocks registered, products registered, the
        # adder tree registered every TREE_LEVELS levels, the head accumulator.  The issue
        # counters ``ci`` hand every per-step flag the retire stage needs down the pipeline
        # as registers; the whole pipeline stalls when the retiring step cannot retire.
        step_in = stream.Signature(1).create(path=("qk_step_in",))
        step_out = stream.Signature(1).create(path=("qk_step_out",))
        issue = Signal(name="qk_issue")
        ci = _Counters(m, g, issue)
        # "this key loads a q row" and "... into lane o" are registers (timing)
        rows = _KeyRows(m, g, issue & ci.last_db, ci.last_key, ci.b, "qk")
        load, key_is = rows.need, rows.lane_is
        m.d.comb += [step_in.valid.eq(self.k.valid & (~load | self.q.valid)),
                     step_in.payload.eq(0)]
        mul = self.mul
        pipe = StallPipeline(m, step_in, step_out, input_allow=mul.grant, prefix="qk_")
        m.d.comb += [issue.eq(pipe.valid), self.k.ready.eq(issue),
                     self.q.ready.eq(issue & load)]
        flags = {"hf": ci.head_first, "hl": ci.head_last, "ldb": ci.last_db,
                 "lent": ci.last_entry, "head": ci.head}
        for o in range(P):
            flags |= {f"valid{o}": ci.row_valid(g, o), f"first{o}": ci.key_is(o),
                      f"emit{o}": ci.finishing(g, o)}
        for k, v in flags.items():
            pipe.carry(k, v)
        # stage 0 -> 1: the shared array registers the operands: x = lane o's q block
        # (the q beat when it loads one), y = the k block
        qx = []
        for o in range(P):
            qmem = memory.Memory(shape=unsigned(W), depth=FB, init=[])
            m.submodules[f"qbuf{o}"] = qmem
            rd = qmem.read_port(domain="comb")
            wr = qmem.write_port()
            here = load & key_is[o]
            m.d.comb += [rd.addr.eq(ci.db), wr.addr.eq(ci.db), wr.data.eq(self.q.payload),
                         wr.en.eq(issue & here)]
            qx.append(Mux(here, self.q.payload, rd.data))
        m.d.comb += [mul.x.eq(Cat(*qx)), mul.y.eq(self.k.payload)]
        _drive_client(m, mul, want=step_in.valid, issue=issue, advance=pipe.advance,
                      last=ci.last_step)
        s1 = pipe.next()
        # stage 1 -> 2: the array's registered products (floored, wrapped)
        prods = _array_products(mul, P, FBW)
        m.d.comb += mul.busy.eq(s1 | pipe.next())
        # stage 2..: the adder trees (registered every TREE_LEVELS levels)
        blks = adder_trees(pipe, prods, FM_W, "qks", TREE_LEVELS)
        assert pipe.stage == qk_step_stages(cfg), (pipe.stage, qk_step_stages(cfg))
        f = {k: pipe[k] for k in flags}
        retire = Signal(name="qk_retire")
        out_ok = Signal(name="qk_out_ok")
        pipe.finish(Const(0, 1))
        m.d.comb += [step_out.ready.eq(out_ok), retire.eq(step_out.valid & out_ok)]

        # ------------------------------------------------ score packer (entry -> beats)
        entry = Signal(E * FM_W)
        if E >= FBW:
            nb = E // FBW
            pend = Signal(E * FM_W)
            pcnt = Signal(range(nb + 1))
            pidx = Signal(range(nb))
            m.d.comb += [self.scores.valid.eq(pcnt != 0),
                         self.scores.payload.eq(pend.word_select(pidx, W))]
            pack_ok = pcnt == 0  # registers only (timing): no beat left to send
            with m.If(self.scores.valid & self.scores.ready):
                m.d.sync += [pcnt.eq(pcnt - 1), pidx.eq(pidx + 1)]
            with m.If(retire & f["ldb"]):
                m.d.sync += [pend.eq(entry), pcnt.eq(nb), pidx.eq(0)]
        else:
            epb = FBW // E
            gather = Signal(W)
            gn = Signal(range(epb))
            gfull = Signal()
            m.d.comb += [self.scores.valid.eq(gfull), self.scores.payload.eq(gather)]
            pack_ok = ~gfull  # registers only (timing)
            with m.If(self.scores.ready):
                m.d.sync += gfull.eq(0)
            with m.If(retire & f["ldb"]):
                with m.If(gn == 0):
                    m.d.sync += gather.eq(entry)
                with m.Else():
                    m.d.sync += gather.word_select(gn, E * FM_W).eq(entry)
                with m.If((gn == epb - 1) | f["lent"]):
                    m.d.sync += [gfull.eq(1), gn.eq(0)]
                with m.Else():
                    m.d.sync += gn.eq(gn + 1)

        ser_free = Signal(name="ser_free")
        m.d.comb += out_ok.eq((~f["ldb"] | pack_ok) & (~f["hl"] | ser_free))

        # ------------------------------------------------ lanes: head accumulators
        scale = cfg.attn_scale_shift
        lane_scores = []  # per lane: list of head score values for the entry
        ser_load = []  # per lane: (valid, score, first, last) handed to the serializer
        for o in range(P):
            blk = Signal(signed(FM_W), name=f"blk{o}")
            m.d.comb += blk.eq(_wrap32(blks[o]))
            acc = Signal(signed(FM_W), name=f"acc{o}")
            acc_new = Signal(signed(FM_W), name=f"acc_new{o}")
            m.d.comb += acc_new.eq(_wrap32(Mux(f["hf"], 0, acc) + (blk >> scale)))
            with m.If(retire):
                m.d.sync += acc.eq(acc_new)
            valid = f[f"valid{o}"]
            sc = [Signal(signed(FM_W), name=f"sc{o}_{h}") for h in range(H)]
            with m.If(retire & f["hl"]):
                for h in range(H - 1):
                    with m.If(f["head"] == h):
                        m.d.sync += sc[h].eq(Mux(valid, acc_new, 0))
            words = [sc[h] if h < H - 1 else Mux(valid, acc_new, 0) for h in range(H)]
            words += [Const(0, FM_W)] * (HL - H)
            lane_scores.append(words)
            ser_load.append((valid, acc_new, f[f"first{o}"], f[f"emit{o}"]))
        m.d.comb += entry.eq(Cat(*[w for lane in lane_scores for w in lane]))

        # ------------------------------------------------ online softmax (shared unit)
        # A head completes on all P lanes at once.  Its valid lanes' scores (row =
        # lane*HL + head) go to the ``nxt`` registers, move to the serializer when it is
        # empty or handing over its last score, and leave one per cycle through a 2-entry
        # FIFO into OnlineSoftmax.  A step that completes a head waits while ``nxt``
        # is still occupied (tiny: below full rate).  Every flag here is a register.
        sm = OnlineSoftmax(cfg, full_rate=False)  # rows: default_rows(cfg) = P x HL
        m.submodules.softmax = sm
        Pb = range(max(2, P))
        nxt_v = Signal(name="nxt_v")
        nxt_first, nxt_last = (Signal(P, name=f"nxt_{n}") for n in ("first", "last"))
        nxt_head = Signal(range(max(2, H)), name="nxt_head")
        nxt_sc = [Signal(signed(FM_W), name=f"nxt_sc{o}") for o in range(P)]
        # the serializer state is the lane it hands over now (``ser_sel``) and the mask
        # of the lanes after it (``ser_rest``), with ``ser_empty``/``ser_single`` (rest
        # empty); ``nxt`` holds the same, computed when it is loaded (timing)
        nxt_sel, nxt_rest = Signal(Pb, name="nxt_sel"), Signal(P, name="nxt_rest")
        nxt_empty, nxt_single = Signal(name="nxt_empty"), Signal(name="nxt_single")
        ser_first, ser_last = (Signal(P, name=f"ser_{n}") for n in ("first", "last"))
        ser_head = Signal(range(max(2, H)), name="ser_head")
        ser_sc = [Signal(signed(FM_W), name=f"ser_sc{o}") for o in range(P)]
        sel, ser_rest = Signal(Pb, name="ser_sel"), Signal(P, name="ser_rest")
        ser_empty = Signal(init=1, name="ser_empty")    # no lane left
        ser_single = Signal(init=1, name="ser_single")  # ser_rest == 0
        m.d.comb += ser_free.eq(~nxt_v)
        load_mask = Cat(*[v for v, _, _, _ in ser_load])
        load_nxt = retire & f["hl"]
        with m.If(load_nxt):
            m.d.sync += [nxt_sel.eq(_lowest(load_mask, Pb)),
                         nxt_rest.eq(_drop_lowest(load_mask)), nxt_head.eq(f["head"]),
                         nxt_first.eq(Cat(*[x for _, _, x, _ in ser_load])),
                         nxt_last.eq(Cat(*[x for _, _, _, x in ser_load])),
                         nxt_empty.eq(load_mask == 0),
                         nxt_single.eq(_drop_lowest(load_mask) == 0)]
            m.d.sync += [r.eq(s) for r, (_, s, _, _) in zip(nxt_sc, ser_load)]
        # the softmax input: a 2-entry FIFO whose "room" flag is a register, so that the
        # serializer's pop (and the move of nxt) never waits for the softmax's ready
        sq = [Signal(sm.in_layout, name=f"sm_in{k}") for k in range(2)]
        sq_n = Signal(range(3), name="sm_in_count")
        room = Signal(init=1, name="sm_in_room")
        pop = Signal(name="ser_pop")
        move = Signal(name="ser_move")
        m.d.comb += [pop.eq(~ser_empty & room),
                     move.eq(nxt_v & (ser_empty | (ser_single & pop)))]
        m.d.sync += nxt_v.eq(Mux(nxt_v, ~move, load_nxt))
        with m.If(move):
            m.d.sync += [sel.eq(nxt_sel), ser_rest.eq(nxt_rest), ser_first.eq(nxt_first),
                         ser_last.eq(nxt_last), ser_head.eq(nxt_head),
                         ser_empty.eq(nxt_empty), ser_single.eq(nxt_single)]
            m.d.sync += [r.eq(s) for r, s in zip(ser_sc, nxt_sc)]
        with m.Elif(pop):
            m.d.sync += [sel.eq(_lowest(ser_rest, Pb)), ser_rest.eq(_drop_lowest(ser_rest)),
                         ser_empty.eq(ser_single), ser_single.eq(_drop_lowest(ser_rest) == 0)]
        item = Signal(sm.in_layout, name="ser_item")
        m.d.comb += [item.score.eq(Array(ser_sc)[sel]), item.row.eq(sel * HL + ser_head),
                     item.first.eq(ser_first.bit_select(sel, 1)),
                     item.last.eq(ser_last.bit_select(sel, 1))]
        deq = sm.i.valid & sm.i.ready
        m.d.comb += [sm.i.valid.eq(sq_n != 0), sm.i.payload.eq(sq[0])]
        with m.If(deq):
            m.d.sync += sq[0].eq(Mux(pop & (sq_n == 1), item, sq[1]))
            with m.If(pop):
                m.d.sync += sq[1].eq(item)
        with m.Elif(pop):
            with m.If(sq_n == 0):
                m.d.sync += sq[0].eq(item)
            with m.Else():
                m.d.sync += sq[1].eq(item)
        n_next = (sq_n + pop - deq)[:2]
        m.d.sync += [sq_n.eq(n_next), room.eq(n_next < 2)]

        # info row: [recip_h, max_h]..., pads 0 -- the softmax results of the finishing
        # lane arrive head by head (rows finish in order, one lane per key)
        info = _OutReg(m, self.info, W)
        o_head = Signal(range(HL), name="res_head")
        m.d.comb += o_head.eq(sm.o.payload.row % HL)
        is_last_head = o_head == H - 1
        m.d.comb += sm.o.ready.eq(~is_last_head | info.can_push)
        rcp = [Signal(signed(FM_W), name=f"rcp{h}") for h in range(H - 1)]
        mxs = [Signal(signed(FM_W), name=f"mx{h}") for h in range(H - 1)]
        with m.If(sm.o.valid & sm.o.ready):
            for h in range(H - 1):
                with m.If(o_head == h):
                    m.d.sync += [rcp[h].eq(sm.o.payload.recip), mxs[h].eq(sm.o.payload.max)]
        row_words = []
        for h in range(H):
            if h < H - 1:
                row_words += [rcp[h], mxs[h]]
            else:
                row_words += [sm.o.payload.recip, sm.o.payload.max]
        row_words += [Const(0, FM_W)] * (FBW - 2 * H)
        with m.If(sm.o.valid & is_last_head):
            with m.If(info.can_push):
                info.push(m, Cat(*row_words))
        return m


class AttentionAV(wiring.Component):
    """softmax·V from the score buffer and softmax-info streams; output rows in order."""

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "attention", FM_W, FM_FRAC_BITS, owner=self)
        self.cfg, self.g = cfg, geometry(cfg)
        s = _beat_sig(cfg)
        super().__init__({"v": In(s), "scores": In(s), "info": In(s), "out": Out(s),
                          "mul": Out(mul_client_signature(self.g))})

    def elaborate(self, platform):
        m = Module()
        g, cfg = self.g, self.cfg
        P, FB, FBW, H, HL, E = (g.lanes, g.feature_blocks, g.feature_block, g.heads,
                                g.head_lanes, g.entry_words)
        W = cfg.axi_width
        frac = cfg.formats.fm.frac
        T, QB = g.tokens, g.query_blocks

        # ------------------------------------------------ score unpacker (beats -> entry)
        # ``etake`` moves the unpacked entry into the producer's ``cur`` register, so the
        # next entry's beats arrive while the current one is in use.
        etake = Signal()
        lkey = Signal(range(T), name="lkey")
        lblk = Signal(range(QB), name="lblk")
        l_last_entry = (lkey == T - 1) & (lblk == QB - 1)
        with m.If(etake):
            m.d.sync += lkey.eq(Mux(lkey == T - 1, 0, lkey + 1))
            with m.If(lkey == T - 1):
                m.d.sync += lblk.eq(Mux(lblk == QB - 1, 0, lblk + 1))
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
            with m.If(etake):
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
            with m.If(etake):
                with m.If((sj == epb - 1) | l_last_entry):
                    m.d.sync += [sfull.eq(0), sj.eq(0)]
                with m.Else():
                    m.d.sync += sj.eq(sj + 1)

        # ------------------------------------------------ A producer (one A per cycle)
        # For every entry (b, v), head h, lane o: A = floor(exp(s - max)·recip) through the
        # shared exp datapath (exp_stages) and a registered multiply; lane v takes its info
        # row with entry (b, v).  It runs ahead of the V steps, limited by the collector.
        cur = Signal(E * FM_W, name="cur_entry")
        cur_v = Signal(name="cur_v")
        pkey = Signal(range(T), name="pkey")
        pblk = Signal(range(QB), name="pblk")
        ph = Signal(range(max(2, H)), name="ph")
        po = Signal(range(max(2, P)), name="po")
        # Every flag the producer steps on is a register set from registers one entry (or
        # one item) ahead (timing): ``pkey_last`` (key == T-1), ``need_info`` (this entry
        # brings lane ``key``'s info row, see _KeyRows).
        pkey_last = Signal(init=(T == 1), name="pkey_last")
        last_item = Signal(init=(H == 1 and P == 1), name="last_item")
        a_in = stream.Signature(unsigned(3 * FM_W)).create(path=("a_in",))
        a_out = stream.Signature(signed(FM_W)).create(path=("a_out",))
        item = a_in.valid & a_in.ready
        done_entry = item & last_item
        po_next = Mux(po == P - 1, 0, po + 1)
        ph_next = Mux(po == P - 1, Mux(ph == H - 1, 0, ph + 1), ph)
        with m.If(item):
            m.d.sync += last_item.eq((ph_next == H - 1) & (po_next == P - 1))
        rows = _KeyRows(m, g, done_entry, pkey_last, pblk, "a")
        need_info, lane_is = rows.need, Cat(*rows.lane_is)
        with m.If(done_entry):
            m.d.sync += pkey_last.eq(pkey == T - 2 if T > 1 else 1)
        m.d.comb += [a_in.valid.eq(cur_v & (~need_info | self.info.valid)),
                     self.info.ready.eq(done_entry & need_info),
                     etake.eq(avail & (~cur_v | done_entry))]
        with m.If(etake):
            m.d.sync += cur.eq(ent)
        # = 1 on etake, else 0 on done_entry (written without an enable: timing)
        m.d.sync += cur_v.eq(Mux(cur_v, avail | ~done_entry, avail))
        with m.If(item):
            m.d.sync += po.eq(Mux(po == P - 1, 0, po + 1))
            with m.If(po == P - 1):
                m.d.sync += ph.eq(Mux(ph == H - 1, 0, ph + 1))
            with m.If(last_item):
                m.d.sync += pkey.eq(Mux(pkey_last, 0, pkey + 1))
                with m.If(pkey_last):
                    m.d.sync += pblk.eq(Mux(pblk == QB - 1, 0, pblk + 1))
        rcs, mxs = [], []
        for o in range(P):
            rc = [Signal(signed(FM_W), name=f"rc{o}_{h}") for h in range(H)]
            mx = [Signal(signed(FM_W), name=f"mx{o}_{h}") for h in range(H)]
            with m.If(done_entry & need_info & lane_is[o]):
                m.d.sync += [rc[h].eq(_word(self.info.payload, 2 * h)) for h in range(H)]
                m.d.sync += [mx[h].eq(_word(self.info.payload, 2 * h + 1)) for h in range(H)]
            rcs += rc
            mxs += mx
        # word indices of the current item (po*H + ph, po*HL + ph) and "lane po's info row
        # comes with this entry" are registers, stepped with the item (timing)
        r_idx = Signal(range(max(2, P * H)), name="r_idx")
        s_idx = Signal(range(max(2, E)), name="s_idx")
        fresh = Signal(init=(P > 0), name="fresh")  # entry 0 brings lane 0's info row
        with m.If(item):
            m.d.sync += [r_idx.eq(Mux(po == P - 1, ph_next, r_idx + H)),
                         s_idx.eq(Mux(po == P - 1, ph_next, s_idx + HL))]
            with m.If(done_entry):  # the next entry's item 0 is lane 0: key 0 only
                m.d.sync += fresh.eq(pkey_last & rows.next_block_need)
            with m.Else():
                m.d.sync += fresh.eq(need_info & lane_is.bit_select(po_next, 1))
        rc_sel = Mux(fresh, Array([_word(self.info.payload, 2 * h) for h in range(H)])[ph],
                     Array(rcs)[r_idx])
        mx_sel = Mux(fresh, Array([_word(self.info.payload, 2 * h + 1) for h in range(H)])[ph],
                     Array(mxs)[r_idx])
        s_sel = Array([_word(cur, i) for i in range(E)])[s_idx]
        m.d.comb += a_in.payload.eq(Cat(s_sel, mx_sel, rc_sel))
        # the selected score, max and recip are registered, then the exp argument s - max
        # (timing: the word selects and the subtraction in separate stages)
        pipe = StallPipeline(m, a_in, a_out, prefix="a_")
        sr = pipe.reg(_word(a_in.payload, 0), "s")
        mr = pipe.reg(_word(a_in.payload, 1), "mx")
        pipe.carry("rc", _word(a_in.payload, 2))
        pipe.next()
        x = pipe.reg(_wrap32(sr - mr), "x")
        pipe.next()
        e = exp_stages(pipe, x)
        prod = pipe.reg(Cat(e, Const(0, 1)).as_signed() * pipe["rc"], "prod")
        pipe.next()
        pipe.finish(_wrap32(prod >> frac))
        self.a_latency = pipe.latency
        assert pipe.latency == A_PIPE_STAGES, (pipe.latency, A_PIPE_STAGES)

        # ------------------------------------------------ collector: P A values per head
        # Double-buffered: ``fill`` gathers the P lanes' A of the next head while ``hold``
        # waits for the step that starts the head.  The A pipeline's ready comes from two
        # registers (``fill`` not full, or ``hold`` free so that a full ``fill`` moves this
        # cycle), so no ready path runs from the V steps back through the A pipeline.
        fill = [Signal(signed(FM_W), name=f"grp{o}") for o in range(P)]
        hold = [Signal(signed(FM_W), name=f"hold{o}") for o in range(P)]
        gcnt = Signal(range(P + 1), name="gcnt")
        fill_full = Signal(name="fill_full")      # gcnt == P
        hold_v = Signal(name="hold_v")
        consume = Signal(name="a_consume")
        take = a_out.valid & a_out.ready
        move = fill_full & (~hold_v | consume)
        m.d.comb += a_out.ready.eq(~fill_full | ~hold_v)
        with m.If(take):
            m.d.sync += Array(fill)[Mux(fill_full, 0, gcnt)].eq(a_out.payload)
        with m.If(move):
            m.d.sync += [hold_v.eq(1), gcnt.eq(take), fill_full.eq(take & (P == 1))]
            m.d.sync += [h.eq(x) for h, x in zip(hold, fill)]
        with m.Else():
            with m.If(take):
                m.d.sync += [gcnt.eq(gcnt + 1), fill_full.eq(gcnt == P - 1)]
            with m.If(consume):
                m.d.sync += hold_v.eq(0)

        # ------------------------------------------------ V steps (issue -> retire)
        # Issue (stage 0): the V beat and each lane's A (the held group's at a head's first
        # block) are registered; stage 1: registered products; retire (AV_STEP_STAGES): the
        # accumulator row read, added and written, and the finishing lane's row pushed.
        step_in = stream.Signature(1).create(path=("av_step_in",))
        step_out = stream.Signature(1).create(path=("av_step_out",))
        issue = Signal(name="av_issue")
        ci = _Counters(m, g, issue)
        m.d.comb += [step_in.valid.eq(self.v.valid & (~ci.head_first | hold_v)),
                     step_in.payload.eq(0)]
        mul = self.mul
        vp = StallPipeline(m, step_in, step_out, input_allow=mul.grant, prefix="av_")
        m.d.comb += [issue.eq(vp.valid), self.v.ready.eq(issue),
                     consume.eq(issue & ci.head_first)]
        vp.carry("db", ci.db)
        for o in range(P):
            vp.carry(f"reset{o}", ci.key_is(o))
            vp.carry(f"emit{o}", ci.finishing(g, o))
        vp.carry("need_out", Cat(*[ci.finishing(g, o) for o in range(P)]).any())
        # stage 0 -> 1: the shared array registers the operands: x = lane o's A (the held
        # group's at a head's first block) in all 8 words, y = the V beat
        ax = []
        for o in range(P):
            aw = Signal(signed(FM_W), name=f"aw{o}")
            a_now = Signal(signed(FM_W), name=f"a_now{o}")
            m.d.comb += a_now.eq(Mux(ci.head_first, hold[o], aw))
            with m.If(issue):
                m.d.sync += aw.eq(a_now)
            ax += [a_now] * FBW
        m.d.comb += [mul.x.eq(Cat(*ax)), mul.y.eq(self.v.payload)]
        _drive_client(m, mul, want=step_in.valid, issue=issue, advance=vp.advance,
                      last=ci.last_step)
        s1 = vp.next()
        # stage 1 -> 2: the array's registered products (floored, wrapped)
        prods = _array_products(mul, P, FBW)
        m.d.comb += mul.busy.eq(s1 | vp.next())
        assert vp.stage == AV_STEP_STAGES, (vp.stage, AV_STEP_STAGES)
        out = _OutReg(m, self.out, W)
        retire = Signal(name="av_retire")
        vp.finish(Const(0, 1))
        m.d.comb += [step_out.ready.eq(~vp["need_out"] | out.can_push),
                     retire.eq(step_out.valid & step_out.ready)]
        out_sel = Const(0, W)
        for o in range(P):
            amem = memory.Memory(shape=unsigned(W), depth=FB, init=[])
            m.submodules[f"acc{o}"] = amem
            rd = amem.read_port(domain="comb")
            wr = amem.write_port()
            new_words = [_wrap32(Mux(vp[f"reset{o}"], 0, _word(rd.data, j)) + prods[o][j])
                         for j in range(FBW)]
            new_blk = Signal(W, name=f"acc_blk{o}")
            m.d.comb += [new_blk.eq(Cat(*new_words)), rd.addr.eq(vp["db"]),
                         wr.addr.eq(vp["db"]), wr.data.eq(new_blk), wr.en.eq(retire)]
            out_sel = Mux(vp[f"emit{o}"], new_blk, out_sel)
        with m.If(retire & vp["need_out"]):
            out.push(m, out_sel)
        return m


class Attention(wiring.Component):
    """Both attention phases; the score buffer and info rows go out (``s_out``, ``i_out``)
    and come back (``s_in``, ``i_in``) through the host's memory, as in Edge-MoE."""

    def __init__(self, cfg: AcceleratorConfig):
        require_fm(cfg, "attention", FM_W, FM_FRAC_BITS, owner=self)
        self.cfg = cfg
        s = _beat_sig(cfg)
        super().__init__({"q": In(s), "k": In(s), "s_out": Out(s), "i_out": Out(s),
                          "v": In(s), "s_in": In(s), "i_in": In(s), "o": Out(s)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.qk = qk = AttentionQK(self.cfg)
        m.submodules.av = av = AttentionAV(self.cfg)
        m.submodules.mul = mul = ProductArray(self.cfg)
        wiring.connect(m, qk.mul, mul.qk)
        wiring.connect(m, av.mul, mul.av)
        wiring.connect(m, wiring.flipped(self.q), qk.q)
        wiring.connect(m, wiring.flipped(self.k), qk.k)
        wiring.connect(m, qk.scores, wiring.flipped(self.s_out))
        wiring.connect(m, qk.info, wiring.flipped(self.i_out))
        wiring.connect(m, wiring.flipped(self.v), av.v)
        wiring.connect(m, wiring.flipped(self.s_in), av.scores)
        wiring.connect(m, wiring.flipped(self.i_in), av.info)
        wiring.connect(m, av.out, wiring.flipped(self.o))
        return m
