"""The accelerator core: the datapath units, run by a sequencer over AXI burst masters.

:class:`SequencedCore` sits between the control block (:mod:`moevit.hw.top.control`) and the
memory ports (:class:`~moevit.hw.top.axi_master.AxiMasterPort`).  It runs the program of
:mod:`moevit.hw.top.program` (spec §6.2) from a ROM, one stage at a time, every tensor
round-tripping through DRAM in its spec §7 layout (as Edge-MoE does; so a ``debug_id`` stop
leaves every buffer as the host expects it):

* per stage, one descriptor generator per channel (:func:`_descriptor_generator`) turns the
  ROM entry's access patterns into ``(addr, beats)`` descriptors for its reader or writer;
* a stream router connects reader data to the stage's unit inputs and unit outputs to the
  writers (linear weights and biases share one reader, split by beat count);
* the stage ends when every descriptor is issued, every command taken, and no reader or
  writer has anything outstanding; then the ``stage`` register takes its ``debug_id`` and a
  matching ``debug_id`` on the first image ends the run;
* the MoE stage runs an expert FSM (:class:`_MoeSequencer`): zero the output, the gate over
  the LN2 rows, capture the gate's list of non-empty experts, then per used expert
  (ascending): FC1 + GELU gathered by token and scattered into ``tmp_hidden``, FC2 gathered by
  token with score-accumulate into ``tmp3``.  A weight streamer loads the passes' weights
  ping/pong (FC1 → bank 0, FC2 → bank 1) one load ahead of the compute, so an expert's FC2
  weights arrive while its FC1 runs and the next expert's FC1 while its FC2 runs; each used
  expert's weights are read once, unused experts never.
* a linear stage's weights (and biases) load during the stage before it (the program's
  :func:`~moevit.hw.top.program.prefetch_weights`): that stage's ``wop`` sends the engine the
  next pass's ``wcmd`` and its weight reader streams the next pass's weights into the other
  bank while it runs.  The engine loads a bank only when it is free and computes only from a
  loaded one, so this needs no interlock here; the ``debug_id`` stop stage drops its load
  ahead, so no loaded bank outlives a run.
* K (Q·Kᵀ stage, reader R_B) and V (softmax·V stage, reader R_A) are read from DRAM once and
  pass through one :class:`~moevit.hw.units.stream_replay.StreamReplay`, which gives the
  attention the tensor once per query block (the ROM entry's ``replay`` beats and passes).

The patch embedding runs on the linear engine (pixel mode, the patch gather's rows with
its all-zero cls row first, the engine's ``cls`` mode so that token 0 is pos_embed[0]).
Before the first image, ``reload_one_time_weights`` loads the patch-embedding weights into
the engine's patch bank (bank 2, kept by every patch pass; after a reset of the engine and
the gather); without it the weights of an earlier run stay, and before any load the bank
gets zeros (as the behavioural device).
The batched schedule (``mode`` bit 0) is not implemented in this RTL: the bit is stored and
ignored; the cycle model reports what it would gain.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, ResetInserter, Shape, Signal, unsigned
from amaranth.lib import data, fifo, memory

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.top import program as prog
from moevit.hw.top.axi_master import BEATS_WIDTH
from moevit.hw.units.attention import Attention
from moevit.hw.units.layernorm import LayerNorm
from moevit.hw.units.linear import Linear, layouts
from moevit.hw.units.linear_schedule import PATCH_BANK, geometry, patch_in
from moevit.hw.units.moe_gate import MoeGate
from moevit.hw.units.patch_gather import PatchGather
from moevit.hw.units.residual import Residual
from moevit.hw.units.stream_replay import StreamReplay

ADDR_W = 64
OFFSET_W = 32
COUNT_W = 8


#: a linear pass in the ROM (wide fields: each engine's command takes the bits it has)
OP_LAYOUT = data.StructLayout({"bank": 2, "in_tiles": 16, "out_tiles": 16, "tokens": 16,
                               "gelu": 1, "score": 1, "add": 1, "keep": 1, "attn_bias": 1,
                               "pixel": 1, "cls": 1})
#: the weight load a stage issues (its own pass's, or with ``ahead`` the next stage's)
WOP_LAYOUT = data.StructLayout({"valid": 1, "ahead": 1, "bank": 2, "in_tiles": 16,
                                "out_tiles": 16, "attn_bias": 1})


def _assign_fields(dst, src) -> list:
    """``dst.f = src.f`` for every field of ``dst``'s layout (a narrower command)."""
    return [getattr(dst, name).eq(getattr(src, name)) for name, _ in dst.shape()]


def slot_layout() -> data.StructLayout:
    return data.StructLayout({
        "valid": 1, "ptr": unsigned(max(1, (len(prog.POINTERS) - 1).bit_length())),
        "offset": unsigned(OFFSET_W), "beats": unsigned(BEATS_WIDTH),
        "inner": unsigned(COUNT_W), "inner_stride": unsigned(OFFSET_W),
        "outer": unsigned(COUNT_W), "outer_stride": unsigned(OFFSET_W)})


def entry_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """One ROM entry: a stage of :func:`moevit.hw.top.program.program`."""
    slots = data.ArrayLayout(slot_layout(), prog.SLOTS)
    return data.StructLayout({
        "kind": unsigned(max(1, (len(prog.KINDS) - 1).bit_length())),
        "debug_id": unsigned(16),
        "reads": data.ArrayLayout(slots, prog.READ_CHANNELS),
        "writes": data.ArrayLayout(slots, prog.WRITE_CHANNELS),
        "op": OP_LAYOUT,
        "wop": WOP_LAYOUT,
        "w_beats": unsigned(BEATS_WIDTH), "x_row_beats": unsigned(16),
        "moe": data.StructLayout({k: unsigned(OFFSET_W) for k in
                                  ("gate_offset", "w1_offset", "b1_offset", "w2_offset",
                                   "b2_offset")}),
        "replay": data.StructLayout({"beats": unsigned(BEATS_WIDTH),
                                     "passes": unsigned(cfg.query_blocks.bit_length())}),
    })


def _slot_const(d: prog.Desc | None) -> dict:
    if d is None:
        return {"valid": 0}
    for what, n in (("inner", d.inner), ("outer", d.outer)):
        if not 1 <= n < 1 << COUNT_W:
            raise ConfigError(f"descriptor {d}: {what} count {n} outside 1..{(1 << COUNT_W) - 1}")
    return {"valid": 1, "ptr": prog.POINTERS.index(d.ptr), "offset": d.offset,
            "beats": d.beats, "inner": d.inner, "inner_stride": d.inner_stride,
            "outer": d.outer, "outer_stride": d.outer_stride}


def _channel_slots(descs: tuple) -> list[dict]:
    if len(descs) > prog.SLOTS:
        raise ConfigError(f"a stage channel has {len(descs)} descriptors; at most {prog.SLOTS}")
    return [_slot_const(descs[i] if i < len(descs) else None) for i in range(prog.SLOTS)]


def rom_entry(st: prog.Stage) -> dict:
    """The ROM initialiser of one stage."""
    e = {"kind": st.code, "debug_id": st.debug_id,
         "reads": [_channel_slots(st.reads.get(c, ())) for c in range(prog.READ_CHANNELS)],
         "writes": [_channel_slots(st.writes.get(c, ())) for c in range(prog.WRITE_CHANNELS)]}
    if st.linear is not None:
        op = st.linear
        e["op"] = {"bank": op.bank, "in_tiles": op.in_tiles, "out_tiles": op.out_tiles,
                   "tokens": op.tokens, "gelu": int(op.gelu), "score": int(op.score),
                   "add": int(op.add), "keep": int(op.keep), "attn_bias": int(op.attn_bias),
                   "pixel": int(op.pixel), "cls": int(op.cls)}
        e["x_row_beats"] = op.x_beats_per_row
    if st.wload is not None:
        w = st.wload
        e["wop"] = {"valid": 1, "ahead": int(st.wload_ahead), "bank": w.bank,
                    "in_tiles": w.in_tiles, "out_tiles": w.out_tiles,
                    "attn_bias": int(w.attn_bias)}
        e["w_beats"] = w.w_beats
    if st.moe is not None:
        e["moe"] = {k: getattr(st.moe, k) for k in ("gate_offset", "w1_offset", "b1_offset",
                                                    "w2_offset", "b2_offset")}
    if st.replay is not None:
        e["replay"] = {"beats": st.reads[st.replay.channel][0].beats,
                       "passes": st.replay.passes}
    return e


class _Cmd:
    """A descriptor stream end: valid, ready, addr, beats (plain signals)."""

    def __init__(self, name):
        self.valid = Signal(name=f"{name}_valid")
        self.ready = Signal(name=f"{name}_ready")
        self.addr = Signal(ADDR_W, name=f"{name}_addr")
        self.beats = Signal(BEATS_WIDTH, name=f"{name}_beats")


def _descriptor_generator(m, name: str, slots, base_of, start):
    """Issue the descriptors of a channel's ``slots`` (a View of ArrayLayout(slot_layout)) on
    ``start``; returns (cmd, done).  ``base_of(ptr)`` is the pointer's address."""
    cmd = _Cmd(name)
    active = Signal(name=f"{name}_active")
    loading = Signal(name=f"{name}_loading")
    s = Signal(range(prog.SLOTS + 1), name=f"{name}_slot")
    i = Signal(COUNT_W, name=f"{name}_i")
    o = Signal(COUNT_W, name=f"{name}_o")
    addr = Signal(ADDR_W, name=f"{name}_a")
    addr_o = Signal(ADDR_W, name=f"{name}_ao")
    cur = Signal(slot_layout(), name=f"{name}_cur")
    m.d.comb += cur.eq(Mux(s[0], slots[1].as_value(), slots[0].as_value()))
    done = Signal(name=f"{name}_done")
    m.d.comb += [done.eq(~active), cmd.valid.eq(active & ~loading), cmd.addr.eq(addr),
                 cmd.beats.eq(cur.beats)]
    with m.If(start):
        m.d.sync += [active.eq(1), loading.eq(1), s.eq(0)]
    with m.Elif(active & loading):
        with m.If((s == prog.SLOTS) | ~cur.valid):
            m.d.sync += active.eq(0)
        with m.Else():
            a = base_of(cur.ptr) + cur.offset
            m.d.sync += [loading.eq(0), addr.eq(a), addr_o.eq(a), i.eq(0), o.eq(0)]
    with m.Elif(cmd.valid & cmd.ready):
        last_i = i == cur.inner - 1
        with m.If(last_i):
            m.d.sync += [i.eq(0), o.eq(o + 1), addr_o.eq(addr_o + cur.outer_stride),
                         addr.eq(addr_o + cur.outer_stride)]
            with m.If(o == cur.outer - 1):
                m.d.sync += [s.eq(s + 1), loading.eq(1)]
        with m.Else():
            m.d.sync += [i.eq(i + 1), addr.eq(addr + cur.inner_stride)]
    return cmd, done


class SequencedCore:
    """The datapath and its sequencer (see module doc).  Built inside the top's elaborate:
    ``elaborate(m, ctl, ports)`` with the control block and the memory ports."""

    def __init__(self, cfg: AcceleratorConfig):
        if cfg.mem_ports < prog.READ_CHANNELS:
            raise ConfigError(f"config {cfg.name!r}: the sequenced core uses "
                              f"{prog.READ_CHANNELS} memory ports (one per reader channel); "
                              f"mem_ports is {cfg.mem_ports}")
        self.cfg = cfg
        self.stages = prog.program(cfg)
        self.entries = [rom_entry(s) for s in self.stages]
        _check_commands(cfg, self.stages)
        _check_replays(cfg, self.stages)

    # ------------------------------------------------------------------------------------
    def elaborate(self, m: Module, ctl, ports) -> None:
        cfg = self.cfg
        args = ctl.args
        lay = entry_layout(cfg)
        D = cfg.dim

        # ---------------------------------------------------------------- units
        patch_reset = Signal()
        m.submodules.patch_gather = pg = ResetInserter(patch_reset)(PatchGather(cfg))
        m.submodules.linear = lin = ResetInserter(patch_reset)(Linear(cfg))
        m.submodules.layernorm = ln = LayerNorm(cfg)
        m.submodules.attention = att = Attention(cfg)
        m.submodules.residual = res = Residual(cfg)
        m.submodules.moe_gate = gate = MoeGate(cfg)
        m.submodules.kv_replay = kv = StreamReplay.for_attention(cfg)
        lin_g = geometry(cfg)

        # ---------------------------------------------------------------- ROM
        rom = memory.Memory(shape=lay, depth=len(self.entries), init=self.entries)
        m.submodules.rom = rom
        rp = rom.read_port(domain="comb")
        pc = Signal(range(len(self.entries)), name="pc")
        m.d.comb += rp.addr.eq(pc)
        ent = Signal(lay, name="entry")       # the running stage's entry (latched)
        kind = ent.kind
        stage_active = Signal(name="stage_active")

        def kind_is(name):
            return kind == prog.KINDS.index(name)

        def is_kind(name):
            return kind_is(name) & stage_active

        # ---------------------------------------------------------------- pointers
        image = Signal(32, name="image")
        img_images = Signal(ADDR_W, name="image_offset_images")
        img_x = Signal(ADDR_W, name="image_offset_x")
        bases = []
        for name in prog.POINTERS:
            b = getattr(args, name)
            if name == "images":
                b = b + img_images
            elif name == "x":
                b = b + img_x
            bases.append(b[:ADDR_W])
        base_arr = Array(bases)

        def base_of(ptr):
            return base_arr[ptr]

        # ---------------------------------------------------------------- channels
        start = Signal(name="stage_start")
        rd_cmds, rd_done, wr_cmds, wr_done = [], [], [], []
        for c in range(prog.READ_CHANNELS):
            cmd, done = _descriptor_generator(m, f"rd{c}", ent.reads[c], base_of, start)
            rd_cmds.append(cmd)
            rd_done.append(done)
        for c in range(prog.WRITE_CHANNELS):
            cmd, done = _descriptor_generator(m, f"wr{c}", ent.writes[c], base_of, start)
            wr_cmds.append(cmd)
            wr_done.append(done)
        rports = [ports[prog.READ_PORT[c]] for c in range(prog.READ_CHANNELS)]
        wports = [ports[prog.WRITE_PORT[c]] for c in range(prog.WRITE_CHANNELS)]
        for p in ports[prog.READ_CHANNELS:]:
            m.d.comb += [p.rd_cmd.valid.eq(0), p.wr_cmd.valid.eq(0), p.wr_data.valid.eq(0),
                         p.rd_data.ready.eq(0)]
        for p in ports[prog.WRITE_CHANNELS:prog.READ_CHANNELS]:
            m.d.comb += [p.wr_cmd.valid.eq(0), p.wr_data.valid.eq(0)]

        moe = _MoeSequencer(cfg, m, gate, lin, ent, base_of)
        m.d.comb += moe.wo_idle.eq(~wports[prog.W_OUT].wr_busy &
                                   ~rports[prog.R_A].rd_busy & ~rports[prog.R_B].rd_busy)
        in_moe = is_kind("moe")

        def drive_cmd(port_cmd, gen: _Cmd, alt: _Cmd | None):
            """The port's descriptor input from the generator, or the MoE FSM's in MoE."""
            if alt is None:
                src_v, src_a, src_b = gen.valid, gen.addr, gen.beats
                m.d.comb += gen.ready.eq(port_cmd.ready)
            else:
                src_v = Mux(in_moe, alt.valid, gen.valid)
                src_a = Mux(in_moe, alt.addr, gen.addr)
                src_b = Mux(in_moe, alt.beats, gen.beats)
                m.d.comb += [gen.ready.eq(port_cmd.ready & ~in_moe),
                             alt.ready.eq(port_cmd.ready & in_moe)]
            m.d.comb += [port_cmd.valid.eq(src_v), port_cmd.payload.addr.eq(src_a),
                         port_cmd.payload.beats.eq(src_b)]

        # the preload (patch weights) uses the weight reader's generator through its own
        # descriptors: see the FSM below
        pre_cmd = _Cmd("preload")
        w_gen = _Cmd("rd0_mux")
        m.d.comb += [w_gen.valid.eq(Mux(pre_cmd.valid, pre_cmd.valid, rd_cmds[0].valid)),
                     w_gen.addr.eq(Mux(pre_cmd.valid, pre_cmd.addr, rd_cmds[0].addr)),
                     w_gen.beats.eq(Mux(pre_cmd.valid, pre_cmd.beats, rd_cmds[0].beats)),
                     pre_cmd.ready.eq(w_gen.ready),
                     rd_cmds[0].ready.eq(w_gen.ready & ~pre_cmd.valid)]
        drive_cmd(rports[prog.R_WEIGHTS].rd_cmd, w_gen, moe.cmd_w)
        drive_cmd(rports[prog.R_A].rd_cmd, rd_cmds[prog.R_A], moe.cmd_a)
        drive_cmd(rports[prog.R_B].rd_cmd, rd_cmds[prog.R_B], moe.cmd_b)
        drive_cmd(rports[prog.R_C].rd_cmd, rd_cmds[prog.R_C], moe.cmd_c)
        drive_cmd(wports[prog.W_OUT].wr_cmd, wr_cmds[prog.W_OUT], moe.cmd_out)
        drive_cmd(wports[prog.W_SCORES].wr_cmd, wr_cmds[prog.W_SCORES], None)
        drive_cmd(wports[prog.W_INFO].wr_cmd, wr_cmds[prog.W_INFO], None)

        # ---------------------------------------------------------------- weight reader
        # beats 0..w_beats-1 go to the engine's w port, the rest to b (during the preload:
        # into the patch bank).  ``zero_feed`` replaces memory with zeros (no load ever made).
        to_patch = Signal(name="weights_to_patch")
        zero_feed = Signal(name="weights_zero_feed")
        w_count = Signal(BEATS_WIDTH, name="weights_count")
        w_split = Signal(BEATS_WIDTH, name="weights_split")
        w_total = Signal(BEATS_WIDTH, name="weights_total")
        wd = rports[prog.R_WEIGHTS].rd_data
        src_valid = Mux(zero_feed, w_count != w_total, wd.valid)
        src_data = Mux(zero_feed, 0, wd.payload)
        to_w = w_count < w_split
        tgt_ready = Mux(to_w, lin.w.ready, lin.b.ready)
        m.d.comb += wd.ready.eq(~zero_feed & tgt_ready & ~moe.owns_weights)
        lin_w_valid = src_valid & to_w & ~moe.owns_weights
        lin_b_valid = src_valid & ~to_w & ~moe.owns_weights
        m.d.comb += [lin.w.payload.eq(Mux(moe.owns_weights, wd.payload, src_data)),
                     lin.b.payload.eq(Mux(moe.owns_weights, wd.payload, src_data))]
        with m.If(moe.owns_weights):
            m.d.comb += [lin.w.valid.eq(wd.valid & moe.w_to_w),
                         lin.b.valid.eq(wd.valid & ~moe.w_to_w),
                         wd.ready.eq(Mux(moe.w_to_w, lin.w.ready, lin.b.ready))]
        with m.Else():
            m.d.comb += [lin.w.valid.eq(lin_w_valid), lin.b.valid.eq(lin_b_valid)]
        w_fire = src_valid & tgt_ready & ~moe.owns_weights
        with m.If(w_fire):
            m.d.sync += w_count.eq(w_count + 1)
        m.d.comb += moe.w_fire_in.eq(wd.valid & wd.ready & moe.owns_weights)
        weights_in = w_count == w_total

        # ---------------------------------------------------------------- unit inputs
        ra = rports[prog.R_A].rd_data
        rb = rports[prog.R_B].rd_data
        rc = rports[prog.R_C].rd_data
        wo = wports[prog.W_OUT].wr_data

        # row tagger for the direct-mode linear x stream (token = row index)
        x_beat = Signal(16, name="x_beat")
        x_row = Signal(16, name="x_row")
        lin_x_direct_fire = Signal()
        with m.If(start):
            m.d.sync += [x_beat.eq(0), x_row.eq(0)]
        with m.Elif(lin_x_direct_fire):
            last = x_beat == ent.x_row_beats - 1
            m.d.sync += [x_beat.eq(Mux(last, 0, x_beat + 1)), x_row.eq(x_row + last)]

        # patch rows: gather -> engine x (token = row: the zero cls row 0, then the patches)
        in_patch = is_kind("patch")
        lin_direct = is_kind("linear") | in_patch
        m.d.comb += pg.rows.ready.eq(lin.x.ready & in_patch)
        m.d.comb += lin_x_direct_fire.eq(lin.x.valid & lin.x.ready & lin_direct)

        kv_k, kv_v = _StreamEnd(cfg.axi_width, "kv_k"), _StreamEnd(cfg.axi_width, "kv_v")
        route_a = {"patch": pg.pix, "ln": ln.x, "linear": None, "qk": att.q, "av": kv_v,
                   "residual": res.x}
        route_b = {"qk": kv_k, "av": att.s_in, "residual": res.y}
        route_c = {"ln": ln.p, "av": att.i_in}
        for ch, route in ((ra, route_a), (rb, route_b), (rc, route_c)):
            ready = Const(0)
            for k, port in route.items():
                if port is None:
                    continue
                sel = is_kind(k)
                m.d.comb += [port.payload.eq(ch.payload), port.valid.eq(ch.valid & sel)]
                ready = ready | (sel & port.ready)
            if ch is ra:
                ready = ready | (is_kind("linear") & lin.x.ready)
                ready = ready | (in_moe & moe.a_ready)
            if ch is rb:
                ready = ready | ((in_moe | in_patch) & lin.d.ready)
            if ch is rc:
                ready = ready | (in_moe & gate.w.ready)
            m.d.comb += ch.ready.eq(ready)
        kv_done = _connect_kv_replay(m, kv, ent, kv_k, kv_v, att, is_kind, start)
        # linear x: direct (tag = row counter) or MoE gather (tag from the gather FIFO)
        m.d.comb += [lin.x.payload.data.eq(Mux(in_patch, pg.rows.payload, ra.payload))]
        with m.If(in_moe):
            m.d.comb += [lin.x.valid.eq(ra.valid & moe.x_to_linear & moe.tag_valid),
                         lin.x.payload.token.eq(moe.tag_token),
                         lin.x.payload.score.eq(moe.tag_score)]
        with m.Else():
            m.d.comb += [lin.x.valid.eq(Mux(in_patch, pg.rows.valid,
                                            ra.valid & is_kind("linear"))),
                         lin.x.payload.token.eq(x_row), lin.x.payload.score.eq(0)]
        m.d.comb += [gate.x.payload.eq(ra.payload),
                     gate.x.valid.eq(ra.valid & in_moe & ~moe.x_to_linear),
                     gate.w.payload.eq(rc.payload), gate.w.valid.eq(rc.valid & in_moe),
                     lin.d.payload.eq(rb.payload), lin.d.valid.eq(rb.valid & (in_moe | in_patch)),
                     moe.a_fire.eq(ra.valid & ra.ready)]

        # ---------------------------------------------------------------- unit outputs
        outs = [(is_kind("ln"), ln.o.valid, ln.o.payload, ln.o),
                (lin_direct, lin.y.valid, lin.y.payload.data, lin.y),
                (is_kind("av"), att.o.valid, att.o.payload, att.o),
                (is_kind("residual"), res.o.valid, res.o.payload, res.o)]
        wo_valid, wo_data = Const(0), Const(0, cfg.axi_width)
        for sel, v, d, port in outs:
            wo_valid = Mux(sel, v, wo_valid)
            wo_data = Mux(sel, d, wo_data)
            m.d.comb += port.ready.eq(sel & wo.ready)
        with m.If(in_moe):
            m.d.comb += [wo.valid.eq(moe.out_valid), wo.payload.eq(moe.out_data),
                         lin.y.ready.eq(moe.y_ready)]
        with m.Else():
            m.d.comb += [wo.valid.eq(wo_valid), wo.payload.eq(wo_data)]
        m.d.comb += [moe.wo_ready.eq(wo.ready)]
        ws, wi = wports[prog.W_SCORES].wr_data, wports[prog.W_INFO].wr_data
        m.d.comb += [ws.payload.eq(att.s_out.payload), ws.valid.eq(att.s_out.valid),
                     att.s_out.ready.eq(ws.ready), wi.payload.eq(att.i_out.payload),
                     wi.valid.eq(att.i_out.valid), att.i_out.ready.eq(wi.ready)]

        # ---------------------------------------------------------------- commands
        wcmd_pending = Signal(name="wcmd_pending")
        cmd_pending = Signal(name="cmd_pending")
        pre_wcmd_pending = Signal(name="preload_wcmd_pending")
        m.d.comb += _assign_fields(lin.wcmd.payload, ent.wop)
        m.d.comb += _assign_fields(lin.cmd.payload, ent.op)
        with m.If(in_moe):
            m.d.comb += [lin.wcmd.valid.eq(moe.wcmd_valid), lin.wcmd.payload.eq(moe.wcmd),
                         lin.cmd.valid.eq(moe.cmd_valid), lin.cmd.payload.eq(moe.cmd),
                         moe.wcmd_ready.eq(lin.wcmd.ready), moe.cmd_ready.eq(lin.cmd.ready)]
        with m.Elif(to_patch):
            # the preload: the one-time patch weights into the engine's patch bank
            pw = lin.wcmd.payload
            m.d.comb += [pw.in_tiles.eq(patch_in(cfg) // lin_g.tile_in),
                         pw.out_tiles.eq(D // lin_g.tile_out), pw.bank.eq(PATCH_BANK),
                         pw.attn_bias.eq(0), lin.wcmd.valid.eq(pre_wcmd_pending)]
        with m.Else():
            m.d.comb += [lin.wcmd.valid.eq(wcmd_pending & stage_active),
                         lin.cmd.valid.eq(cmd_pending & lin_direct)]
        with m.If(lin.wcmd.valid & lin.wcmd.ready & ~in_moe & ~to_patch):
            m.d.sync += wcmd_pending.eq(0)
        with m.If(lin.cmd.valid & lin.cmd.ready & ~in_moe):
            m.d.sync += cmd_pending.eq(0)
        with m.If(lin.wcmd.valid & lin.wcmd.ready & to_patch):
            m.d.sync += pre_wcmd_pending.eq(0)

        # ---------------------------------------------------------------- sequencer
        quiet = Signal(name="channels_quiet")
        gens_done = Signal(name="generators_done")
        m.d.comb += gens_done.eq(_all(rd_done + wr_done) & ~pre_cmd.valid)
        busy = Const(0)
        for p in ports[:prog.READ_CHANNELS]:
            busy = busy | p.rd_busy | p.wr_busy
        m.d.comb += quiet.eq(gens_done & ~busy & ~wcmd_pending & ~cmd_pending &
                             ~pre_wcmd_pending & weights_in & kv_done)
        settle = Signal(2, name="settle")
        with m.If(quiet):
            m.d.sync += settle.eq(Mux(settle == 3, 3, settle + 1))
        with m.Else():
            m.d.sync += settle.eq(0)
        stage_done = (settle == 3) & Mux(in_moe, moe.done, 1)

        patch_loaded = Signal(name="patch_loaded")
        stage_reg = Signal(32, name="stage_reg")
        ap_done = Signal()
        m.d.comb += [ctl.args.stage.eq(stage_reg), ctl.ap_done.eq(ap_done),
                     ctl.ap_ready.eq(ap_done)]
        pre_descs = prog.patch_weight_load(cfg)
        pre_slot = Signal(range(3), name="preload_slot")
        pre_addr = Array([args.patch_embed_weights[:ADDR_W], args.patch_embed_bias[:ADDR_W]])
        m.d.comb += [pre_cmd.addr.eq(pre_addr[pre_slot[0]]),
                     pre_cmd.beats.eq(Mux(pre_slot == 0, pre_descs[0].beats,
                                          pre_descs[1].beats))]
        with m.If(pre_cmd.valid & pre_cmd.ready):
            m.d.sync += pre_slot.eq(pre_slot + 1)

        with m.FSM(name="seq"):
            with m.State("IDLE"):
                m.d.comb += ctl.ap_idle.eq(~ctl.ap_start)
                with m.If(ctl.ap_start):
                    m.d.sync += [image.eq(0), img_images.eq(0), img_x.eq(0), pc.eq(0),
                                 stage_reg.eq(0)]
                    with m.If(args.num_images == 0):
                        m.next = "DONE"
                    with m.Elif(args.reload_one_time_weights[0]):
                        m.d.comb += patch_reset.eq(1)
                        m.next = "PRELOAD"
                    with m.Elif(~patch_loaded):
                        m.d.comb += patch_reset.eq(1)
                        m.d.sync += zero_feed.eq(1)
                        m.next = "PRELOAD"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("PRELOAD"):
                # patch weights into the engine's patch bank (kept across images and runs)
                m.d.sync += [to_patch.eq(1), w_count.eq(0), w_split.eq(pre_descs[0].beats),
                             w_total.eq(pre_descs[0].beats + pre_descs[1].beats),
                             pre_wcmd_pending.eq(1), pre_slot.eq(Mux(zero_feed, 2, 0))]
                m.next = "PRELOAD_WAIT"
            with m.State("PRELOAD_WAIT"):
                m.d.comb += pre_cmd.valid.eq(pre_slot < 2)
                with m.If((pre_slot == 2) & weights_in & ~pre_wcmd_pending &
                          ~ports[prog.READ_PORT[prog.R_WEIGHTS]].rd_busy):
                    m.d.sync += [patch_loaded.eq(1), zero_feed.eq(0), to_patch.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += ent.eq(rp.data)
                # the debug_id stop loads nothing ahead (no bank stays loaded after the run)
                with m.If((args.debug_id == rp.data.debug_id) & (image == 0) &
                          rp.data.wop.ahead):
                    m.d.sync += [ent.wop.valid.eq(0)] + [
                        ent.reads[prog.R_WEIGHTS][k].valid.eq(0) for k in range(prog.SLOTS)]
                m.next = "START"
            with m.State("START"):
                m.d.comb += start.eq(1)
                m.d.sync += [stage_active.eq(1), settle.eq(0)]
                m.d.sync += [stage_reg.eq(ent.debug_id), w_count.eq(0),
                             w_split.eq(Mux(ent.wop.valid, ent.w_beats, 0)),
                             w_total.eq(Mux(ent.wop.valid, ent.reads[0][0].beats +
                                            ent.reads[0][1].beats, 0)),
                             wcmd_pending.eq(ent.wop.valid),
                             cmd_pending.eq(kind_is("linear") | kind_is("patch"))]
                m.d.comb += moe.start.eq(kind_is("moe"))
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(stage_done):
                    m.d.sync += stage_active.eq(0)
                    last_stage = pc == len(self.entries) - 1
                    debug_hit = (args.debug_id == ent.debug_id) & (image == 0)
                    with m.If(debug_hit):
                        m.next = "DONE"
                    with m.Elif(last_stage):
                        m.d.sync += [pc.eq(0), image.eq(image + 1),
                                     img_images.eq(img_images + prog.image_stride(cfg, "images")),
                                     img_x.eq(img_x + prog.image_stride(cfg, "x"))]
                        with m.If(image + 1 == args.num_images):
                            m.next = "DONE"
                        with m.Else():
                            m.next = "FETCH"
                    with m.Else():
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += ap_done.eq(1)
                m.next = "IDLE"


def _check_commands(cfg: AcceleratorConfig, stages) -> None:
    """Every linear pass's fields fit the engine's command (a truncated tile count would
    compute garbage silently)."""
    lay = layouts(geometry(cfg))["cmd"]
    for st in stages:
        if st.linear is None:
            continue
        for name, f in lay:
            v = int(getattr(st.linear, name))
            width = Shape.cast(f.shape).width
            if v >> width:
                raise ConfigError(f"config {cfg.name!r}: stage {st.name} needs {name} = {v}, "
                                  f"wider than the {st.kind} engine's {width}-bit field")


def _check_replays(cfg: AcceleratorConfig, stages) -> None:
    """The core replays K on R_B in ``qk`` and V on R_A in ``av`` (one descriptor, at most
    the buffer's beats and passes); any other replay in the program is refused."""
    where = {"qk": prog.R_B, "av": prog.R_A}
    depth, most = cfg.tokens * cfg.feature_blocks, cfg.query_blocks
    for st in stages:
        r = st.replay
        if r is None:
            continue
        descs = st.reads.get(r.channel, ())
        if where.get(st.kind) != r.channel or len(descs) != 1 or descs[0].total_beats != \
                descs[0].beats or not 1 <= descs[0].beats <= depth or not 1 <= r.passes <= most:
            raise ConfigError(f"config {cfg.name!r}: stage {st.name} replays {descs} "
                              f"{r.passes} times on reader {r.channel}; the K/V replay buffer "
                              f"takes one descriptor of at most {depth} beats, at most {most} "
                              f"passes, K on R_B in qk and V on R_A in av")


class _StreamEnd:
    """valid / ready / payload signals (a stream end the router drives like a unit port)."""

    def __init__(self, width: int, name: str):
        self.valid = Signal(name=f"{name}_valid")
        self.ready = Signal(name=f"{name}_ready")
        self.payload = Signal(width, name=f"{name}_payload")


def _connect_kv_replay(m, kv, ent, kv_k, kv_v, att, is_kind, start):
    """K (qk stage, from R_B) and V (av stage, from R_A) through the one replay buffer into
    the attention; its command (the ROM entry's beats and passes) is offered from the
    stage's start.  Returns the 'no replay running or pending' signal."""
    pending = Signal(name="kv_replay_pending")
    in_qk = is_kind("qk")
    with m.If(start):
        m.d.sync += pending.eq(ent.replay.passes != 0)
    with m.Elif(kv.cmd.valid & kv.cmd.ready):
        m.d.sync += pending.eq(0)
    m.d.comb += [kv.cmd.valid.eq(pending), kv.cmd.payload.beats.eq(ent.replay.beats),
                 kv.cmd.payload.passes.eq(ent.replay.passes),
                 kv.i.valid.eq(kv_k.valid | kv_v.valid),
                 kv.i.payload.eq(Mux(in_qk, kv_k.payload, kv_v.payload)),
                 kv_k.ready.eq(kv.i.ready), kv_v.ready.eq(kv.i.ready),
                 att.k.payload.eq(kv.o.payload), att.v.payload.eq(kv.o.payload),
                 att.k.valid.eq(kv.o.valid & in_qk), att.v.valid.eq(kv.o.valid & is_kind("av")),
                 kv.o.ready.eq((in_qk & att.k.ready) | (is_kind("av") & att.v.ready))]
    return ~pending & kv.idle


def _all(sigs):
    out = Const(1)
    for s in sigs:
        out = out & s
    return out


class _MoeSequencer:
    """The MoE stage's FSM (see module doc): drives the weight, A, B and C reader
    descriptors, the W_OUT writer (zero fill, then scatter), the engine's commands, the gate's
    queue reads, and the gather tags that go with each row read."""

    def __init__(self, cfg: AcceleratorConfig, m: Module, gate: MoeGate, lin: Linear, ent,
                 base_of):
        self.cmd_w, self.cmd_a, self.cmd_b, self.cmd_c, self.cmd_out = (
            _Cmd(f"moe_{n}") for n in ("w", "a", "b", "c", "out"))
        self.start = Signal(name="moe_start")
        self.done = Signal(name="moe_done")
        self.owns_weights = Signal(name="moe_owns_weights")
        self.w_to_w = Signal(name="moe_w_to_w")
        self.w_fire_in = Signal()
        self.a_ready = Signal()
        self.a_fire = Signal()
        self.x_to_linear = Signal(name="moe_x_to_linear")
        self.tag_valid = Signal()
        self.tag_token = Signal(lin.g.token_bits)
        self.tag_score = Signal(32)
        self.out_valid = Signal()
        self.out_data = Signal(cfg.axi_width)
        self.y_ready = Signal()
        self.wo_ready = Signal()
        lay = layouts(lin.g)
        self.wcmd = Signal(lay["wcmd"])
        self.cmd = Signal(lay["cmd"])
        self.wcmd_valid, self.wcmd_ready = Signal(), Signal()
        self.cmd_valid, self.cmd_ready = Signal(), Signal()
        self.wo_idle = Signal(name="moe_wo_idle")
        self._build(cfg, m, gate, lin, ent, base_of)

    def _build(self, cfg, m, gate, lin, ent, base_of):
        T, D, Dh = cfg.tokens, cfg.dim, cfg.expert_hidden
        fb = cfg.feature_block
        st = prog.moe_strides(cfg)
        ptr = {n: Const(prog.POINTERS.index(n)) for n in prog.POINTERS}
        row_beats, hid_beats = D // fb, Dh // fb
        wb1, bb1 = prog.wt_beats(cfg, Dh * D), prog.wt_beats(cfg, Dh)
        wb2, bb2 = prog.wt_beats(cfg, D * Dh), prog.wt_beats(cfg, D)
        g = lin.g

        # the compute pass now running: expert, its token count, FC1 (0) or FC2 (1)
        expert = Signal(gate.g.expert_bits, name="moe_expert")
        length = Signal(gate.g.length_bits, name="moe_length")
        phase2 = Signal(name="moe_fc2")
        req_i = Signal(range(T + 1), name="moe_req_index")

        # tag FIFO: (token, score) per gathered row, popped at each row's last beat
        tags = fifo.SyncFIFOBuffered(width=g.token_bits + 32, depth=16)
        m.submodules.moe_tags = tags
        a_beat = Signal(16, name="moe_a_beat")
        a_row_beats = Mux(phase2, hid_beats, row_beats)
        m.d.comb += [self.tag_valid.eq(tags.r_rdy),
                     self.tag_token.eq(tags.r_data[:g.token_bits]),
                     self.tag_score.eq(tags.r_data[g.token_bits:]),
                     self.a_ready.eq(Mux(self.x_to_linear, lin.x.ready & tags.r_rdy,
                                         gate.x.ready))]
        with m.If(self.a_fire & self.x_to_linear):
            lastb = a_beat == a_row_beats - 1
            m.d.sync += a_beat.eq(Mux(lastb, 0, a_beat + 1))
            m.d.comb += tags.r_en.eq(lastb)

        # gather: rd_req -> rd_resp -> A (and B in FC2) descriptors + a tag
        resp = gate.rd_resp
        gather_on = Signal(name="moe_gather_on")
        req_sent = Signal(name="moe_req_sent")
        a_pend, b_pend = Signal(), Signal()
        tok = Signal(g.token_bits, name="moe_token")
        m.d.comb += [gate.rd_req.payload.expert.eq(expert),
                     gate.rd_req.payload.index.eq(req_i),
                     gate.rd_req.valid.eq(gather_on & ~req_sent & (req_i < length) &
                                          ~a_pend & ~b_pend & tags.w_rdy),
                     resp.ready.eq(1)]
        with m.If(gate.rd_req.valid & gate.rd_req.ready):
            m.d.sync += [req_sent.eq(1), req_i.eq(req_i + 1)]
        with m.If(resp.valid & req_sent):
            m.d.sync += [req_sent.eq(0), tok.eq(resp.payload.token), a_pend.eq(1),
                         b_pend.eq(phase2)]
            m.d.comb += [tags.w_en.eq(1),
                         tags.w_data.eq(resp.payload.token | (resp.payload.score.as_unsigned()
                                                              << g.token_bits))]
        a_base = Mux(phase2, base_of(ptr["tmp_hidden"]) + tok * st["hidden_row"],
                     base_of(ptr["tmp1"]) + tok * st["row"])
        m.d.comb += [self.cmd_a.valid.eq(a_pend), self.cmd_a.addr.eq(a_base),
                     self.cmd_a.beats.eq(Mux(phase2, hid_beats, row_beats)),
                     self.cmd_b.valid.eq(b_pend),
                     self.cmd_b.addr.eq(base_of(ptr["tmp3"]) + tok * st["row"]),
                     self.cmd_b.beats.eq(row_beats)]
        with m.If(self.cmd_a.valid & self.cmd_a.ready):
            m.d.sync += a_pend.eq(0)
        with m.If(self.cmd_b.valid & self.cmd_b.ready):
            m.d.sync += b_pend.eq(0)

        # scatter: one W_OUT descriptor per output row, from the row's token
        y = lin.y
        y_beat = Signal(16, name="moe_y_beat")
        y_desc_sent = Signal(name="moe_y_desc_sent")
        scatter_on = Signal(name="moe_scatter_on")
        zero_left = Signal(BEATS_WIDTH, name="moe_zero_left")
        zero_desc = Signal(name="moe_zero_desc")
        y_row_beats = Mux(phase2, row_beats, hid_beats)
        y_addr = Mux(phase2, base_of(ptr["tmp3"]) + y.payload.token * st["row"],
                     base_of(ptr["tmp_hidden"]) + y.payload.token * st["hidden_row"])
        with m.If(zero_desc):
            m.d.comb += [self.cmd_out.valid.eq(1), self.cmd_out.addr.eq(base_of(ptr["tmp3"])),
                         self.cmd_out.beats.eq(T * row_beats)]
        with m.Else():
            m.d.comb += [self.cmd_out.valid.eq(scatter_on & y.valid & (y_beat == 0) &
                                               ~y_desc_sent),
                         self.cmd_out.addr.eq(y_addr), self.cmd_out.beats.eq(y_row_beats)]
        with m.If(self.cmd_out.valid & self.cmd_out.ready):
            with m.If(zero_desc):
                m.d.sync += zero_desc.eq(0)
            with m.Else():
                m.d.sync += y_desc_sent.eq(1)
        y_pass = scatter_on & ((y_beat != 0) | y_desc_sent)
        with m.If(zero_left != 0):
            m.d.comb += [self.out_valid.eq(1), self.out_data.eq(0)]
            with m.If(self.wo_ready):
                m.d.sync += zero_left.eq(zero_left - 1)
        with m.Else():
            m.d.comb += [self.out_valid.eq(y.valid & y_pass), self.out_data.eq(y.payload.data),
                         self.y_ready.eq(self.wo_ready & y_pass)]
        with m.If(y.valid & y.ready & scatter_on):
            lastb = y_beat == y_row_beats - 1
            m.d.sync += y_beat.eq(Mux(lastb, 0, y_beat + 1))
            with m.If(lastb):
                m.d.sync += y_desc_sent.eq(0)

        # the expert list, captured from the gate's meta stream (ascending experts)
        E = cfg.num_experts
        ex_id = Array([Signal(gate.g.expert_bits, name=f"moe_list_expert{i}") for i in range(E)])
        ex_len = Array([Signal(gate.g.length_bits, name=f"moe_list_length{i}")
                        for i in range(E)])
        n_used = Signal(range(E + 1), name="moe_experts_used")
        passes = Signal(range(2 * E + 1), name="moe_passes")   # 2 per used expert
        m.d.comb += passes.eq(n_used << 1)

        # weight streamer: loads pass wi's weights (FC1 of expert wi/2 into bank 0, FC2 into
        # bank 1) as soon as the previous load's beats are in: the engine's loader waits for
        # the bank to be free, so FC2(e) loads while FC1(e) computes and FC1(e+1) while FC2(e)
        # does (ping/pong prefetch); each used expert's weights are read once
        wi = Signal(range(2 * E + 1), name="moe_load_index")
        streaming = Signal(name="moe_streaming")
        ld_fc2 = Signal(name="moe_load_fc2")
        ld_exp = Signal(gate.g.expert_bits, name="moe_load_expert")
        w_slot = Signal(range(3), init=2, name="moe_w_slot")
        w_left = Signal(BEATS_WIDTH, name="moe_w_left")   # weight beats before the biases
        b_left = Signal(BEATS_WIDTH, name="moe_b_left")
        wcmd_p, cmd_p = Signal(), Signal()
        ld_busy = wcmd_p | (w_slot != 2) | (w_left != 0) | (b_left != 0)
        with m.If(streaming & ~ld_busy & (wi < passes)):
            m.d.sync += [ld_fc2.eq(wi[0]), ld_exp.eq(ex_id[wi >> 1]), wcmd_p.eq(1),
                         w_slot.eq(0), w_left.eq(Mux(wi[0], wb2, wb1)),
                         b_left.eq(Mux(wi[0], bb2, bb1)), wi.eq(wi + 1)]
        w1 = base_of(ptr["moe_weights_l1"]) + ent.moe.w1_offset + ld_exp * st["w1"]
        b1 = base_of(ptr["moe_bias_l1"]) + ent.moe.b1_offset + ld_exp * st["b1"]
        w2 = base_of(ptr["moe_weights_l2"]) + ent.moe.w2_offset + ld_exp * st["w2"]
        b2 = base_of(ptr["moe_bias_l2"]) + ent.moe.b2_offset + ld_exp * st["b2"]
        m.d.comb += [self.cmd_w.valid.eq(w_slot < 2),
                     self.cmd_w.addr.eq(Mux(ld_fc2, Mux(w_slot == 0, w2, b2),
                                            Mux(w_slot == 0, w1, b1))),
                     self.cmd_w.beats.eq(Mux(ld_fc2, Mux(w_slot == 0, wb2, bb2),
                                             Mux(w_slot == 0, wb1, bb1))),
                     self.w_to_w.eq(w_left != 0)]
        with m.If(self.cmd_w.valid & self.cmd_w.ready):
            m.d.sync += w_slot.eq(w_slot + 1)
        with m.If(self.w_fire_in):
            with m.If(w_left != 0):
                m.d.sync += w_left.eq(w_left - 1)
            with m.Else():
                m.d.sync += b_left.eq(b_left - 1)
        m.d.comb += [self.wcmd.bank.eq(ld_fc2),
                     self.wcmd.in_tiles.eq(Mux(ld_fc2, Dh // g.tile_in, D // g.tile_in)),
                     self.wcmd.out_tiles.eq(Mux(ld_fc2, D // g.tile_out, Dh // g.tile_out))]
        # the compute pass's command (bank = FC2)
        m.d.comb += [self.cmd.bank.eq(phase2),
                     self.cmd.in_tiles.eq(Mux(phase2, Dh // g.tile_in, D // g.tile_in)),
                     self.cmd.out_tiles.eq(Mux(phase2, D // g.tile_out, Dh // g.tile_out)),
                     self.cmd.tokens.eq(length), self.cmd.gelu.eq(~phase2),
                     self.cmd.score.eq(phase2), self.cmd.add.eq(phase2)]
        m.d.comb += [self.wcmd_valid.eq(wcmd_p), self.cmd_valid.eq(cmd_p)]
        with m.If(self.wcmd_valid & self.wcmd_ready):
            m.d.sync += wcmd_p.eq(0)
        with m.If(self.cmd_valid & self.cmd_ready):
            m.d.sync += cmd_p.eq(0)

        # gate weights (C) and LN2 rows (A)
        gate_c = Signal(name="moe_gate_c")
        gate_a = Signal(name="moe_gate_a")
        m.d.comb += [self.cmd_c.valid.eq(gate_c),
                     self.cmd_c.addr.eq(base_of(ptr["moe_w_gate"]) + ent.moe.gate_offset),
                     self.cmd_c.beats.eq(prog.wt_beats(cfg, cfg.num_experts * D))]
        with m.If(self.cmd_c.valid & self.cmd_c.ready):
            m.d.sync += gate_c.eq(0)
        # A: the gate's rows (LN2 output, all tokens) before the gather descriptors
        with m.If(gate_a):
            m.d.comb += [self.cmd_a.valid.eq(1), self.cmd_a.addr.eq(base_of(ptr["tmp1"])),
                         self.cmd_a.beats.eq(T * row_beats)]
        with m.If(gate_a & self.cmd_a.ready):
            m.d.sync += gate_a.eq(0)

        rows_written = Signal(range(T + 2), name="moe_rows_written")
        with m.If(y.valid & y.ready & scatter_on & (y_beat == y_row_beats - 1)):
            m.d.sync += rows_written.eq(rows_written + 1)

        pass_quiet = Signal()
        m.d.comb += pass_quiet.eq((rows_written == length) & ~cmd_p & ~a_pend & ~b_pend &
                                  (req_i == length) & ~req_sent & ~tags.r_rdy)
        wait = Signal(3, name="moe_wait")
        ci = Signal(range(2 * E + 1), name="moe_pass_index")
        # the running pass's expert, length and phase are registers loaded in PASS (one
        # cycle before anything reads them), not a mux of the expert list on every path

        with m.FSM(name="moe"):
            with m.State("IDLE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.start):
                    m.d.sync += [zero_desc.eq(1), zero_left.eq(T * row_beats), n_used.eq(0),
                                 wi.eq(0), ci.eq(0)]
                    m.next = "ZERO"
            with m.State("ZERO"):
                with m.If(~zero_desc & (zero_left == 0) & self.wo_idle):
                    m.d.sync += [gate_c.eq(1), gate_a.eq(1), self.x_to_linear.eq(0)]
                    m.next = "GATE"
            with m.State("GATE"):
                # the gate's list of non-empty experts, ascending, into ex_id/ex_len
                with m.If(gate.meta.valid & ~gate_a & ~gate_c):
                    m.d.comb += gate.meta.ready.eq(1)
                    m.d.sync += [ex_id[n_used].eq(gate.meta.payload.expert),
                                 ex_len[n_used].eq(gate.meta.payload.length),
                                 n_used.eq(n_used + 1)]
                    with m.If(gate.meta.payload.last):
                        m.d.sync += [streaming.eq(1), self.owns_weights.eq(1),
                                     self.x_to_linear.eq(1)]
                        m.next = "PASS"
            with m.State("PASS"):
                m.d.sync += [expert.eq(ex_id[ci >> 1]), length.eq(ex_len[ci >> 1]),
                             phase2.eq(ci[0])]
                m.d.sync += [cmd_p.eq(1), req_i.eq(0), rows_written.eq(0), y_beat.eq(0),
                             a_beat.eq(0), y_desc_sent.eq(0), gather_on.eq(1),
                             scatter_on.eq(1), wait.eq(0)]
                m.next = "PASS_RUN"
            with m.State("PASS_RUN"):
                with m.If(pass_quiet):
                    m.d.sync += wait.eq(Mux(wait == 7, 7, wait + 1))
                with m.Else():
                    m.d.sync += wait.eq(0)
                with m.If(wait == 7):
                    m.d.sync += [gather_on.eq(0), scatter_on.eq(0)]
                    m.next = "PASS_END"
            with m.State("PASS_END"):
                # this pass's writes are complete before the next pass reads them
                with m.If(self.wo_idle):
                    with m.If(ci + 1 == passes):
                        m.next = "RELEASE"
                    with m.Else():
                        m.d.sync += ci.eq(ci + 1)
                        m.next = "PASS"
            with m.State("RELEASE"):
                m.d.comb += gate.release.valid.eq(1)
                with m.If(gate.release.ready & ~ld_busy):
                    m.d.sync += [self.owns_weights.eq(0), self.x_to_linear.eq(0),
                                 streaming.eq(0)]
                    m.next = "IDLE"
