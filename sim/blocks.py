"""Packing raw fixed-point values into stream beats and back (element 0 in the low bits,
as in DRAM, spec §7), shared by the block-stream testbenches."""

from __future__ import annotations

import numpy as np

from moevit.config import AcceleratorConfig


def pack(values, width: int, per_beat: int) -> list[int]:
    """Raw ints (a multiple of ``per_beat``) -> beats of ``per_beat`` x ``width`` bits."""
    v = np.asarray(values, dtype=np.int64).reshape(-1, per_beat) & ((1 << width) - 1)
    return [sum(int(e) << (width * j) for j, e in enumerate(row)) for row in v]


def unpack(beats, width: int, per_beat: int) -> np.ndarray:
    """Beats -> signed raw ints (flat)."""
    mask = (1 << width) - 1
    out = np.array([[(b >> (width * j)) & mask for j in range(per_beat)] for b in beats],
                   dtype=np.int64).reshape(-1)
    return np.where(out >= 1 << (width - 1), out - (1 << width), out)


def block_beats(x, cfg: AcceleratorConfig) -> list[int]:
    """fm_t values -> feature-block beats (``cfg.feature_block`` per beat)."""
    return pack(x, cfg.formats.fm.width, cfg.feature_block)


def unpack_blocks(beats, cfg: AcceleratorConfig) -> np.ndarray:
    return unpack(beats, cfg.formats.fm.width, cfg.feature_block)
