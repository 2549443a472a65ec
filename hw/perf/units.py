"""Cycle counts of each compute unit for one stage of the schedule, from the config alone.

Attention comes from :mod:`moevit.hw.units.attention_schedule` (a cycle-by-cycle replay
asserted equal to the RTL in tests/hw).  The linear engine, LayerNorm, residual add, patch
embedding and MoE gate have no RTL in this checkout yet (issue 10 builds them with their own
cycle models): their figures here are *rate models* — the steady-state rate each unit must
reach (one linear tile step per clock; one 8-wide feature block per clock for LayerNorm, the
residual add and the gate) plus a fill/drain tail named below.  Replace the tails by the
units' own models when they land; the rates are the units' acceptance targets.
"""

from __future__ import annotations

from functools import lru_cache

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units.attention_schedule import cycles_per_layer
from moevit.hw.units.gelu import Gelu

#: linear-engine fill/drain (assumption): registered 32x16 product (2), the tile_in-input adder
#: tree (log2 levels, one register each), accumulate (1), output register (1); + GELU latency
LINEAR_FIXED_TAIL = 4
#: LayerNorm tail (assumption): one token's statistics pass (FB beats) before its first output
#: beat, plus sqrt + trunc0 divide for 1/sqrt(var) (Rsqrt, 77 cycles in bench/units.json)
LAYERNORM_RSQRT_LATENCY = 77
#: MoE gate tail (assumption): online softmax over the E logits of the last token (one per
#: clock), then the trunc0 divide of the top-k probabilities (Divide, 57 cycles)
GATE_DIVIDE_LATENCY = 57


def _tiles(n: int, tile: int, what: str) -> int:
    if n % tile:
        raise ConfigError(f"{what} {n} is not a multiple of the {tile}-wide linear tile")
    return n // tile


def linear_steps(cfg: AcceleratorConfig, tokens: int, n_in: int, n_out: int) -> int:
    """Tile steps of the linear engine: tokens x (out / tile_out) x (in / tile_in)."""
    return (tokens * _tiles(n_out, cfg.linear_tile_out, "output width")
            * _tiles(n_in, cfg.linear_tile_in, "input width"))


def linear_tail(cfg: AcceleratorConfig, gelu: bool) -> int:
    """Fill/drain cycles of one linear-engine pass (an assumption until issue 10's model)."""
    tree = (cfg.linear_tile_in - 1).bit_length()
    return LINEAR_FIXED_TAIL + tree + (Gelu.latency if gelu else 0)


def linear_cycles(cfg: AcceleratorConfig, tokens: int, n_in: int, n_out: int,
                  gelu: bool = False) -> int:
    """One pass of the linear engine over ``tokens`` rows (0 tokens: the pass is skipped)."""
    if tokens == 0:
        return 0
    return linear_steps(cfg, tokens, n_in, n_out) + linear_tail(cfg, gelu)


def block_cycles(cfg: AcceleratorConfig, tokens: int | None = None) -> int:
    """Beats of 8-wide feature blocks over ``tokens`` full rows (one per clock)."""
    return (cfg.tokens if tokens is None else tokens) * cfg.feature_blocks


def layernorm_cycles(cfg: AcceleratorConfig) -> int:
    return block_cycles(cfg) + cfg.feature_blocks + LAYERNORM_RSQRT_LATENCY


def residual_cycles(cfg: AcceleratorConfig) -> int:
    return block_cycles(cfg) + 1


def gate_cycles(cfg: AcceleratorConfig) -> int:
    return block_cycles(cfg) + cfg.num_experts + GATE_DIVIDE_LATENCY


def zero_cycles(cfg: AcceleratorConfig) -> int:
    """Clearing the MoE output accumulator (``zero_output``), one block per clock."""
    return block_cycles(cfg)


def attention_cycles(cfg: AcceleratorConfig) -> tuple[int, int]:
    """(Q·Kᵀ + softmax statistics, softmax·V) cycles of one layer, RTL-checked.

    The replay is cached on the fields that shape the attention unit, so sweeping the
    linear tile or the memory system does not replay it again."""
    neutral = cfg.replace(name="attention", linear_tile_in=cfg.feature_block,
                          linear_tile_out=cfg.feature_block, fpga_part="-", board="-",
                          mem_ports=1, activations_on_chip=False)
    return _attention_cycles(neutral)


@lru_cache(maxsize=64)
def _attention_cycles(cfg: AcceleratorConfig) -> tuple[int, int]:
    c = cycles_per_layer(cfg)
    return c["qk_cycles"], c["av_cycles"]
