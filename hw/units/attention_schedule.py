"""Cycle-accurate model of the staggered attention schedule (spec §4.5.2), shared by the
Amaranth unit, the HLS C++ kernel, their tests and the cycle figures.

One *step* is one (query block ``b``, key ``k``, feature block ``db``) iteration; the
hardware (both styles) retires one step per clock when its streams keep up.  Lane ``o`` of
block ``b`` owns query row ``P*b + o`` from key ``o`` on, and still finishes the previous
block's row ``P*(b-1) + o`` for keys ``k < o``; its q row is (re)loaded block by block at
``k == o``.  Hence each step reads at most one q block and exactly one k block, whatever P.

The softmax·V phase walks the same (b, v, db) steps: one V block per step, one score-buffer
entry (b, v) at ``db == 0``, one softmax-info row at ``v == o``; output row beats leave at the
lane's last key, one beat per step, in row order.
"""

from __future__ import annotations

from dataclasses import dataclass

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.exp import EXP_STAGES
from moevit.hw.units.pipeline import tree_registers
from moevit.hw.units.softmax import MIN_INTERLEAVE, softmax_latency

#: stages of the softmax·V A pipeline: the selected score/max/recip registered, the
#: argument s - max registered, the shared exp datapath (``exp_stages``), the registered
#: A = e·recip product
A_PIPE_STAGES = EXP_STAGES + 3
#: adder-tree levels between registers in the Q·K step pipeline
TREE_LEVELS = 2
#: softmax·V step pipeline: registered V beat and A values, registered products, then the
#: retire stage (accumulator row read, add, write)
AV_STEP_STAGES = 2


@dataclass(frozen=True)
class AttentionGeometry:
    """Sizes of the attention unit, all derived from an :class:`AcceleratorConfig`."""

    tokens: int
    heads: int
    head_lanes: int
    lanes: int  # P
    feature_block: int
    feature_blocks: int  # per token row (FB)
    blocks_per_head: int
    query_blocks: int  # QB
    info_width: int

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "AttentionGeometry":
        geo = cls(tokens=cfg.tokens, heads=cfg.heads, head_lanes=cfg.head_lanes,
                  lanes=cfg.attn_parallel, feature_block=cfg.feature_block,
                  feature_blocks=cfg.feature_blocks,
                  blocks_per_head=cfg.head_dim // cfg.feature_block,
                  query_blocks=cfg.query_blocks, info_width=cfg.softmax_info_width)
        if geo.lanes > geo.tokens:
            raise ConfigError(f"config {cfg.name!r}: attn_parallel {geo.lanes} exceeds the "
                              f"{geo.tokens} tokens; use at most {geo.tokens} query lanes")
        if geo.info_width != geo.feature_block:
            raise ConfigError(
                f"config {cfg.name!r}: the attention unit emits one softmax-info beat per row "
                f"({geo.feature_block} slots = {geo.feature_block // 2} heads); {geo.heads} heads "
                f"need {geo.info_width} slots — use at most {geo.feature_block // 2} heads")
        return geo

    # ------------------------------------------------------------ derived
    @property
    def entry_words(self) -> int:
        """fm_t words of one score-buffer entry (b, k): P lanes x head lanes."""
        return self.lanes * self.head_lanes

    @property
    def steps(self) -> int:
        """Steps (= ideal cycles) of one phase: QB x T x FB."""
        return self.query_blocks * self.tokens * self.feature_blocks

    @property
    def score_words(self) -> int:
        return self.query_blocks * self.tokens * self.entry_words

    @property
    def score_beats(self) -> int:
        """256-bit beats of the score buffer (the last one zero-padded)."""
        return -(-self.score_words // self.feature_block)

    def row(self, b: int, k: int, o: int) -> int:
        """Query row lane ``o`` works on at key ``k`` of block ``b`` (may be out of range)."""
        return self.lanes * b + o if k >= o else self.lanes * (b - 1) + o

    def valid(self, b: int, k: int, o: int) -> bool:
        r = self.row(b, k, o)
        return 0 <= r < self.tokens

    def last_key(self, o: int) -> int:
        """The key at which lane ``o`` finishes its row (end of the cyclic order)."""
        return self.tokens - 1 if o == 0 else o - 1


def geometry(cfg: AcceleratorConfig) -> AttentionGeometry:
    return AttentionGeometry.from_config(cfg)


def qk_step_stages(cfg: AcceleratorConfig) -> int:
    """Q·Kᵀ step pipeline: registered q/k blocks, registered products, the adder tree's
    registers (every ``TREE_LEVELS`` levels over ``feature_block`` products), then the retire
    stage (last tree levels + the head accumulator): 3 for 8-wide blocks."""
    return 2 + tree_registers(cfg.feature_block, TREE_LEVELS)


@dataclass(frozen=True)
class Step:
    b: int
    k: int
    db: int
    q_row: int | None  # q block (q_row, db) read this step, or None
    k_row: int  # k (or v) block (k_row, db) read this step


def qk_steps(cfg: AcceleratorConfig):
    """Yield every Q·Kᵀ step in schedule order with the q/k blocks it reads."""
    g = geometry(cfg)
    for b in range(g.query_blocks):
        for k in range(g.tokens):
            for db in range(g.feature_blocks):
                q_row = g.lanes * b + k if k < g.lanes and g.lanes * b + k < g.tokens else None
                yield Step(b, k, db, q_row, k)


def bandwidth_profile(cfg: AcceleratorConfig) -> dict:
    """Blocks read per step by the Q·Kᵀ schedule: max q and k blocks per step, totals."""
    max_q = max_k = q_total = k_total = steps = 0
    for st in qk_steps(cfg):
        nq = int(st.q_row is not None)
        max_q, max_k = max(max_q, nq), max(max_k, 1)
        q_total += nq
        k_total += 1
        steps += 1
    return dict(steps=steps, max_q_blocks_per_step=max_q, max_k_blocks_per_step=max_k,
                q_blocks=q_total, k_blocks=k_total)


def _qk_phase_cycles(g: AttentionGeometry, sm_latency: int,
                     stages: int) -> tuple[int, int, list[int]]:
    """Q·Kᵀ phase at full rate: (cycles, cycles beyond steps + E/8, issue cycle of every
    step), replayed cycle by cycle as the RTL does it.

    A step is issued (its k beat taken) into the ``stages``-deep step pipeline whenever the
    pipeline advances; it retires at the end unless it completes a head while the ``nxt``
    registers still hold the previous head's lane scores, or ends a key while the score
    packer still holds a beat of an earlier entry (the whole pipeline then stalls).
    ``nxt`` moves to the serializer when that is empty or hands over its last score; the
    serializer passes one valid lane score per cycle, while a 2-entry FIFO has room (a
    register), into OnlineSoftmax, whose hazard check admits a row's score only
    ``MIN_INTERLEAVE`` cycles after that row's previous one (or at the row's first score).  The last info beat leaves
    ``sm_latency`` + 1 cycles after the last row's last score enters the softmax unit; the
    last score entry max(1, E/8) beats after the last step retires.
    """
    P, H, HL, bph = g.lanes, g.heads, g.head_lanes, g.blocks_per_head
    FB, FBW, E = g.feature_blocks, g.feature_block, g.entry_words
    nb = E // FBW if E >= FBW else 0
    epb, n_entries = max(1, FBW // E), g.query_blocks * g.tokens
    pipe: list[int | None] = [None] * stages   # step index per stage 1..stages
    nxt: list | None = None
    ser: list = []
    fifo: list = []                  # softmax input FIFO (2 entries): (row, first, emits)
    admitted: dict[int, int] = {}
    pcnt = 0
    i = cycle = last_retire = info_end = 0
    fires: list[int] = []
    n = g.steps
    while i < n or any(s is not None for s in pipe) or nxt is not None or ser or fifo:
        # softmax input FIFO -> OnlineSoftmax
        deq = False
        if fifo:
            row, first, emits = fifo[0]
            deq = first or cycle - admitted.get(row, -MIN_INTERLEAVE) >= MIN_INTERLEAVE
            if deq:
                admitted[row] = cycle
                if emits:
                    info_end = max(info_end, cycle + sm_latency + 1)
        pop = bool(ser) and len(fifo) < 2          # the FIFO's room flag (a register)
        move = nxt is not None and (not ser or (len(ser) == 1 and pop))
        new_fifo = (fifo[1:] if deq else fifo) + ([ser[0]] if pop else [])
        new_ser = ser[1:] if pop else ser
        new_nxt = nxt
        if move:
            new_ser, new_nxt = nxt, None
        # the retiring step
        step = pipe[-1]
        advance = True
        if step is not None:
            b, rem = divmod(step, g.tokens * FB)
            k, db = divmod(rem, FB)
            head_last, last_db = db % bph == bph - 1, db == FB - 1
            pack_ok = pcnt == 0  # the packer holds no beat (a register in the RTL)
            advance = (not last_db or pack_ok) and (not head_last or nxt is None)
            if advance:
                last_retire = cycle
                if head_last:
                    h = db // bph
                    new_nxt = [(o * HL + h, k == o, k == g.last_key(o) and h == H - 1)
                               for o in range(P) if g.valid(b, k, o)]
        pcnt = max(0, pcnt - 1)
        if step is not None and advance and last_db:
            entry = b * g.tokens + k  # small entries: a beat leaves when full or at the end
            pcnt = nb if nb else int((entry + 1) % epb == 0 or entry == n_entries - 1)
        if advance:
            pipe = [i if i < n else None] + pipe[:-1]
            if i < n:
                fires.append(cycle)
                i += 1
        nxt, ser, fifo = new_nxt, new_ser, new_fifo
        cycle += 1
    entry_beats = max(1, g.entry_words // g.feature_block)
    end = max(last_retire + entry_beats, info_end)
    return end + 1, end + 1 - n - entry_beats, fires


def _av_phase_cycles(g: AttentionGeometry, a_latency: int,
                     stages: int) -> tuple[int, int]:
    """softmax·V phase at full rate: (cycles, cycles beyond steps + 1), cycle by cycle.

    The A producer takes a score entry (unpacked from max(1, E/8) beats, double-buffered),
    and issues one exp argument per cycle for (head, lane) in order, lane v taking its info
    row with entry (b, v); A = floor(exp(s-max)·recip) leaves ``a_latency`` cycles later into
    the collector's ``fill`` group, which takes A values while it holds fewer than P or
    ``hold`` is free, and moves to ``hold`` when that is free or being used up.  A step that
    starts a head waits for a held group; a step retires ``stages`` cycles after its V beat
    and its output beat leaves one cycle later.
    """
    P, H, FB, bph = g.lanes, g.heads, g.feature_blocks, g.blocks_per_head
    E, FBW, T = g.entry_words, g.feature_block, g.tokens
    n_entries = g.query_blocks * T
    big = E >= FBW
    nb = E // FBW if big else 1
    epb = 1 if big else FBW // E
    beats_left = g.score_beats
    ncnt = sj = 0  # unpacker (big: beats held; small: entry index in the held beat)
    sfull = False
    loaded = 0  # entries moved into cur
    cur_v, items_done = False, 0  # producer: current entry valid, items of it issued
    pipe = [False] * a_latency  # stage 1..L valid
    gcnt, hold_v = 0, False
    i = cycle = last = 0
    n = g.steps
    while i < n:
        # consumer step
        b, rem = divmod(i, T * FB)
        k, db = divmod(rem, FB)
        head_first = db % bph == 0
        fire = not head_first or hold_v
        consume = fire and head_first
        out_valid = pipe[-1]
        fill_full = gcnt == P
        take = out_valid and (not fill_full or not hold_v)
        advance = not out_valid or take
        # producer input
        avail = (ncnt == nb) if big else sfull
        item = cur_v and advance
        done_entry = item and items_done == P * H - 1
        etake = avail and (not cur_v or done_entry) and loaded < n_entries
        # unpacker beats
        if big:
            if ncnt != nb and beats_left:
                ncnt += 1
                beats_left -= 1
            if etake:
                ncnt = 0
        else:
            accept = not sfull and beats_left
            if etake:
                if sj == epb - 1 or loaded == n_entries - 1:
                    sfull, sj = False, 0
                else:
                    sj += 1
            if accept:
                sfull = True
                beats_left -= 1
        # collector
        if fill_full and (not hold_v or consume):
            gcnt, hold_v = int(take), True
        else:
            gcnt += int(take)
            hold_v = hold_v and not consume
        if advance:
            pipe = [item] + pipe[:-1]
        items_done = 0 if done_entry else items_done + int(item)
        if etake:
            cur_v = True
            loaded += 1
        elif done_entry:
            cur_v = False
        if fire:
            last = max(last, cycle)
            for o in range(P):
                if k == g.last_key(o) and g.valid(b, k, o):
                    last = cycle + stages + 1  # the output beat leaves after the retire
            i += 1
        cycle += 1
    return last + 1, last + 1 - n


def cycles_per_layer(cfg: AcceleratorConfig) -> dict:
    """Cycles of one attention layer with every stream at full rate (no back-pressure).

    Q·Kᵀ + statistics: QB·T·FB steps, plus the step pipeline (``qk_step_stages``), plus the
    serializer stalls where a head completes on P lanes faster than one score per cycle
    (P·(valid lanes) scores per ``blocks_per_head`` steps; none on edge-moe or zcu104), plus
    the tail: the last info row leaves the OnlineSoftmax latency (``SOFTMAX_LATENCY``) + 1
    cycles after the last row's last score enters it, the last score entry max(1, E/8) beats
    after the last step retires.
    softmax·V: QB·T·FB steps, plus the fill (first entry's beats, the A pipeline of
    ``A_PIPE_STAGES`` = exp + multiply stages, P A values gathered and moved to the held
    group) and the collector stalls where the P·H A values of a key outrun FB steps (tiny),
    plus the step pipeline (``AV_STEP_STAGES``) and 1 for the output register.
    Both phase figures come from a cycle-by-cycle replay of those rules
    (``_qk_phase_cycles``, ``_av_phase_cycles``), asserted equal to the RTL in tests/hw.
    The spec's ideal figure (§11) is 2·QB·T·FB.  QB = ceil((T-1)/P) + 1.
    """
    g = geometry(cfg)
    qk, qk_extra, _ = _qk_phase_cycles(g, softmax_latency(cfg), qk_step_stages(cfg))
    av, av_extra = _av_phase_cycles(g, A_PIPE_STAGES, AV_STEP_STAGES)
    return dict(P=g.lanes, tokens=g.tokens, feature_blocks=g.feature_blocks,
                query_blocks=g.query_blocks, qk_cycles=qk, av_cycles=av, layer_cycles=qk + av,
                qk_stall_and_tail_cycles=qk_extra, av_fill_and_stall_cycles=av_extra,
                ideal_layer_cycles=2 * g.steps)


def qk_step_cycles(cfg: AcceleratorConfig) -> list[int]:
    """Cycle (from the phase's first cycle) at which each Q·Kᵀ step retires at full rate:
    the k beat of step i is taken then, and its q beat if the step loads one."""
    return _qk_phase_cycles(geometry(cfg), softmax_latency(cfg), qk_step_stages(cfg))[2]
