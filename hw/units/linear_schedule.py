"""Geometry and cycle model of the unified linear engine (spec §4.3), which also runs the
patch embedding (spec §4.1) as a pixel-operand pass.

The engine visits token → out-tile ``ob`` → in-tile ``ib`` (innermost) and retires one
*tile step* (``tile_out × tile_in`` multiply-accumulates) per clock when its streams keep up.
Everything here is derived from the :class:`AcceleratorConfig` and an operand format
(:class:`LinearFormat`: fm_t × wt_linear for the linear layers; :func:`patch_format`, pixel ×
wt_patch_embed, is the operand format of a command's ``pixel`` mode); :func:`pass_cycles` is
the cycle model checked against the RTL.

Pixel mode: a uint8 pixel enters a 32-bit x lane zero-extended and shifted left by
:attr:`LinearGeometry.pixel_lshift` (linear floor shift − patch floor shift = 14 − 2), so the
engine's one multiplier and its ``>> 14`` floor give ⌊P·2^12·W / 2^14⌋ = ⌊P·W / 4⌋, the patch
embedding's product (spec §4.1) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.gelu import Gelu

#: int16 raw weights (every wt_* format is 16 bits wide, spec §7)
WEIGHT_BITS = 16
#: weight/bias banks: ping (0), pong (1) and the patch embedding's one-time weights (2)
BANKS = 3
PATCH_BANK = 2


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


def patch_in(cfg: AcceleratorConfig) -> int:
    """Inputs of the patch embedding as a linear layer: C·p·p pixels per patch."""
    return cfg.image_channels * cfg.patch_size ** 2


def layer_shapes(cfg: AcceleratorConfig) -> dict[str, tuple[int, int]]:
    """(in, out) of every layer the engine serves (the patch embedding in pixel mode)."""
    d = cfg.dim
    return {"attn": (d, d), "fc1": (d, cfg.mlp_hidden), "fc2": (cfg.mlp_hidden, d),
            "expert_fc1": (d, cfg.expert_hidden), "expert_fc2": (cfg.expert_hidden, d),
            "patch_embed": (patch_in(cfg), d)}


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
    pixel_bits: int  # pixel-mode input element width (uint8)
    pixel_per_beat: int  # pixels per input beat
    pixel_lshift: int  # a pixel's left shift into its x lane (linear shift − patch shift)

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> "LinearGeometry":
        fmt, pfmt = linear_format(cfg), patch_format(cfg)
        shapes = layer_shapes(cfg)
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
        ppb = W // pfmt.x_width
        for key, (i, o) in shapes.items():
            per = ppb if key == "patch_embed" else xpb
            need(i % TI == 0 and o % TO == 0,
                 f"{key} {i}→{o} is not a multiple of the {TI}×{TO} tile")
            need(i % per == 0, f"{key}: {i} inputs are not a whole number of {per}-element beats")
        pt = TI * pfmt.x_width
        need(W % pt == 0 and ((W // pt) & (W // pt - 1)) == 0,
             f"pixel mode: a {TI}-wide tile of {pfmt.x_width}-bit pixels ({pt} bits) must fit "
             f"a {W}-bit beat a power-of-two number of times (use linear_tile_in <= "
             f"{W // pfmt.x_width})")
        lsh = fmt.shift - pfmt.shift
        need(0 <= lsh and pfmt.x_width + lsh < fmt.x_width,
             f"pixel mode: the patch floor shift {pfmt.shift} and the linear one {fmt.shift} "
             f"leave a pixel lane shift of {lsh}, outside 0..{fmt.x_width - pfmt.x_width - 1}")
        big, small = max(TI * fmt.x_width, W), min(TI * fmt.x_width, W)
        need(big % small == 0 and ((big // small) & (big // small - 1)) == 0,
             f"a {TI}-wide input tile of {fmt.x_width}-bit elements and a {W}-bit beat must be "
             f"power-of-two multiples of each other")
        return cls(fmt=fmt, tile_in=TI, tile_out=TO, feature_block=cfg.feature_block,
                   beat_bits=W, x_per_beat=xpb, w_per_beat=wpb,
                   max_in=max(i for i, _ in shapes.values()),
                   max_out=max(o for _, o in shapes.values()),
                   max_tiles=max(i * o for i, o in shapes.values()) // (TI * TO),
                   tokens=cfg.tokens, pixel_bits=pfmt.x_width, pixel_per_beat=ppb,
                   pixel_lshift=lsh)

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
        """Input-row cache words per bank (one full row of ``max_in`` inputs; a pixel row
        takes one word per beat)."""
        return max(self.max_in * self.fmt.x_width // self.x_word_bits,
                   self.max_in // self.pixel_per_beat)

    @property
    def pixel_tiles_per_beat(self) -> int:
        """Pixel-mode input tiles per beat (and per row-cache word)."""
        return self.beat_bits // (self.tile_in * self.pixel_bits)

    @property
    def out_beats_per_tile(self) -> int:
        return self.tile_out // self.feature_block

    @property
    def token_bits(self) -> int:
        return max(1, (self.tokens - 1).bit_length())

    def in_beats(self, n_in: int, pixel: bool = False) -> int:
        """Input beats of a row of ``n_in`` elements (``pixel``: uint8 pixels)."""
        return n_in // (self.pixel_per_beat if pixel else self.x_per_beat)

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


def geometry(cfg: AcceleratorConfig) -> LinearGeometry:
    return LinearGeometry.from_config(cfg)


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


def bias_hold(g: LinearGeometry) -> int:
    """Cycles a freed bank's bias tiles stay unwritable after its pass's last step: the
    bias is read one stage before the accumulator, not at issue, so a load into the bank
    that starts right away would overwrite biases still to be read.  Hidden by the weight
    beats (a load's biases stream with, or after, many more weight beats)."""
    return acc_stage(g)


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
    from the next cycle, then the bank's full flag is set.  (Into a bank freed less than
    :func:`bias_hold` cycles before, the biases wait that long; the weight beats hide it.)"""
    return max(g.weight_beats(n_in, n_out), g.bias_beats(n_out)) + 2


def pass_cycles(g: LinearGeometry, n_in: int, n_out: int, tokens: int, *, gelu: bool = False,
                gelu_latency: int | None = None, weights_ready: int = 0,
                pixel: bool = False) -> PassCycles:
    """Cycles of one pass with every stream at full rate (``pixel``: uint8 pixel rows, 32 per
    beat, as the patch embedding's).

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
    in_beats = g.in_beats(n_in, pixel)
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
