"""The accelerator's schedule (spec §6.2) as data: one :class:`Stage` per ``debug_id`` stop.

The sequencer in :mod:`moevit.hw.top.core` runs this program from a ROM, the top-level
cycle model walks it, and the testbenches read which buffer each stage leaves its tensor in.
Everything a stage moves is a list of :class:`Desc` (a DRAM access pattern) per *channel*:

* readers ``R_WEIGHTS`` (linear weights then biases), ``R_A`` (the main operand), ``R_B``
  (the second operand), ``R_C`` (LayerNorm/gate parameters, softmax info, pos_embed);
* writers ``W_OUT`` (the stage's result), ``W_SCORES`` and ``W_INFO`` (attention Q·K).

Reader channel k and writer channel k use AXI master k (:data:`READ_PORT`, :data:`WRITE_PORT`);
the channel count fixes the top's minimum ``mem_ports``.  The MoE stage's expert loop is
data-dependent (the gate decides which rows each expert reads); its entry carries the layer's
base offsets and the sequencer's expert FSM derives the per-token descriptors
(:class:`MoeOp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError

#: stage kinds (ROM ``kind`` codes are their indices)
KINDS = ("patch", "ln", "linear", "qk", "av", "residual", "moe")
#: reader channels
R_WEIGHTS, R_A, R_B, R_C = range(4)
#: writer channels
W_OUT, W_SCORES, W_INFO = range(3)
READ_CHANNELS, WRITE_CHANNELS = 4, 3
READ_PORT = (0, 1, 2, 3)
WRITE_PORT = (0, 1, 2)
#: descriptor slots per channel in one ROM entry (weights + biases, gains + biases)
SLOTS = 2
#: debug ids (spec §6.2)
PATCH_EMBED_DEBUG_ID = 256
LAYER_DEBUG_STRIDE = 16
#: pointers advanced by image index (the rest hold one image's tensors)
PER_IMAGE = ("images", "x")
#: pointer names the sequencer can address, in ROM ``ptr`` code order
POINTERS = ("images", "x", "tmp1", "tmp2", "tmp3", "tmp4", "tmp_hidden", "attn",
            "attn_softmax_info", "patch_embed_weights", "patch_embed_bias", "pos_embed",
            "attn_weights", "attn_bias", "moe_w_gate", "moe_weights_l1", "moe_bias_l1",
            "moe_weights_l2", "moe_bias_l2", "vit_weights_l1", "vit_bias_l1",
            "vit_weights_l2", "vit_bias_l2", "norm_weights", "norm_bias")
FM_BYTES, WT_BYTES = 4, 2


@dataclass(frozen=True)
class Desc:
    """``outer`` × ``inner`` transfers of ``beats`` beats at ``ptr + offset +
    o·outer_stride + i·inner_stride`` (+ image × image stride for :data:`PER_IMAGE`)."""

    ptr: str
    offset: int
    beats: int
    inner: int = 1
    inner_stride: int = 0
    outer: int = 1
    outer_stride: int = 0

    @property
    def total_beats(self) -> int:
        return self.beats * self.inner * self.outer


@dataclass(frozen=True)
class LinearOp:
    """The linear engine's ``wcmd``/``cmd`` fields for one pass."""

    bank: int
    in_tiles: int
    out_tiles: int
    tokens: int
    w_beats: int            # weight beats on R_WEIGHTS before the bias beats
    attn_bias: bool = False
    gelu: bool = False
    score: bool = False
    add: bool = False
    keep: bool = False
    x_beats_per_row: int = 0
    pixel: bool = False     # uint8 pixel rows (the patch embedding)
    cls: bool = False       # the first row is the cls row: no bias (a zero row + pos_embed[0])


@dataclass(frozen=True)
class MoeOp:
    """Byte offsets of one MoE layer's arrays (expert 0) and the per-expert strides."""

    gate_offset: int
    w1_offset: int
    b1_offset: int
    w2_offset: int
    b2_offset: int


@dataclass(frozen=True)
class Replay:
    """The attention's K (``qk``) or V (``av``) stream through the on-chip replay buffer
    (:class:`~moevit.hw.units.stream_replay.StreamReplay`): reader ``channel``'s one
    descriptor is read from DRAM once and the unit takes it ``passes`` times (one per query
    block)."""

    channel: int
    passes: int


@dataclass(frozen=True)
class Stage:
    kind: str
    debug_id: int
    layer: int | None
    name: str
    reads: dict[int, tuple[Desc, ...]] = field(default_factory=dict)
    writes: dict[int, tuple[Desc, ...]] = field(default_factory=dict)
    linear: LinearOp | None = None
    moe: MoeOp | None = None
    #: the weight load this stage issues: its ``R_WEIGHTS`` beats fill ``wload.bank``
    wload: LinearOp | None = None
    #: ``wload`` is the next stage's (a prefetch); the core drops it when this stage is the
    #: ``debug_id`` stop, so no loaded bank outlives a run
    wload_ahead: bool = False
    replay: Replay | None = None

    @property
    def code(self) -> int:
        return KINDS.index(self.kind)

    def unit_beats(self, channel: int) -> int:
        """Beats reader ``channel`` delivers to the stage's unit (DRAM beats, times the
        replay passes when the channel goes through the replay buffer)."""
        beats = sum(d.total_beats for d in self.reads.get(channel, ()))
        if self.replay is not None and self.replay.channel == channel:
            beats *= self.replay.passes
        return beats


def image_stride(cfg: AcceleratorConfig, ptr: str) -> int:
    """Bytes between consecutive images in a :data:`PER_IMAGE` buffer (0 otherwise)."""
    if ptr == "images":
        return cfg.image_channels * cfg.image_height * cfg.image_width
    if ptr == "x":
        return cfg.tokens * cfg.dim * FM_BYTES
    return 0


def fm_beats(cfg: AcceleratorConfig, words: int) -> int:
    return -(-words // cfg.feature_block)


def wt_beats(cfg: AcceleratorConfig, words: int) -> int:
    per = cfg.axi_width // (8 * WT_BYTES)
    if words % per:
        raise ConfigError(f"config {cfg.name!r}: a weight row of {words} int16 is not a whole "
                          f"number of {cfg.axi_width}-bit beats ({per} per beat)")
    return words // per


def _tiles(n: int, tile: int, what: str, cfg) -> int:
    if n % tile:
        raise ConfigError(f"config {cfg.name!r}: {what} {n} is not a multiple of the linear "
                          f"tile {tile}")
    return n // tile


def linear_stage(cfg, debug_id, layer, name, *, src, dst, n_in, n_out, w_ptr, w_off, b_ptr,
                 b_off, bank, attn_bias=False, gelu=False) -> Stage:
    """A direct-mode linear pass over all tokens: ``dst = Lin(src)``."""
    T = cfg.tokens
    op = LinearOp(bank=bank, in_tiles=_tiles(n_in, cfg.linear_tile_in, "input width", cfg),
                  out_tiles=_tiles(n_out, cfg.linear_tile_out, "output width", cfg), tokens=T,
                  w_beats=wt_beats(cfg, n_out * n_in), attn_bias=attn_bias, gelu=gelu,
                  x_beats_per_row=fm_beats(cfg, n_in))
    return Stage("linear", debug_id, layer, name,
                 reads={R_WEIGHTS: (Desc(w_ptr, w_off, op.w_beats),
                                    Desc(b_ptr, b_off, wt_beats(cfg, n_out))),
                        R_A: (Desc(src, 0, fm_beats(cfg, T * n_in)),)},
                 writes={W_OUT: (Desc(dst, 0, fm_beats(cfg, T * n_out)),)}, linear=op,
                 wload=op)


def prefetch_weights(stages: list[Stage]) -> list[Stage]:
    """Move every linear stage's weight load into the stage before it (cross-stage prefetch).

    The engine loads a bank only when it is free and computes only from a loaded bank, so the
    next stage's weights stream into the other bank while this stage runs.  The stage before
    must leave the weight reader free: not the MoE stage (its streamer owns it) nor the patch
    stage (the patch engine's preload)."""
    out = list(stages)
    for i in range(1, len(out)):
        st, prev = out[i], out[i - 1]
        if (st.kind != "linear" or st.wload is None or prev.kind in ("moe", "patch")
                or R_WEIGHTS in prev.reads):
            continue
        out[i - 1] = replace(prev, reads={**prev.reads, R_WEIGHTS: st.reads[R_WEIGHTS]},
                             wload=st.wload, wload_ahead=True)
        out[i] = replace(st, reads={k: v for k, v in st.reads.items() if k != R_WEIGHTS},
                         wload=None)
    return out


def without_prefetch(st: Stage) -> Stage:
    """``st`` as the core runs it when it is the ``debug_id`` stop (no load ahead)."""
    if not st.wload_ahead:
        return st
    return replace(st, reads={k: v for k, v in st.reads.items() if k != R_WEIGHTS},
                   wload=None, wload_ahead=False)


def patch_stage(cfg: AcceleratorConfig) -> Stage:
    """Patch embedding of one image on the linear engine (pixel mode, the patch bank):
    strips of ``patch_size`` rows per channel (the im2col unit reorders them and puts an
    all-zero cls row first), pos_embed as the accumulate operand, output into x.  The cls
    row gets no bias (``cls``), so token 0 is pos_embed[0] (spec §4.1)."""
    from moevit.hw.units.linear_schedule import PATCH_BANK, geometry
    g = geometry(cfg)
    p, C, H, W = cfg.patch_size, cfg.image_channels, cfg.image_height, cfg.image_width
    px_per_beat = cfg.axi_width // 8
    if W % px_per_beat:
        raise ConfigError(f"config {cfg.name!r}: image width {W} is not a whole number of "
                          f"{px_per_beat}-pixel beats")
    T, D = cfg.tokens, cfg.dim
    k_in = C * p * p
    op = LinearOp(bank=PATCH_BANK, in_tiles=_tiles(k_in, g.tile_in, "patch length", cfg),
                  out_tiles=_tiles(D, g.tile_out, "dim", cfg), tokens=T,
                  w_beats=wt_beats(cfg, D * k_in), add=True, keep=True,
                  x_beats_per_row=k_in // px_per_beat, pixel=True, cls=True)
    strip = Desc("images", 0, p * W // px_per_beat, inner=C, inner_stride=H * W,
                 outer=H // p, outer_stride=p * W)
    return Stage("patch", PATCH_EMBED_DEBUG_ID, None, "patch_embed",
                 reads={R_A: (strip,), R_B: (Desc("pos_embed", 0, fm_beats(cfg, T * D)),)},
                 writes={W_OUT: (Desc("x", 0, fm_beats(cfg, T * D)),)}, linear=op)


def patch_weight_load(cfg: AcceleratorConfig) -> tuple[Desc, Desc]:
    """The one-time patch-embedding weight and bias reads (``reload_one_time_weights``)."""
    k_in = cfg.image_channels * cfg.patch_size ** 2
    return (Desc("patch_embed_weights", 0, wt_beats(cfg, cfg.dim * k_in)),
            Desc("patch_embed_bias", 0, wt_beats(cfg, cfg.dim)))


def layer_stages(cfg: AcceleratorConfig, L: int) -> list[Stage]:
    """The stages of encoder layer ``L`` in schedule order."""
    T, D = cfg.tokens, cfg.dim
    act = fm_beats(cfg, T * D)
    base = LAYER_DEBUG_STRIDE * L
    qb = cfg.query_blocks

    def attn_w(j):
        return (D * D * (L * 4 + j)) * WT_BYTES

    def attn_b(j):
        return (D * (L * 4 + j)) * WT_BYTES

    def lin(k, name, src, dst, j, bank):
        return linear_stage(cfg, base + k, L, name, src=src, dst=dst, n_in=D, n_out=D,
                            w_ptr="attn_weights", w_off=attn_w(j), b_ptr="attn_bias",
                            b_off=attn_b(j), bank=bank, attn_bias=True)

    def ln(k, n):
        off = (L * 2 + n) * D * WT_BYTES
        return Stage("ln", base + k, L, f"ln{n + 1}",
                     reads={R_A: (Desc("x", 0, act),),
                            R_C: (Desc("norm_weights", off, wt_beats(cfg, D)),
                                  Desc("norm_bias", off, wt_beats(cfg, D)))},
                     writes={W_OUT: (Desc("tmp1", 0, act),)})

    def residual(k, name):
        return Stage("residual", base + k, L, name,
                     reads={R_A: (Desc("x", 0, act),), R_B: (Desc("tmp3", 0, act),)},
                     writes={W_OUT: (Desc("x", 0, act),)})

    from moevit.hw.units.attention_schedule import geometry as attn_geometry
    ag = attn_geometry(cfg)
    out = [ln(1, 0),
           lin(2, "q", "tmp1", "tmp2", 0, 0),
           lin(3, "k", "tmp1", "tmp3", 1, 1),
           Stage("qk", base + 4, L, "score_buffer",
                 reads={R_A: (Desc("tmp2", 0, act),), R_B: (Desc("tmp3", 0, act),)},
                 writes={W_SCORES: (Desc("attn", 0, ag.score_beats),),
                         W_INFO: (Desc("attn_softmax_info", 0, T),)},
                 replay=Replay(R_B, qb)),
           lin(5, "v", "tmp1", "tmp2", 2, 0),
           Stage("av", base + 6, L, "av",
                 reads={R_A: (Desc("tmp2", 0, act),),
                        R_B: (Desc("attn", 0, ag.score_beats),),
                        R_C: (Desc("attn_softmax_info", 0, T),)},
                 writes={W_OUT: (Desc("tmp1", 0, act),)},
                 replay=Replay(R_A, qb)),
           lin(7, "proj", "tmp1", "tmp3", 3, 1),
           residual(8, "resid1"),
           ln(9, 1)]
    if cfg.is_moe(L):
        mi, E, Dh = cfg.moe_index(L), cfg.num_experts, cfg.expert_hidden
        op = MoeOp(gate_offset=mi * E * D * WT_BYTES,
                   w1_offset=mi * E * Dh * D * WT_BYTES, b1_offset=mi * E * Dh * WT_BYTES,
                   w2_offset=mi * E * D * Dh * WT_BYTES, b2_offset=mi * E * D * WT_BYTES)
        out.append(Stage("moe", base + 11, L, "mlp_out", moe=op))
    else:
        di, H = cfg.dense_index(L), cfg.mlp_hidden
        out.append(linear_stage(cfg, base + 10, L, "hidden", src="tmp1", dst="tmp_hidden",
                                n_in=D, n_out=H, w_ptr="vit_weights_l1",
                                w_off=di * H * D * WT_BYTES, b_ptr="vit_bias_l1",
                                b_off=di * H * WT_BYTES, bank=0, gelu=True))
        out.append(linear_stage(cfg, base + 11, L, "mlp_out", src="tmp_hidden", dst="tmp3",
                                n_in=H, n_out=D, w_ptr="vit_weights_l2",
                                w_off=di * D * H * WT_BYTES, b_ptr="vit_bias_l2",
                                b_off=di * D * WT_BYTES, bank=1))
    out.append(residual(12, "out"))
    return out


def program(cfg: AcceleratorConfig, prefetch: bool = True) -> list[Stage]:
    """Every stage of one image in schedule order (patch embedding first); with ``prefetch``
    (the core's program) each linear stage's weights load during the stage before it
    (:func:`prefetch_weights`)."""
    if (cfg.depth - 1) * LAYER_DEBUG_STRIDE + 12 >= PATCH_EMBED_DEBUG_ID:
        raise ConfigError(f"config {cfg.name!r}: depth {cfg.depth} has debug ids that collide "
                          f"with patch embedding's {PATCH_EMBED_DEBUG_ID} (at most 15 layers)")
    out = [patch_stage(cfg)]
    for L in range(cfg.depth):
        out += layer_stages(cfg, L)
    return prefetch_weights(out) if prefetch else out


def moe_strides(cfg: AcceleratorConfig) -> dict[str, int]:
    """Per-expert byte strides of the MoE arrays and the row strides the expert loop uses."""
    D, Dh = cfg.dim, cfg.expert_hidden
    return {"w1": Dh * D * WT_BYTES,
            "b1": Dh * WT_BYTES, "w2": D * Dh * WT_BYTES, "b2": D * WT_BYTES,
            "row": D * FM_BYTES, "hidden_row": Dh * FM_BYTES}
