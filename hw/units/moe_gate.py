"""``MoeGate``: MoE gating and dispatch (spec §4.6), bit-exact with :mod:`moevit.golden.moe`.

One layer: the gate weights ([E][dim] int16, spec §7 ``moe_w_gate`` of the chosen task) arrive
as 256-bit beats on ``w``; the LN2 rows arrive on ``x`` as 8-wide fm_t blocks in token order.
Then the unit offers the list of non-empty experts on ``meta`` ({expert, length, last},
ascending) and serves queue entries {token, score} on ``rd_req`` → ``rd_resp`` (expert,
index), until the consumer hands the queues back on ``release``.  Pipelines:

1. **Logits** (``x``, one block per clock): E × feature_block products per clock, each on
   one DSP48E2 plus LUTs (:class:`~moevit.hw.units.dsp_mul.FloorProductPipe`:
   x = ah·2^5 + al, ⌊x·w/2^14⌋ = ⌊(ah·w + ⌊al·w/2^5⌋)/2^9⌋, exact; the LUT half's adds
   one per stage), the floored product registered, a registered adder tree per expert, an
   accumulator; a token's E logits go into the logit buffer (``buffer_tokens`` rows).
2. **Scan**: groups of ``slots`` tokens, items (expert e, slot r) with r inner, so one slot
   recurs every ``slots`` items.  Per item: the running max, the exp argument of the §4.5.3
   update, and the strict top-k insertion, all from per-slot registers.
3. **Exp** (an :class:`~moevit.hw.units.exp.Exp` instance) then the **sum loop**
   (sum = ⌊sum·e⌋ + 1.0 on a new max, sum + e otherwise; 4 partial products, loop span 4
   stages = ``slots``), which hands S, M and the top-k list on at each token's last expert.
4. A serialiser (top_k items per token) → **Exp** of wrap32(g_k − M) → **Divide**
   (trunc0(e·2^22 / S), an instance of :class:`~moevit.hw.units.divide.Divide`) → the
   queue writer (entry (token, p) at expert·tokens + length).

Geometry, stage counts and the cycle model: :mod:`moevit.hw.units.moe_gate_geometry`.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.common import silence
from moevit.hw.units.divide import Divide
from moevit.hw.units.dsp_mul import FloorProductPipe
from moevit.hw.units.exp import Exp
from moevit.hw.units.moe_gate_geometry import (READ_STAGES, SCAN_STAGES, SPLIT_STAGES,
                                               SUM_LOOP_STAGES, SUM_STAGES, MoeGateGeometry,
                                               gate_cycles)
from moevit.hw.units.pipeline import StallPipeline
from moevit.hw.units.side_channel import SideChannel

#: split point of the sum-loop product: sum = ah·2^17 + al, e = bh·2^17 + bl, so that every
#: partial product fits one DSP48E2 (27 × 18)
SUM_SPLIT = 17


def gate_model(cfg: AcceleratorConfig, **kw) -> dict:
    """:func:`~moevit.hw.units.moe_gate_geometry.gate_cycles` with the latencies of the
    ``Exp`` and ``Divide`` units this config instantiates."""
    exp, div = Exp(cfg), Divide(cfg)
    silence(exp)   # built only to read their latency
    silence(div)
    return gate_cycles(cfg, exp_latency=exp.latency, div_latency=div.latency, **kw)


class MoeGate(wiring.Component):
    """Gate logits, online softmax, strict top-k, probabilities and per-expert queues.

    Ports: ``x`` (In, 256-bit beats of 8 fm_t), ``w`` (In, 256-bit beats of 16 int16 gate
    weights), ``meta`` (Out, {expert, length, last}), ``rd_req`` (In, {expert, index}),
    ``rd_resp`` (Out, {token, score}), ``release`` (In, payload ignored), ``overflow``
    (Out, a queue would exceed ``tokens`` entries; only possible when a never-displaced
    initial top-k entry repeats expert 0 for a token).
    """

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        try:
            self.g = MoeGateGeometry.from_config(cfg)
        except ConfigError:
            silence(self)
            raise
        g = self.g
        self.meta_layout = data.StructLayout({"expert": unsigned(g.expert_bits),
                                              "length": unsigned(g.length_bits), "last": 1})
        self.req_layout = data.StructLayout({"expert": unsigned(g.expert_bits),
                                             "index": unsigned(g.token_bits)})
        self.entry_layout = data.StructLayout({"token": unsigned(g.token_bits),
                                               "score": signed(g.fm_width)})
        beat = stream.Signature(cfg.axi_width)
        super().__init__({
            "x": In(beat), "w": In(beat),
            "meta": Out(stream.Signature(self.meta_layout)),
            "rd_req": In(stream.Signature(self.req_layout)),
            "rd_resp": Out(stream.Signature(self.entry_layout)),
            "release": In(stream.Signature(1)),
            "overflow": Out(1),
        })

    @property
    def read_latency(self) -> int:
        """Cycles from an ``rd_req`` handshake to its ``rd_resp`` (ready high)."""
        return READ_STAGES

    # ------------------------------------------------------------------ layouts
    def _list_layout(self):
        g = self.g
        return {"sc": data.ArrayLayout(signed(g.fm_width), g.top_k),
                "ix": data.ArrayLayout(unsigned(g.expert_bits), g.top_k)}

    def elaborate(self, platform):
        m = Module()
        g = self.g
        W = g.fm_width
        T, R, D, E, K = g.tokens, g.slots, g.buffer_tokens, g.experts, g.top_k
        NB = g.feature_blocks
        fm_min, one = -(1 << (W - 1)), 1 << g.fm_frac

        release = Signal()
        m.d.comb += release.eq(self.release.valid & self.release.ready)

        # ============================================================ gate weights
        loaded = Signal()
        wexp = Signal(range(E))
        waddr = Signal(range(g.words_per_expert))
        wtake = self.w.valid & self.w.ready
        m.d.comb += self.w.ready.eq(~loaded)
        wmem = []
        for e in range(E):
            mem = memory.Memory(shape=unsigned(self.cfg.axi_width), depth=g.words_per_expert,
                                init=[])
            m.submodules[f"wgate{e}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(waddr), wp.data.eq(self.w.payload),
                         wp.en.eq(wtake & (wexp == e))]
            wmem.append(mem)
        with m.If(wtake):
            last_word = waddr == g.words_per_expert - 1
            m.d.sync += waddr.eq(Mux(last_word, 0, waddr + 1))
            with m.If(last_word):
                m.d.sync += wexp.eq(Mux(wexp == E - 1, 0, wexp + 1))
                with m.If(wexp == E - 1):
                    m.d.sync += loaded.eq(1)

        # ============================================================ logits (MAC)
        tok = Signal(range(T + 1))          # tokens of this layer fully accepted
        db = Signal(range(NB))
        # x is open while the weights are loaded, the layer has tokens left and the logit
        # buffer has room: xroom = (first token that may not enter yet) - tok - 1 counts
        # the room, its sign bit closes x (registered flags, no comparator on x.ready)
        layer_open = Signal(init=1)
        xroom = Signal(signed(max(T, D).bit_length() + 2), init=D - 1)
        x_open = Signal()
        m.d.comb += x_open.eq(loaded & layer_open & ~xroom[-1])
        tok_in = Signal()                    # a token's last block is taken this cycle
        grp_out = Signal()                   # the scan finished a group this cycle
        m.d.sync += xroom.eq(xroom - tok_in + Mux(grp_out, R, 0))
        sink = stream.Signature(1).create()
        m.d.comb += sink.ready.eq(1)
        pipe = StallPipeline(m, self.x, sink, input_allow=x_open, prefix="mac_")
        with m.If(pipe.valid):
            m.d.sync += db.eq(Mux(db == NB - 1, 0, db + 1))
            with m.If(db == NB - 1):
                m.d.sync += tok.eq(tok + 1)
                m.d.comb += tok_in.eq(1)
                with m.If(tok == T - 1):
                    m.d.sync += [loaded.eq(0), layer_open.eq(0)]
        bpb = g.blocks_per_beat
        rports = []
        for e in range(E):
            rp = wmem[e].read_port(domain="sync")
            m.d.comb += [rp.addr.eq(db // bpb), rp.en.eq(pipe.advance)]
            rports.append(rp)
        pipe.carry("x", self.x.payload)
        pipe.carry("first", db == 0)
        pipe.carry("last", db == NB - 1)
        pipe.carry("sel", db % bpb)
        pipe.carry("slot", tok[:max(1, (D - 1).bit_length())] if D > 1 else Const(0, 1))
        pipe.next()
        # ---- stage 1: weight words read; select this block's weights, register operands
        FB, ww, wf = g.feature_block, g.w_width, g.w_frac
        xr = [pipe.reg(pipe["x"][W * j:W * (j + 1)].as_signed(), f"x{j}", shape=signed(W))
              for j in range(FB)]
        pipe.drop("x")
        wsel = pipe["sel"]
        wreg = []
        for e in range(E):
            blk = rports[e].data.word_select(wsel, FB * ww)
            wreg.append([pipe.reg(blk[ww * j:ww * (j + 1)].as_signed(), f"w{e}_{j}",
                                  shape=signed(ww)) for j in range(FB)])
        pipe.drop("sel")
        pipe.next()
        # ---- stages 2..: split products (x = ah·2^5 + al: ah × w on one DSP48E2, al × w as
        # 2-bit LUT partial products summed in pairs, one add per stage; dsp_mul), then the
        # floored product floor(x·w / 2^wf) mod 2^W registered
        prods = [[FloorProductPipe(xr[j], wreg[e][j], wf, f"p{e}_{j}", width=W)
                  for j in range(FB)] for e in range(E)]
        assert prods[0][0].stages == SPLIT_STAGES, prods[0][0].stages
        for _ in range(SPLIT_STAGES):
            for pe in prods:
                for p in pe:
                    p.step(pipe.reg)
            pipe.next()
        terms = [[pipe.reg(p.value, f"prod{e}_{j}", shape=unsigned(W)) for j, p in enumerate(pe)]
                 for e, pe in enumerate(prods)]
        pipe.next()
        # ---- then the adder tree per expert (mod 2^W), one level per stage
        for lvl in range(g.tree_levels):
            nxt = []
            for e in range(E):
                t = terms[e]
                pairs = [(t[i] + (t[i + 1] if i + 1 < len(t) else 0))[:W]
                         for i in range(0, len(t), 2)]
                nxt.append([pipe.reg(v, f"t{lvl}_{e}_{i}", shape=unsigned(W))
                            for i, v in enumerate(pairs)])
            terms = nxt
            pipe.next()
        # ---- last tree stage: accumulate over the row's blocks; write the token's logits
        lbuf = memory.Memory(shape=unsigned(E * W), depth=D, init=[])
        m.submodules.logits = lbuf
        lw = lbuf.write_port()
        tok_written = Signal(range(T + 1))
        acc_new = []
        for e in range(E):
            acc = Signal(W, name=f"acc{e}")
            new = Signal(W, name=f"acc_new{e}")
            m.d.comb += new.eq(Mux(pipe["first"], 0, acc) + terms[e][0])
            with m.If(pipe.valid):
                m.d.sync += acc.eq(new)
            acc_new.append(new)
        write_tok = pipe.valid & pipe["last"]
        m.d.comb += [lw.addr.eq(pipe["slot"]), lw.data.eq(Cat(*acc_new)), lw.en.eq(write_tok)]
        with m.If(write_tok):
            m.d.sync += tok_written.eq(tok_written + 1)
        tok_wr = Signal()
        m.d.comb += tok_wr.eq(write_tok)
        assert pipe.stage == g.mac_stages, (pipe.stage, g.mac_stages)
        m.d.comb += [sink.valid.eq(0), sink.payload.eq(0)]

        # ============================================================ scan
        side_layout = data.StructLayout({
            "slot": unsigned(g.slot_bits), "new_max": 1, "valid": 1, "last": 1, "first": 1,
            "max": signed(W), **self._list_layout(), "token": unsigned(g.token_bits)})
        exp_sc = SideChannel(Exp(self.cfg), side_layout, name="exp")
        m.submodules.exp_scan = exp_sc
        sg = Signal(range(g.groups + 1))          # group being scanned (= groups done)
        se = Signal(range(E))
        sr = Signal(range(R))
        tbase = Signal(range(g.groups * R + 1))   # sg * R
        sbase = Signal(range(D))                  # sg * R mod D
        # pending = tokens written - tokens the current group needs; its sign bit holds
        # the scan (a register, not a comparison on the valid path)
        need = Signal(range(T + 1), init=min(R, T))
        pending = Signal(signed(T.bit_length() + 2), init=-min(R, T))
        scan_more = Signal(init=1)
        src = stream.Signature(1).create()
        m.d.comb += [src.payload.eq(0), src.valid.eq(scan_more & ~pending[-1])]
        need_next = Mux(need + R > T, T, need + R)
        sp = StallPipeline(m, src, exp_sc.i, prefix="scan_")
        with m.If(sp.valid):
            m.d.sync += sr.eq(Mux(sr == R - 1, 0, sr + 1))
            with m.If(sr == R - 1):
                m.d.sync += se.eq(Mux(se == E - 1, 0, se + 1))
                with m.If(se == E - 1):
                    m.d.sync += [sg.eq(sg + 1), tbase.eq(tbase + R),
                                 sbase.eq((sbase + R)[:len(sbase)] if D > 1 else 0),
                                 need.eq(need_next)]
                    m.d.comb += grp_out.eq(1)
                    with m.If(sg == g.groups - 1):
                        m.d.sync += scan_more.eq(0)
        m.d.sync += pending.eq(pending + tok_wr - Mux(grp_out, need_next - need, 0))
        lr = lbuf.read_port(domain="sync")
        m.d.comb += [lr.addr.eq((sbase + sr)[:len(lw.addr)]), lr.en.eq(sp.advance)]
        token0 = tbase + sr
        sp.carry("e", se)
        sp.carry("slot", sr)
        sp.carry("token", token0[:g.token_bits])
        sp.carry("valid", token0 < T)
        sp.carry("first", se == 0)
        sp.carry("last", se == E - 1)
        sp.next()
        # ---- stage 1: select the logit of expert e from the token's word
        s = sp.reg(lr.data.word_select(sp["e"], W).as_signed(), "s", shape=signed(W))
        sp.next()
        # ---- stage 2: per-slot state (running max, top-k list): read, update, write
        # The slots reach this stage strictly in turn (0, 1, .., R-1, 0, ..: every scan item
        # passes, a layer is groups·E·R items), so the per-slot state is a rotating register
        # file: entry 0 is always the current item's slot (no slot-select multiplexer).
        bias = [Signal(signed(W), name=f"bias{r}") for r in range(R)]
        lsc = [[Signal(signed(W), name=f"lsc{r}_{j}") for r in range(R)] for j in range(K)]
        lix = [[Signal(g.expert_bits, name=f"lix{r}_{j}") for r in range(R)]
               for j in range(K)]
        r_, first, e_ = sp["slot"], sp["first"], sp["e"]
        cur_b = Mux(first, fm_min, bias[0])
        cur_sc = [Mux(first, fm_min, lsc[j][0]) for j in range(K)]
        cur_ix = [Mux(first, 0, lix[j][0]) for j in range(K)]
        d = cur_b - s                                     # exact W+1 bits
        new_max = d < 0
        arg = Mux(new_max, d, s - cur_b)[:W].as_signed()  # wrap32(±d), both in parallel
        new_b = Mux(new_max, s, cur_b)
        # strict insertion: gt is monotone (the list is descending), so entry j takes the
        # new score where gt[j] first holds, the entry above where gt[j-1] also holds
        gt = [s > cur_sc[j] for j in range(K)]
        new_sc, new_ix = [], []
        for j in range(K):
            if j == 0:
                new_sc.append(Mux(gt[0], s, cur_sc[0]))
                new_ix.append(Mux(gt[0], e_, cur_ix[0]))
            else:
                new_sc.append(Mux(gt[j], Mux(gt[j - 1], cur_sc[j - 1], s), cur_sc[j]))
                new_ix.append(Mux(gt[j], Mux(gt[j - 1], cur_ix[j - 1], e_), cur_ix[j]))
        def rotate(regs, new):
            return [a.eq(b) for a, b in zip(regs, regs[1:] + [new])]
        with m.If(sp.valid & sp.advance):
            m.d.sync += rotate(bias, new_b)
            for j in range(K):
                m.d.sync += rotate(lsc[j], new_sc[j]) + rotate(lix[j], new_ix[j])
        side = {"slot": r_, "new_max": new_max, "valid": sp["valid"], "last": sp["last"],
                "first": first, "max": new_b, "token": sp["token"]}
        regs = {k: sp.reg(v, "o_" + k) for k, v in side.items()}
        o_arg = sp.reg(arg, "o_arg", shape=signed(W))
        o_sc = [sp.reg(v, f"o_sc{j}", shape=signed(W)) for j, v in enumerate(new_sc)]
        o_ix = [sp.reg(v, f"o_ix{j}", shape=unsigned(g.expert_bits))
                for j, v in enumerate(new_ix)]
        for k in list(sp._carried):
            sp.drop(k)
        sp.next()
        assert sp.stage == SCAN_STAGES
        ep = exp_sc.i.payload
        m.d.comb += [exp_sc.i.valid.eq(sp.valid), ep.x.eq(o_arg)]
        m.d.comb += [getattr(ep.side, k).eq(v) for k, v in regs.items()]
        m.d.comb += [ep.side.sc[j].eq(o_sc[j]) for j in range(K)]
        m.d.comb += [ep.side.ix[j].eq(o_ix[j]) for j in range(K)]

        # ============================================================ sum loop
        sum_layout = data.StructLayout({
            "S": signed(W), "arg": data.ArrayLayout(signed(W), K),
            "ix": data.ArrayLayout(unsigned(g.expert_bits), K), "token": unsigned(g.token_bits)})
        sums_out = stream.Signature(sum_layout).create()
        up = StallPipeline(m, exp_sc.o, sums_out, prefix="sum_")
        xi = exp_sc.o.payload
        up.carry("ex", xi.y[:W - 1])                       # exp result: 0 .. 2^31 - 1
        for k in ("slot", "new_max", "valid", "last", "first", "max", "token"):
            up.carry(k, getattr(xi.side, k))
        for j in range(K):
            up.carry(f"sc{j}", xi.side.sc[j])
            up.carry(f"ix{j}", xi.side.ix[j])
        up.next()
        # ---- stage 1: read the slot's running sum; register the product operands
        for j in range(K):   # numerator exp arguments wrap32(g_k - M), off the serialiser
            up.carry(f"arg{j}", (up[f"sc{j}"] - up["max"])[:W].as_signed())
            up.drop(f"sc{j}")
        up.drop("max")
        sums = Array(Signal(signed(W), name=f"sum{r}") for r in range(R))
        total = Mux(up["first"], 0, sums[up["slot"]])
        a = up.reg(total, "a", shape=signed(W))
        up.next()
        h = SUM_SPLIT
        b = up["ex"]
        al, ah = a[:h], a[h:].as_signed()
        bl, bh = b[:h], b[h:]
        # ---- stage 2: partial products (each fits one DSP48E2)
        p00 = up.reg(al * bl, "p00")
        pmid = [up.reg(al * bh, "p01"), up.reg(ah * bl, "p10")]
        p11 = up.reg(ah * bh, "p11")
        up.carry("a", a)
        up.next()
        # ---- stage 3: high part (p11·2^h + p01 + p10)
        hm = up.reg((p11 << h) + pmid[0] + pmid[1], "hm")
        up.carry("p00", p00)
        up.next()
        # ---- stage 4: product, new sum, state write
        prod = (hm << h) + up["p00"]
        rescaled = ((prod >> g.fm_frac) + one)[:W]
        added = (up["a"] + up["ex"])[:W]
        new_total = Mux(up["new_max"], rescaled, added).as_signed()
        with m.If(up.valid & up.advance):
            m.d.sync += sums[up["slot"]].eq(new_total)
        assert up.stage == SUM_LOOP_STAGES and R >= SUM_LOOP_STAGES
        outv = up.reg(up.valid & up["last"] & up["valid"], "outv")
        o_total = up.reg(new_total, "oS", shape=signed(W))
        for k in ("ex", "a", "p00", "slot", "new_max", "valid", "last", "first"):
            up.drop(k)
        up.next()
        # (carried values were re-registered by next())
        assert up.stage == SUM_STAGES
        sp_ = sums_out.payload
        m.d.comb += [sums_out.valid.eq(up.valid & outv), sp_.S.eq(o_total),
                     sp_.token.eq(up["token"])]
        m.d.comb += [sp_.arg[j].eq(up[f"arg{j}"]) for j in range(K)]
        m.d.comb += [sp_.ix[j].eq(up[f"ix{j}"]) for j in range(K)]

        # ============================================================ serialiser
        num_side = data.StructLayout({"expert": unsigned(g.expert_bits),
                                      "token": unsigned(g.token_bits), "S": signed(W)})
        num_sc = SideChannel(Exp(self.cfg), num_side, name="exp")
        m.submodules.exp_num = num_sc
        # the R tokens of a group finish on consecutive items; a FIFO absorbs the burst
        # and the serialiser emits top_k items per token without gaps
        # Nothing downstream stalls (the queue writer takes every result), so the
        # serialiser drains a token every top_k <= E cycles and a group's R tokens leave
        # within the E·R cycles before the next group's: the FIFO never holds more than R,
        # and the sum pipeline's ready is a constant (no ready chain back to the scan).
        assert K <= E
        sfifo = fifo.SyncFIFO(width=Shape.cast(sum_layout).width, depth=2 * R)
        m.submodules.sums_fifo = sfifo
        m.d.comb += [sfifo.w_data.eq(sums_out.payload), sfifo.w_en.eq(sums_out.valid),
                     sums_out.ready.eq(1)]
        cur = data.View(sum_layout, sfifo.r_data)
        kj = Signal(range(K))
        ov = Signal()
        od_x = Signal(signed(W))
        od_side = Signal(num_side)
        m.d.comb += [num_sc.i.valid.eq(ov), num_sc.i.payload.x.eq(od_x),
                     num_sc.i.payload.side.eq(od_side)]
        can = ~ov | num_sc.i.ready
        with m.If(num_sc.i.ready):
            m.d.sync += ov.eq(0)
        with m.If(can & sfifo.r_rdy):
            m.d.sync += [ov.eq(1),
                         od_x.eq(cur.arg[kj]),
                         od_side.expert.eq(cur.ix[kj]),
                         od_side.token.eq(cur.token), od_side.S.eq(cur.S),
                         kj.eq(Mux(kj == K - 1, 0, kj + 1))]
            m.d.comb += sfifo.r_en.eq(kj == K - 1)

        # ============================================================ divide
        div_side = data.StructLayout({"expert": unsigned(g.expert_bits),
                                      "token": unsigned(g.token_bits)})
        div_sc = SideChannel(Divide(self.cfg), div_side, name="div")
        m.submodules.div = div_sc
        no = num_sc.o.payload
        m.d.comb += [div_sc.i.valid.eq(num_sc.o.valid), num_sc.o.ready.eq(div_sc.i.ready),
                     div_sc.i.payload.x.a.eq(no.y), div_sc.i.payload.x.b.eq(no.side.S),
                     div_sc.i.payload.side.expert.eq(no.side.expert),
                     div_sc.i.payload.side.token.eq(no.side.token)]

        # ============================================================ queues
        qmem = memory.Memory(shape=self.entry_layout, depth=g.queue_words, init=[])
        m.submodules.queues = qmem
        qw = qmem.write_port()
        QS = g.queue_stride
        base = Array(Const(e * QS, range(g.queue_words + 1)) for e in range(E))
        # per-expert write pointers e·stride + length: a full queue keeps pointing at its
        # spare slot, so the writer never needs the full flag (the entry is dropped there)
        wptr = Array(Signal(range(g.queue_words), init=e * QS, name=f"wptr{e}")
                     for e in range(E))
        lens = Array(Signal(range(T + 1), name=f"len{e}") for e in range(E))
        entries = Signal(range(T * K + 1))
        routed = Signal()
        overflow = Signal()
        m.d.comb += [self.overflow.eq(overflow), div_sc.o.ready.eq(1)]
        do = div_sc.o.payload
        ex_ = do.side.expert
        fulls = Array(Signal(name=f"full{e}") for e in range(E))
        w_en = Signal()
        w_addr = Signal(range(g.queue_words))
        w_data = Signal(self.entry_layout)
        w_any = Signal()
        m.d.sync += [w_any.eq(div_sc.o.valid), w_en.eq(div_sc.o.valid),
                     w_addr.eq(wptr[ex_]), w_data.token.eq(do.side.token),
                     w_data.score.eq(do.y)]
        # per-expert sticky drop flags, ORed one cycle later (no E:1 multiplexer)
        drops = Signal(E)
        m.d.sync += drops.eq(drops | Cat(*[div_sc.o.valid & (ex_ == e) & fulls[e]
                                           for e in range(E)]))
        m.d.sync += overflow.eq(drops.any())
        # per-expert enables from the expert's own flag (no E:1 multiplexer on the way)
        inc = Signal(E)
        m.d.comb += inc.eq(Cat(*[div_sc.o.valid & (ex_ == e) & ~fulls[e] for e in range(E)]))
        for e in range(E):
            with m.If(inc[e]):
                m.d.sync += [lens[e].eq(lens[e] + 1), fulls[e].eq(lens[e] == T - 1),
                             wptr[e].eq(wptr[e] + 1)]
        m.d.comb += [qw.addr.eq(w_addr), qw.data.eq(w_data), qw.en.eq(w_en)]
        with m.If(w_any):   # routed: a register set with the last entry (no comparator)
            m.d.sync += entries.eq(entries + 1)
            with m.If(entries == T * K - 1):
                m.d.sync += routed.eq(1)

        # ---- read port: {expert, index} -> {token, score}
        rpipe = StallPipeline(m, self.rd_req, self.rd_resp, prefix="rd_")
        raddr = rpipe.reg(base[self.rd_req.payload.expert] + self.rd_req.payload.index,
                          "addr", shape=range(g.queue_words))
        rpipe.next()
        qr = qmem.read_port(domain="sync")
        m.d.comb += [qr.addr.eq(raddr), qr.en.eq(rpipe.advance)]
        rpipe.next()
        rpipe.finish(qr.data)
        assert rpipe.latency == READ_STAGES

        # ============================================================ meta, release
        nonempty = Signal(E)           # registered: set with a queue's first entry
        m.d.sync += nonempty.eq(nonempty | inc)
        last_ne = Signal(range(E))     # highest non-empty expert (stable once routed)
        for e in range(E):
            with m.If(nonempty[e]):
                m.d.sync += last_ne.eq(e)
        me = Signal(range(E))
        meta_done = Signal()
        # the meta scan shifts a copy of the non-empty mask: bit 0 is expert me's (a FF)
        scan_mask = Signal(E)
        with m.If(~routed):
            m.d.sync += scan_mask.eq(nonempty | inc)
        mv = Signal()
        md = Signal(self.meta_layout)
        m.d.comb += [self.meta.valid.eq(mv), self.meta.payload.eq(md)]
        mcan = ~mv | self.meta.ready
        with m.If(self.meta.ready):
            m.d.sync += mv.eq(0)
        with m.If(routed & ~meta_done & mcan):
            m.d.sync += scan_mask.eq(scan_mask >> 1)
            with m.If(scan_mask[0]):
                m.d.sync += [mv.eq(1), md.expert.eq(me), md.length.eq(lens[me]),
                             md.last.eq(me == last_ne)]
            m.d.sync += me.eq(Mux(me == E - 1, 0, me + 1))
            with m.If(me == E - 1):
                m.d.sync += meta_done.eq(1)
        m.d.comb += self.release.ready.eq(meta_done & (~mv | self.meta.ready))
        with m.If(release):
            m.d.sync += [tok.eq(0), layer_open.eq(1), xroom.eq(D - 1), tok_written.eq(0),
                         sg.eq(0), se.eq(0), sr.eq(0), tbase.eq(0), sbase.eq(0),
                         need.eq(min(R, T)), pending.eq(-min(R, T)), scan_more.eq(1),
                         entries.eq(0), routed.eq(0), overflow.eq(0), drops.eq(0),
                         meta_done.eq(0), me.eq(0),
                         nonempty.eq(0), last_ne.eq(0)]
            m.d.sync += [lens[e].eq(0) for e in range(E)]
            m.d.sync += [fulls[e].eq(0) for e in range(E)]
            m.d.sync += [wptr[e].eq(e * QS) for e in range(E)]
        return m
