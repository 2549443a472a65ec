"""One source of truth for every parameter that shapes moevit.

`AcceleratorConfig` is a frozen dataclass read by the golden model, the Amaranth
constructors, the HLS ``#define`` header, the cocotb testbenches, the host layouts and
the cycle model.  Presets: ``edge-moe``, ``zcu104``, ``tiny``.  (The paper's ViT-S is a
float-model preset only, ``moevit.golden.float.model.float_preset("vit-s")``: its head dim 32
is not a power of 4, so the accelerator's shift-only attention scale cannot express it.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from functools import cached_property

from moevit.errors import ConfigError


@dataclass(frozen=True)
class FixedFormat:
    """A fixed-point format: ``width`` bits, ``int_bits`` integer bits (sign included when signed).

    Mirrors ``ap_fixed<width, int_bits>`` (signed) and ``ap_ufixed<width, int_bits>``.
    Values travel as raw integers R with value = R * 2**-frac.
    """

    width: int
    int_bits: int
    signed: bool = True

    def __post_init__(self):
        for f in ("width", "int_bits"):
            v = getattr(self, f)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                raise ConfigError(f"fixed-point {f} must be a whole number, not {v!r}")
        if not isinstance(self.signed, bool):
            raise ConfigError(f"fixed-point signed must be True or False, not {self.signed!r}")
        if self.width < 1 or self.width > 64:
            raise ConfigError(f"fixed-point width {self.width} is outside 1..64")
        if self.int_bits > self.width:
            raise ConfigError(f"int_bits {self.int_bits} exceeds width {self.width}")

    @property
    def frac(self) -> int:
        """Number of fractional bits F = width - int_bits."""
        return self.width - self.int_bits

    @property
    def raw_min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def raw_max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        return self.raw_min * 2.0 ** -self.frac

    @property
    def max(self) -> float:
        return self.raw_max * 2.0 ** -self.frac

    @property
    def ulp(self) -> float:
        return 2.0 ** -self.frac

    def __str__(self) -> str:
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.int_bits}>"

    def ctype(self) -> str:
        """The HLS C++ type spelling."""
        return str(self)


@dataclass(frozen=True)
class Formats:
    """Fixed-point formats of every tensor class (spec §3.1)."""

    fm: FixedFormat = FixedFormat(32, 10)
    wt_linear: FixedFormat = FixedFormat(16, 2)
    wt_attn_bias: FixedFormat = FixedFormat(16, 7)
    wt_bias: FixedFormat = FixedFormat(16, 5)
    wt_norm: FixedFormat = FixedFormat(16, 5)
    wt_patch_embed: FixedFormat = FixedFormat(16, 0)
    pixel: FixedFormat = FixedFormat(8, 0, signed=False)
    wt_wbias: FixedFormat = FixedFormat(18, 7)
    fm_frac: FixedFormat = FixedFormat(22, 0, signed=False)


class ViTShape:
    """Sizes derived from a ViT's fields, and the shape checks, shared by
    :class:`AcceleratorConfig` and the float model's ``FloatConfig``."""

    @property
    def grid_h(self) -> int:
        return self.image_height // self.patch_size

    @property
    def grid_w(self) -> int:
        return self.image_width // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def tokens(self) -> int:
        """Patches plus the cls token."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def _check_vit_shape(self, need) -> None:
        """Patch grid, heads, top-k and MoE layers; ``need(cond, msg)`` raises."""
        need(self.image_height % self.patch_size == 0 and self.image_width % self.patch_size == 0,
             f"image {self.image_height}x{self.image_width} is not a multiple of patch size "
             f"{self.patch_size}")
        need(self.dim % self.heads == 0, f"dim {self.dim} is not divisible by heads {self.heads}")
        need(1 <= self.top_k <= self.num_experts,
             f"top_k {self.top_k} must be in 1..num_experts ({self.num_experts})")
        for layer in self.moe_layers:
            need(0 <= layer < self.depth, f"MoE layer {layer} is outside 0..{self.depth - 1}")


#: query lanes P the attention unit (Amaranth and HLS) is built for
ATTN_PARALLEL_SUPPORTED = (1, 2, 4, 8)
#: highest clock a config may ask for (MHz); UltraScale+ fabric tops out well below it
MAX_CLOCK_MHZ = 1000.0


@dataclass(frozen=True)
class AcceleratorConfig(ViTShape):
    """Everything that shapes the model, the numerics and the hardware.

    Construct through :func:`preset` or directly; invalid combinations raise
    :class:`moevit.errors.ConfigError` naming what is wrong and what would be valid.
    """

    name: str = "custom"
    # --- model ---
    image_channels: int = 3
    image_height: int = 128
    image_width: int = 256
    patch_size: int = 16
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_hidden: int = 768
    num_experts: int = 16
    top_k: int = 2
    expert_hidden: int = 384
    num_tasks: int = 2
    moe_layers: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    layernorm_eps: float = 1e-6
    # --- numerics ---
    formats: Formats = field(default_factory=Formats)
    gelu_table_step_log2: int = 5  # table step 1/32
    gelu_table_entries: int = 177  # cut-off (entries-1)/32 = 5.5
    # --- hardware parallelism ---
    feature_block: int = 8  # fm_t per AXI beat (axi_width / fm width)
    linear_tile_in: int = 16  # LINEAR_IN_SIZE: inputs per tile step of the linear engine
    linear_tile_out: int = 16  # LINEAR_OUT_SIZE: outputs (accumulators) per tile step
    attn_parallel: int = 4  # P query rows in flight
    axi_width: int = 256
    clock_mhz: float = 300.0
    fpga_part: str = "xczu9eg-ffvb1156-2-e"
    board: str = "zcu102"
    # memory system (read by the cycle model, moevit.hw.perf; the RTL top reads mem_ports)
    mem_ports: int = 4  # AXI masters, one per PS-PL HP port (S_AXI_HP0..3_FPD)
    hp_port_width: int = 128  # bits per HP-port beat at the kernel clock
    dram_peak_gbs: float = 17.064  # PS DDR4-2133, 64-bit: 2133 MT/s x 8 B (ZCU102 and ZCU104)
    dram_efficiency: float = 0.7  # sustained / peak assumed for long sequential bursts
    activations_on_chip: bool = False  # False: every tensor round-trips DRAM (Edge-MoE)

    def __post_init__(self):
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"config {self.name!r}: {msg}")

        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_real(v):
            return (isinstance(v, numbers.Real) and not isinstance(v, bool)
                    and math.isfinite(v))

        for f in ("name", "fpga_part", "board"):
            v = getattr(self, f)
            need(isinstance(v, str) and v.strip() != "",
                 f"{f} must be a non-empty string (got {v!r})")
        for f in dataclasses.fields(self):  # every whole-number field, including ones added later
            if f.type in ("int", int):
                v = getattr(self, f.name)
                need(is_int(v), f"{f.name} must be a whole number (got {v!r})")
        for f in ("image_channels", "image_height", "image_width", "patch_size", "dim", "depth",
                  "heads", "mlp_hidden", "num_experts", "top_k", "expert_hidden", "num_tasks",
                  "feature_block", "linear_tile_in", "linear_tile_out", "attn_parallel",
                  "axi_width"):
            need(getattr(self, f) >= 1, f"{f} must be >= 1 (got {getattr(self, f)})")
        need(isinstance(self.moe_layers, tuple) and all(is_int(v) for v in self.moe_layers),
             f"moe_layers must be a tuple of layer numbers (got {self.moe_layers!r})")
        self._validate_numerics(need, is_int, is_real)
        need(self.axi_width == self.feature_block * self.formats.fm.width,
             f"axi_width {self.axi_width} must equal feature_block {self.feature_block} x fm width "
             f"{self.formats.fm.width} = {self.feature_block * self.formats.fm.width}")
        for t in ("linear_tile_in", "linear_tile_out"):
            tile = getattr(self, t)
            need(tile % self.feature_block == 0,
                 f"{t} {tile} is not a multiple of the {self.feature_block}-wide feature block")
            for f in ("dim", "mlp_hidden", "expert_hidden"):
                v = getattr(self, f)
                need(v % tile == 0,
                     f"{f} {v} is not a multiple of the {tile}-wide linear tile ({t}; "
                     f"try {max(tile, v // tile * tile)})")
        need(self.dim % self.feature_block == 0,
             f"dim {self.dim} is not a multiple of the {self.feature_block}-wide feature block")
        self._check_vit_shape(need)
        hd = self.head_dim
        need(hd % self.feature_block == 0,
             f"head dim {hd} is not a multiple of the {self.feature_block}-wide feature block")
        need(hd & (hd - 1) == 0 and (hd.bit_length() - 1) % 2 == 0,
             f"head dim {hd} must be a power of 4 (16, 64, 256) so that the attention scale "
             f"head_dim^-0.5 is an exact right shift")
        need(tuple(sorted(set(self.moe_layers))) == tuple(self.moe_layers),
             f"moe_layers {self.moe_layers} must be strictly increasing")
        need(self.attn_parallel in ATTN_PARALLEL_SUPPORTED,
             f"attn_parallel {self.attn_parallel} is not supported; the attention unit has "
             f"{', '.join(map(str, ATTN_PARALLEL_SUPPORTED))} query lanes")
        need(is_real(self.clock_mhz) and 0 < self.clock_mhz <= MAX_CLOCK_MHZ,
             f"clock_mhz {self.clock_mhz!r} must be a number in (0, {MAX_CLOCK_MHZ}] MHz")
        need(self.mem_ports >= 1, f"mem_ports must be >= 1 (got {self.mem_ports})")
        need(self.hp_port_width in (32, 64, 128),
             f"hp_port_width {self.hp_port_width} must be 32, 64 or 128 (Zynq UltraScale+ HP "
             f"port widths)")
        need(self.dram_peak_gbs > 0,
             f"dram_peak_gbs {self.dram_peak_gbs} must be positive (17.064 for DDR4-2133 x64)")
        need(0 < self.dram_efficiency <= 1,
             f"dram_efficiency {self.dram_efficiency} must be in (0, 1] (sustained / peak)")

    def _validate_numerics(self, need, is_int, is_real):
        """Formats, GELU table and LayerNorm epsilon."""
        fmts = self.formats
        need(isinstance(fmts, Formats), f"formats must be a moevit.config.Formats, not "
                                        f"{type(fmts).__name__}")
        for f in dataclasses.fields(fmts):
            v = getattr(fmts, f.name)
            need(isinstance(v, FixedFormat),
                 f"formats.{f.name} must be a FixedFormat(width, int_bits, signed), not {v!r}")
        need(fmts.fm.signed, f"formats.fm {fmts.fm} must be signed (feature maps are signed)")
        need(not fmts.pixel.signed, f"formats.pixel {fmts.pixel} must be unsigned (pixel/256)")
        fm = fmts.fm
        need(is_real(self.layernorm_eps) and self.layernorm_eps > 0,
             f"layernorm_eps {self.layernorm_eps!r} must be a positive number")
        need(self.layernorm_eps <= fm.max,
             f"layernorm_eps {self.layernorm_eps!r} exceeds the largest {fm} value {fm.max:g}")
        need(self.layernorm_eps >= fm.ulp,
             f"layernorm_eps {self.layernorm_eps!r} is below one {fm} ULP ({fm.ulp:g}) and would "
             f"floor to 0; use at least {fm.ulp:g}")
        need(0 <= self.gelu_table_step_log2 <= fm.frac,
             f"gelu_table_step_log2 {self.gelu_table_step_log2} must be in 0..{fm.frac} (the "
             f"table step 2^-k must be a multiple of one {fm} ULP)")
        need(self.gelu_table_entries >= 2,
             f"gelu_table_entries {self.gelu_table_entries} must be >= 2 (interpolation needs "
             f"two neighbouring entries)")
        cutoff = (self.gelu_table_entries - 1) / 2 ** self.gelu_table_step_log2
        need(cutoff < fm.max,
             f"gelu_table_entries {self.gelu_table_entries} puts the table cut-off {cutoff:g} "
             f"beyond the largest {fm} value {fm.max:g}; use fewer entries")

    # ------------------------------------------------------------------ derived
    @property
    def attn_scale_shift(self) -> int:
        """attn_scale = head_dim^-0.5 = 2^-shift (0.125 -> 3 for head dim 64)."""
        return (self.head_dim.bit_length() - 1) // 2

    @property
    def feature_blocks(self) -> int:
        return self.dim // self.feature_block

    @property
    def head_lanes(self) -> int:
        """Lanes of the heads vector (3 heads -> 4 lanes, lane 3 junk)."""
        return 1 << (self.heads - 1).bit_length()

    @property
    def query_blocks(self) -> int:
        """Query blocks of the staggered schedule: ceil((T-1)/P) + 1.

        The last block holds the last rows and the wrapped key tails of the block before it
        (33 for T=129, P=4, as ``qxk_out_t`` in the spec)."""
        return -(-(self.tokens - 1) // self.attn_parallel) + 1

    @property
    def softmax_info_width(self) -> int:
        """fm_t slots per softmax-info row: 2*heads rounded up to a feature block."""
        fb = self.feature_block
        return -(-2 * self.heads // fb) * fb

    @property
    def dense_layers(self) -> tuple[int, ...]:
        return tuple(layer for layer in range(self.depth) if layer not in self.moe_layers)

    def is_moe(self, layer: int) -> bool:
        return layer in self.moe_layers

    def moe_index(self, layer: int) -> int:
        """Index of ``layer`` in the moe_* weight arrays."""
        return self.moe_layers.index(layer)

    def dense_index(self, layer: int) -> int:
        """Index of ``layer`` in the vit_* (dense MLP) weight arrays."""
        return self.dense_layers.index(layer)

    @property
    def layernorm_eps_raw(self) -> int:
        """eps floored to fm_t (1e-6 -> raw 4)."""
        import math
        return math.floor(self.layernorm_eps * 2 ** self.formats.fm.frac)

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @cached_property
    def digest(self) -> str:
        """Short stable hash: keys build/<digest>/ directories."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def replace(self, **changes) -> "AcceleratorConfig":
        return dataclasses.replace(self, **changes)


_EDGE_MOE = AcceleratorConfig(name="edge-moe")

PRESETS: dict[str, AcceleratorConfig] = {
    "edge-moe": _EDGE_MOE,
    # Parallelism chosen with the cycle model and resource estimate (moevit.hw.perf.sweep,
    # docs/compare.md): P = 8 query lanes halve the attention time; a 32 x 16 linear tile
    # (512 products per clock) fits the xczu7ev's DSP48E2 beside P = 8 once the attention's
    # Q·Kᵀ and softmax·V share one multiplier array, the gate's products take one DSP48E2
    # each and the patch embedding runs on the linear engine; activations stay on chip.
    "zcu104": _EDGE_MOE.replace(name="zcu104", fpga_part="xczu7ev-ffvc1156-2-e", board="zcu104",
                                linear_tile_in=32, linear_tile_out=16, attn_parallel=8,
                                activations_on_chip=True),
    # Small dimensions with the same numeric rules: 3x32x64 image -> 8 patches + cls = 9 tokens,
    # dim 32 = 2 heads x 16 (scale 0.25 = >>2), 4 experts top-2, MoE on odd layers.
    "tiny": _EDGE_MOE.replace(
        name="tiny", image_height=32, image_width=64, dim=32, depth=2, heads=2, mlp_hidden=64,
        num_experts=4, top_k=2, expert_hidden=32, moe_layers=(1,),
        fpga_part="xczu7ev-ffvc1156-2-e", board="zcu104"),
}

#: float-model presets that have no accelerator config (see moevit.golden.float.model)
FLOAT_ONLY_PRESETS = ("vit-s",)


def preset(name: str) -> AcceleratorConfig:
    """Return a named preset; unknown names list the valid ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        if name in FLOAT_ONLY_PRESETS:
            raise ConfigError(
                f"preset {name!r} exists only for the float model (float_preset({name!r}) in "
                f"moevit.golden.float.model): its head dim 32 is not a power of 4, so the "
                f"accelerator cannot run it; valid accelerator presets: "
                f"{', '.join(sorted(PRESETS))}") from None
        import difflib
        near = difflib.get_close_matches(str(name), PRESETS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(
            f"unknown preset {name!r}{hint}; valid presets: {', '.join(sorted(PRESETS))}") from None
