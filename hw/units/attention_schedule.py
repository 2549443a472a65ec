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

#: pipeline latency (clock cycles) of the Amaranth unit from the last input step to the last
#: output beat leaving its register, per phase (measured in RTL, checked by tests/hw).
RTL_DRAIN_CYCLES = 1


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
    scale_shift: int
    info_width: int

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "AttentionGeometry":
        geo = cls(tokens=cfg.tokens, heads=cfg.heads, head_lanes=cfg.head_lanes,
                  lanes=cfg.attn_parallel, feature_block=cfg.feature_block,
                  feature_blocks=cfg.feature_blocks,
                  blocks_per_head=cfg.head_dim // cfg.feature_block,
                  query_blocks=cfg.query_blocks, scale_shift=cfg.attn_scale_shift,
                  info_width=cfg.softmax_info_width)
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


def cycles_per_layer(cfg: AcceleratorConfig, drain: int = RTL_DRAIN_CYCLES) -> dict:
    """Analytical cycles of one attention layer at one step per clock, no stalls.

    Q·Kᵀ+statistics: QB·T·FB steps; softmax·V: QB·T·FB steps, after the first score entry
    (max(1, P·HL/8) beats) has been read; each phase ends ``drain`` cycles after its last step
    (the output register; Q·Kᵀ: the last entry's beats).  QB = ceil((T-1)/P) + 1.
    """
    g = geometry(cfg)
    entry_beats = max(1, g.entry_words // g.feature_block)
    qk = g.steps + max(drain, entry_beats)  # the last score entry leaves beat by beat
    av = entry_beats + g.steps + drain
    return dict(P=g.lanes, tokens=g.tokens, feature_blocks=g.feature_blocks,
                query_blocks=g.query_blocks, qk_cycles=qk, av_cycles=av, layer_cycles=qk + av,
                ideal_layer_cycles=2 * g.steps)
