"""Cycle counts of each compute unit for one stage of the schedule, from the config alone.

Attention comes from :mod:`moevit.hw.units.attention_schedule` (a cycle-by-cycle replay
asserted equal to the RTL in tests/hw) and the linear engine and patch embedding from
:mod:`moevit.hw.units.linear_schedule` (checked against the RTL's cycle counts within 1 % in
tests/sim).  LayerNorm, the residual add and the MoE gate are *rate models* here — the
steady-state rate each unit must reach (one 8-wide feature block per clock) plus a fill/drain
tail named below.
"""

from __future__ import annotations

from functools import lru_cache

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units import linear_schedule as LS
from moevit.hw.units.attention_schedule import cycles_per_layer

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


def linear_cycles(cfg: AcceleratorConfig, tokens: int, n_in: int, n_out: int,
                  gelu: bool = False, patch: bool = False) -> int:
    """Passes of the linear engine (``patch``: the patch embedding, pixel rows) over ``tokens``
    rows, from its RTL-checked cycle model; more rows than one image holds (the batched
    schedule) run as back-to-back passes of at most ``cfg.tokens`` rows with the weights kept.
    0 tokens: the pass is skipped."""
    if tokens == 0:
        return 0
    g = LS.geometry(cfg)
    full, rest = divmod(tokens, cfg.tokens)
    passes = [LS.pass_cycles(g, n_in, n_out, n, gelu=gelu, pixel=patch)
              for n in [cfg.tokens] * full + ([rest] if rest else [])]
    return sum(p.issue_cycles for p in passes[:-1]) + passes[-1].cycles


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
