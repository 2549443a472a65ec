"""Sizes, stage counts and the cycle model of the MoE gate (:mod:`moevit.hw.units.moe_gate`).

Kept apart from the Amaranth code so that the accelerator-level model, the testbench and the
docs read the same numbers without elaborating anything.  Stage counts are asserted against
the built pipelines in :mod:`moevit.hw.units.moe_gate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError

#: register stages of one split logit product (``dsp_mul.FloorProductPipe`` for a 32-bit
#: fm_t: the DSP product and the 2-bit LUT partials, then their pair sums)
SPLIT_STAGES = 2
#: logit MAC pipeline: x/weight-word register, operand register, the split product's
#: stages, floored-product register, then log2(feature_block) adder-tree levels; the last
#: level's stage accumulates and writes
MAC_FIXED_STAGES = 2 + SPLIT_STAGES + 1
#: scan pipeline (max, exp argument, top-k per item): logit word read, logit select,
#: state update, output register
SCAN_STAGES = 3
#: sum loop: state read (stage 1), operand register, partial products, partial sum, final
#: add + state write (stage 4): a slot's next item must come >= 4 items later, so slots = 4
SUM_LOOP_STAGES = 4
#: sum pipeline: input register .. state write (SUM_LOOP_STAGES) + output register
SUM_STAGES = SUM_LOOP_STAGES + 1
#: queue writer: address register, memory write
WRITE_STAGES = 2
#: queue read port: address register, synchronous memory read
READ_STAGES = 2


def _clog2(n: int) -> int:
    return max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class MoeGateGeometry:
    """Sizes of the gate, all derived from an :class:`AcceleratorConfig`."""

    tokens: int
    experts: int
    top_k: int
    dim: int
    feature_block: int       # fm_t per x beat
    feature_blocks: int      # x beats per token row
    weights_per_beat: int    # int16 gate weights per 256-bit weight beat
    fm_width: int
    fm_frac: int
    w_width: int
    w_frac: int
    slots: int               # tokens interleaved by the scan / sum loop (R)

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "MoeGateGeometry":
        f = cfg.formats
        wpb = cfg.axi_width // f.wt_linear.width

        def need(cond, msg):
            if not cond:
                raise ConfigError(f"config {cfg.name!r}: MoE gate: {msg}")

        need((f.fm.width, f.fm.frac) == (32, 22),
             f"fm_t must be ap_fixed<32,10> (the hls::exp of spec Appendix B); got {f.fm}")
        need(cfg.axi_width % f.wt_linear.width == 0,
             f"axi_width {cfg.axi_width} is not a multiple of the {f.wt_linear.width}-bit "
             f"gate weight")
        need(wpb % cfg.feature_block == 0,
             f"a weight beat holds {wpb} weights, not a multiple of the "
             f"{cfg.feature_block}-wide feature block")
        need(cfg.dim % wpb == 0,
             f"dim {cfg.dim} is not a multiple of the {wpb} gate weights per "
             f"{cfg.axi_width}-bit beat (spec §7 moe_w_gate rows must fill whole beats)")
        need(0 < f.wt_linear.frac < f.fm.width,
             f"gate weight fraction {f.wt_linear.frac} must be in 1..{f.fm.width - 1}")
        return cls(tokens=cfg.tokens, experts=cfg.num_experts, top_k=cfg.top_k, dim=cfg.dim,
                   feature_block=cfg.feature_block, feature_blocks=cfg.feature_blocks,
                   weights_per_beat=wpb, fm_width=f.fm.width, fm_frac=f.fm.frac,
                   w_width=f.wt_linear.width, w_frac=f.wt_linear.frac,
                   slots=SUM_LOOP_STAGES)

    # ------------------------------------------------------------ derived sizes
    @property
    def blocks_per_beat(self) -> int:
        return self.weights_per_beat // self.feature_block

    @property
    def words_per_expert(self) -> int:
        """Weight beats per expert row (= weight memory depth)."""
        return self.dim // self.weights_per_beat

    @property
    def weight_beats(self) -> int:
        """Weight beats of one layer's gate ([E][dim] int16)."""
        return self.experts * self.words_per_expert

    @property
    def tree_levels(self) -> int:
        """Adder-tree levels over the feature_block floored products per expert."""
        return _clog2(self.feature_block)

    @property
    def mac_stages(self) -> int:
        """Stages from the x handshake to the logit-buffer write of the token's last block."""
        return MAC_FIXED_STAGES + self.tree_levels

    @property
    def groups(self) -> int:
        """Scan groups of ``slots`` tokens per layer (the last one may be partial)."""
        return -(-self.tokens // self.slots)

    @property
    def buffer_tokens(self) -> int:
        """Logit buffer depth in tokens (a power of two): two groups plus the tokens that
        arrive while a group's last logits are still in the MAC pipeline."""
        need = 2 * self.slots + -(-(self.mac_stages + 1) // self.feature_blocks) + 1
        return 1 << _clog2(need)

    @property
    def token_bits(self) -> int:
        return max(1, _clog2(self.tokens))

    @property
    def expert_bits(self) -> int:
        return max(1, _clog2(self.experts))

    @property
    def length_bits(self) -> int:
        """Bits of a queue length 0..tokens."""
        return max(1, self.tokens.bit_length())

    @property
    def slot_bits(self) -> int:
        return max(1, _clog2(self.slots))

    @property
    def queue_stride(self) -> int:
        """Entries per queue: ``tokens`` plus one spare that absorbs a dropped entry."""
        return self.tokens + 1

    @property
    def queue_words(self) -> int:
        """Queue memory entries: E queues of ``queue_stride`` (expert e at e·stride)."""
        return self.experts * self.queue_stride

    @property
    def ideal_cycles(self) -> int:
        """One 8-wide block per clock: tokens × feature blocks."""
        return self.tokens * self.feature_blocks

    @property
    def multipliers(self) -> int:
        """Gate-logit products per clock (E × feature_block), each one DSP48E2 (the 27-bit
        high part of x times w) plus a 5-bit × w LUT product."""
        return self.experts * self.feature_block


def gate_cycles(cfg: AcceleratorConfig, *, exp_latency: int, div_latency: int,
                nonempty: int | None = None) -> dict:
    """Cycle model of one layer with unthrottled streams and the weights already loaded.

    Counts from the first x handshake (cycle 0) to the ``release`` handshake (release
    offered throughout), inclusive.
    Tokens are accepted one block per clock unless the logit buffer is full; a scan group
    starts when its tokens' logits are written and the previous group is done, and takes
    E × slots cycles; the tail is the fixed latency of the last group's last token through
    exp, the sum loop, the serialiser (top_k items), exp, divide, the queue writer and the
    meta scan over all E experts.  ``exp_latency``/``div_latency`` are the instantiated
    units' ``latency``; ``nonempty`` is unused by the count (the meta scan visits every
    expert) and only reported.
    """
    g = MoeGateGeometry.from_config(cfg)
    T, FB, R, E = g.tokens, g.feature_blocks, g.slots, g.experts
    D = g.buffer_tokens
    accept = []            # cycle of each token's first block
    written = []           # cycle from which a token's logits count as written
    group_end = []         # cycle after the last scan item of a group left stage 0
    group_start = []
    t_free = 0
    for t in range(T):
        start = t_free
        # the token needs the group that held buffer slot t - D finished
        if t >= D:
            old_group = (t - D) // R
            while len(group_end) <= old_group:   # schedule groups as they become ready
                _schedule(group_start, group_end, written, g)
            start = max(start, group_end[old_group])
        accept.append(start)
        last = start + FB - 1
        written.append(last + g.mac_stages + 1)
        t_free = last + 1
    while len(group_end) < g.groups:
        _schedule(group_start, group_end, written, g)
    # the last group's valid tokens (slots 0..v-1) reach their last expert on consecutive
    # items; each then passes the scan output register (SCAN_STAGES), exp, the sum pipeline
    # (SUM_STAGES), the serialiser FIFO (+1) and register (+1), which emits top_k items per
    # token back to back; then exp, divide, the queue writer, and the meta scan over all E
    # experts (one per cycle, output registered) before the release is taken.
    v = T - (g.groups - 1) * R
    s_prev = None
    for r in range(v):
        item = group_start[-1] + (E - 1) * R + r
        ready = item + SCAN_STAGES + exp_latency + SUM_STAGES + 2
        s_prev = ready if s_prev is None else max(ready, s_prev + g.top_k)
    t_ser = s_prev + g.top_k - 1            # last numerator item enters exp
    t_div = t_ser + exp_latency + div_latency
    t_done = t_div + WRITE_STAGES           # routing complete seen by the meta scan
    t_meta = t_done + E                     # all experts visited: release taken
    total = t_meta + 1
    return dict(cycles=total, ideal_cycles=g.ideal_cycles,
                input_cycles=accept[-1] + FB, input_stall_cycles=accept[-1] + FB - T * FB,
                groups=g.groups, group_cycles=E * R, last_group_start=group_start[-1],
                tail_cycles=total - (accept[-1] + FB), slots=R, buffer_tokens=D,
                blocks_per_cycle=round(T * FB / total, 4), nonempty_experts=nonempty)


def _schedule(group_start, group_end, written, g: MoeGateGeometry) -> None:
    """Schedule the next scan group if all its tokens are accepted (else raise)."""
    k = len(group_end)
    last_tok = min((k + 1) * g.slots, g.tokens) - 1
    if last_tok >= len(written):
        raise RuntimeError("cycle model: a group needed before its tokens were accepted "
                           "(logit buffer too small)")
    start = max(written[last_tok], group_end[-1] if group_end else 0)
    group_start.append(start)
    group_end.append(start + g.experts * g.slots)
