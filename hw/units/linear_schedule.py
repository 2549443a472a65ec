"""Geometry and cycle model of the unified linear engine (spec §4.3) and of the patch
embedding that reuses it (spec §4.1).

The engine visits token → out-tile ``ob`` → in-tile ``ib`` (innermost) and retires one
*tile step* (``tile_out × tile_in`` multiply-accumulates) per clock when its streams keep up.
Everything here is derived from the :class:`AcceleratorConfig` and an operand format
(:class:`LinearFormat`: fm_t × wt_linear for the linear layers, pixel × wt_patch_embed for
the patch embedding); :func:`pass_cycles` is the cycle model checked against the RTL.
"""

from __future__ import annotations

from dataclasses import dataclass

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.gelu import Gelu

#: int16 raw weights (every wt_* format is 16 bits wide, spec §7)
WEIGHT_BITS = 16


@dataclass(frozen=True)
class LinearFormat:
    """Operand formats of one engine instance."""

    name: str
    x_width: int  # input element width (bits)
    x_signed: bool
    shift: int  # x_frac + w_frac - fm_frac: per-product floor shift to fm_t
    gelu: bool  # GELU lanes present on the output path
    score: bool  # score multiply present on the output path


def linear_format(cfg: AcceleratorConfig) -> LinearFormat:
    """fm_t inputs × wt_linear weights (Q, K, V, proj, FC1, FC2, experts)."""
    f = cfg.formats
    return LinearFormat("linear", f.fm.width, True, f.fm.frac + f.wt_linear.frac - f.fm.frac,
                        gelu=True, score=True)


def patch_format(cfg: AcceleratorConfig) -> LinearFormat:
    """uint8 pixels × wt_patch_embed weights (conv as a linear layer over a patch)."""
    f = cfg.formats
    return LinearFormat("patch", f.pixel.width, f.pixel.signed,
                        f.pixel.frac + f.wt_patch_embed.frac - f.fm.frac, gelu=False, score=False)


def layer_shapes(cfg: AcceleratorConfig, fmt: LinearFormat) -> dict[str, tuple[int, int]]:
    """(in, out) of every layer the engine instance serves."""
    if fmt.name == "patch":
        return {"patch_embed": (cfg.image_channels * cfg.patch_size ** 2, cfg.dim)}
    d = cfg.dim
    return {"attn": (d, d), "fc1": (d, cfg.mlp_hidden), "fc2": (cfg.mlp_hidden, d),
            "expert_fc1": (d, cfg.expert_hidden), "expert_fc2": (cfg.expert_hidden, d)}


@dataclass(frozen=True)
class LinearGeometry:
    """Sizes of one engine instance (all from the config and the format)."""

    fmt: LinearFormat
    tile_in: int  # TI
    tile_out: int  # TO
    feature_block: int  # fm_t per output beat
    beat_bits: int
    x_per_beat: int  # input elements per beat
    w_per_beat: int  # weights (and biases) per beat
    max_in: int
    max_out: int
    max_tiles: int  # weight tiles per bank
    tokens: int

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig, fmt: LinearFormat) -> "LinearGeometry":
        shapes = layer_shapes(cfg, fmt)
        TI, TO, W = cfg.linear_tile_in, cfg.linear_tile_out, cfg.axi_width
        wpb = W // WEIGHT_BITS
        xpb = W // fmt.x_width

        def need(cond, msg):
            if not cond:
                raise ConfigError(f"config {cfg.name!r}: {fmt.name} engine: {msg}")

        need(W % fmt.x_width == 0, f"axi_width {W} is not a multiple of the {fmt.x_width}-bit "
             f"input elements")
        for t, name in ((TI, "linear_tile_in"), (TO, "linear_tile_out")):
            need(t % wpb == 0, f"{name} {t} must be a multiple of the {wpb} weights of a "
                 f"{W}-bit weight beat (try {max(wpb, t // wpb * wpb)})")
        for key, (i, o) in shapes.items():
            need(i % TI == 0 and o % TO == 0,
                 f"{key} {i}→{o} is not a multiple of the {TI}×{TO} tile")
            need(i % xpb == 0, f"{key}: {i} inputs are not a whole number of {xpb}-element beats")
        big, small = max(TI * fmt.x_width, W), min(TI * fmt.x_width, W)
        need(big % small == 0 and ((big // small) & (big // small - 1)) == 0,
             f"a {TI}-wide input tile of {fmt.x_width}-bit elements and a {W}-bit beat must be "
             f"power-of-two multiples of each other")
        return cls(fmt=fmt, tile_in=TI, tile_out=TO, feature_block=cfg.feature_block,
                   beat_bits=W, x_per_beat=xpb, w_per_beat=wpb,
                   max_in=max(i for i, _ in shapes.values()),
                   max_out=max(o for _, o in shapes.values()),
                   max_tiles=max(i * o for i, o in shapes.values()) // (TI * TO),
                   tokens=cfg.tokens)

    # ------------------------------------------------------------ derived
    @property
    def max_in_tiles(self) -> int:
        return self.max_in // self.tile_in

    @property
    def max_out_tiles(self) -> int:
        return self.max_out // self.tile_out

    @property
    def x_word_bits(self) -> int:
        """Width of an input-row cache word: one tile or one beat, whichever is wider."""
        return max(self.tile_in * self.fmt.x_width, self.beat_bits)

    @property
    def beats_per_xword(self) -> int:
        return self.x_word_bits // self.beat_bits

    @property
    def tiles_per_xword(self) -> int:
        return self.x_word_bits // (self.tile_in * self.fmt.x_width)

    @property
    def x_words(self) -> int:
        """Input-row cache words per bank (one full row of ``max_in`` inputs)."""
        return self.max_in * self.fmt.x_width // self.x_word_bits

    @property
    def out_beats_per_tile(self) -> int:
        return self.tile_out // self.feature_block

    @property
    def token_bits(self) -> int:
        return max(1, (self.tokens - 1).bit_length())

    def in_beats(self, n_in: int) -> int:
        return n_in // self.x_per_beat

    def weight_beats(self, n_in: int, n_out: int) -> int:
        return n_in * n_out // self.w_per_beat

    def bias_beats(self, n_out: int) -> int:
        return n_out // self.w_per_beat

    def check_shape(self, n_in: int, n_out: int, tokens: int) -> None:
        """Raise ConfigError for a pass this engine cannot run."""
        problems = []
        if n_in % self.tile_in or not 0 < n_in <= self.max_in:
            problems.append(f"{n_in} inputs (multiples of {self.tile_in} up to {self.max_in})")
        if n_out % self.tile_out or not 0 < n_out <= self.max_out:
            problems.append(f"{n_out} outputs (multiples of {self.tile_out} up to "
                            f"{self.max_out})")
        if n_in * n_out > self.max_tiles * self.tile_in * self.tile_out:
            problems.append(f"{n_in}×{n_out} weights (a bank holds {self.max_tiles} tiles)")
        if not 0 < tokens <= self.tokens:
            problems.append(f"{tokens} tokens (1..{self.tokens})")
        if problems:
            raise ConfigError(f"{self.fmt.name} engine cannot run " + ", ".join(problems))


def geometry(cfg: AcceleratorConfig, fmt: LinearFormat | None = None) -> LinearGeometry:
    return LinearGeometry.from_config(cfg, fmt or linear_format(cfg))


# ---------------------------------------------------------------------------- pipeline
#: register stages from a step's issue to its accumulator update, without the adder tree:
#: memory read (1), multiplier input registers (1), multiplier output registers (1)
PRE_TREE_STAGES = 3
#: adder-tree levels between pipeline registers
TREE_LEVELS_PER_STAGE = 2


def tree_stages(tile_in: int) -> int:
    """Registered stages of the per-output adder tree over ``tile_in`` products."""
    levels = (tile_in - 1).bit_length()
    return -(-levels // TREE_LEVELS_PER_STAGE)


def acc_stage(g: LinearGeometry) -> int:
    """Cycles from a step's issue to its accumulator update (and, for the last in-tile, its
    output-FIFO write)."""
    return PRE_TREE_STAGES + tree_stages(g.tile_in)


# ---------------------------------------------------------------------------- cycle model
@dataclass(frozen=True)
class PassCycles:
    steps: int  # ideal cycles: tokens × out_tiles × in_tiles
    cycles: int  # modelled cycles from the command handshake to the last output beat
    first_step: int  # cycle of the first tile step after the command handshake
    per_token: int  # cycles per token in steady state
    tail: int  # cycles from the last step to the last output beat
    issue_cycles: int  # from the command handshake to the next command's handshake

    @property
    def steps_per_cycle(self) -> float:
        return self.steps / self.cycles


def load_cycles(g: LinearGeometry, n_in: int, n_out: int) -> int:
    """Cycles from a weight-load command's handshake (bank free, streams at full rate) to
    the first cycle a step may use the bank: the weight and bias beats stream in parallel
    from the next cycle, then the bank's full flag is set."""
    return max(g.weight_beats(n_in, n_out), g.bias_beats(n_out)) + 2


def pass_cycles(g: LinearGeometry, n_in: int, n_out: int, tokens: int, *, gelu: bool = False,
                gelu_latency: int | None = None, weights_ready: int = 0) -> PassCycles:
    """Cycles of one pass with every stream at full rate.

    * The first step issues once the first input row is in the row cache (``in_beats``
      beats from the cycle after the command handshake, then the row's full flag) and the
      weight bank is loaded (``weights_ready`` cycles after the command handshake, see
      :func:`load_cycles`; 0 when the weights were loaded during the previous pass, i.e.
      the load is hidden).
    * Steady state: a token takes max(out_tiles × in_tiles steps, in_beats beats, out-tile
      drain) cycles -- the row cache is double-buffered, so the next row loads during the
      current token's steps; out-tiles drain at ``tile_out/8`` beats per cycle.
    * Tail: the last step's accumulator update (:func:`acc_stage`), the output tile FIFO,
      the serializer (``tile_out/8`` beats), the GELU lanes when used, the select / score
      pipeline, the output FIFO and the join with ``d`` (the y register).
    """
    g.check_shape(n_in, n_out, tokens)
    if gelu_latency is None:
        gelu_latency = Gelu.latency
    it, ot = n_in // g.tile_in, n_out // g.tile_out
    steps = tokens * ot * it
    in_beats = g.in_beats(n_in)
    per_token = max(ot * it, in_beats, ot * max(it, g.out_beats_per_tile))
    first = max(in_beats + 1, weights_ready)
    post = OUT_PIPE_STAGES + (gelu_latency if g.fmt.gelu else 0)
    tail = acc_stage(g) + 2 * FIFO_LATENCY + g.out_beats_per_tile - 1 + post + JOIN_STAGES
    issue = first + (tokens - 1) * per_token + ot * it
    cycles = first + (tokens - 1) * per_token + ot * max(it, g.out_beats_per_tile) + tail
    return PassCycles(steps, cycles, first, per_token, tail, issue)


#: output tile FIFO: write to first readable cycle (SyncFIFOBuffered)
FIFO_LATENCY = 2
#: output pipeline after the GELU lanes: select, score product, floor/select (then the
#: output FIFO)
OUT_PIPE_STAGES = 3
#: the y register that adds the ``d`` row
JOIN_STAGES = 1
