"""DRAM layouts of every kernel argument (spec §7) and the ``debug_id`` stages (spec §6.2).

The driver allocates buffers from :func:`buffer_layout`; the behavioural device reads them back
with the same table, so the two can never disagree.  :func:`stages` lists the schedule's stops
in order, each with the golden-model tap it leaves in which buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.golden.weights import FIELD_FORMATS, expected_shapes

#: debug_id of the patch-embedding stop, and the per-layer stride (spec §6.2)
PATCH_EMBED_DEBUG_ID = 256
LAYER_DEBUG_STRIDE = 16

#: pointer registers holding activations (not weights), in register order
ACTIVATION_POINTERS = ("images", "x", "tmp1", "tmp2", "tmp3", "tmp4", "tmp_hidden", "attn",
                       "attn_softmax_info")
#: the weight pointer that selects the task
GATE_POINTER = "moe_w_gate"


def _int_dtype(width: int, signed: bool = True) -> np.dtype:
    kinds = {8: "1", 16: "2", 32: "4", 64: "8"}
    if width not in kinds:
        raise ConfigError(f"a {width}-bit format has no packed DRAM element type (8/16/32/64)")
    return np.dtype(("<i" if signed else "<u") + kinds[width])


def fmt_dtype(cfg: AcceleratorConfig, fmt_name: str) -> np.dtype:
    """Little-endian integer element type of a format of ``cfg.formats`` (raw values)."""
    f = getattr(cfg.formats, fmt_name)
    return _int_dtype(f.width, f.signed)


def weight_layout(cfg: AcceleratorConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Weight pointer -> (shape, dtype); ``moe_w_gate`` is one task's gates."""
    shapes = expected_shapes(cfg)
    out = {}
    for name, shape in shapes.items():
        dt = fmt_dtype(cfg, FIELD_FORMATS[name])
        if name == "moe_w_gate_per_task":
            out[GATE_POINTER] = (shape[1:], dt)
        else:
            out[name] = (shape, dt)
    return out


def activation_layout(cfg: AcceleratorConfig, batch: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Activation pointer -> (shape, dtype) for runs of up to ``batch`` images."""
    T, D = cfg.tokens, cfg.dim
    fm = fmt_dtype(cfg, "fm")
    px = fmt_dtype(cfg, "pixel")
    return {
        "images": ((batch, cfg.image_channels, cfg.image_height, cfg.image_width), px),
        "x": ((batch, T, D), fm),
        "tmp1": ((T, D), fm), "tmp2": ((T, D), fm), "tmp3": ((T, D), fm), "tmp4": ((T, D), fm),
        # dense FC1 [T][H]; expert FC1 uses [T][Dh] packed at the start (row stride Dh)
        "tmp_hidden": ((T, max(cfg.mlp_hidden, cfg.expert_hidden)), fm),
        "attn": ((cfg.query_blocks, T, cfg.attn_parallel, cfg.head_lanes), fm),
        "attn_softmax_info": ((T, cfg.softmax_info_width), fm),
    }


def buffer_layout(cfg: AcceleratorConfig, batch: int):
    """Every pointer -> (shape, dtype): activations for ``batch`` images, then the weights."""
    return {**activation_layout(cfg, batch), **weight_layout(cfg)}


# ---------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stage:
    """One ``debug_id`` stop: the tap(s) it finishes and the buffer each is left in."""

    debug_id: int
    taps: tuple[tuple[str, str], ...]   # (golden tap name, pointer holding it)
    layer: int | None = None

    @property
    def name(self) -> str:
        return self.taps[0][0]


def stages(cfg: AcceleratorConfig) -> list[Stage]:
    """The §6.2 schedule's stops in order.  On a MoE layer the MoE output is id 16L+11
    (§6.2 allows 16L+10 or 16L+11; :func:`stage_by_id` maps 16L+10 there too)."""
    if (cfg.depth - 1) * LAYER_DEBUG_STRIDE + 12 >= PATCH_EMBED_DEBUG_ID:
        raise ConfigError(f"config {cfg.name!r}: depth {cfg.depth} has debug ids that collide "
                          f"with patch embedding's {PATCH_EMBED_DEBUG_ID} (at most 15 layers)")
    out = [Stage(PATCH_EMBED_DEBUG_ID, (("patch_embed", "x"),))]
    for L in range(cfg.depth):
        b, p = LAYER_DEBUG_STRIDE * L, f"l{L}."
        seq = [(1, (("ln1", "tmp1"),)), (2, (("q", "tmp2"),)), (3, (("k", "tmp3"),)),
               (4, (("score_buffer", "attn"), ("softmax_info", "attn_softmax_info"))),
               (5, (("v", "tmp2"),)), (6, (("av", "tmp1"),)), (7, (("proj", "tmp3"),)),
               (8, (("resid1", "x"),)), (9, (("ln2", "tmp1"),))]
        if not cfg.is_moe(L):
            seq.append((10, (("hidden", "tmp_hidden"),)))
        seq += [(11, (("mlp_out", "tmp3"),)), (12, (("out", "x"),))]
        out += [Stage(b + k, tuple((p + t, buf) for t, buf in taps), L) for k, taps in seq]
    return out


def stage_by_id(cfg: AcceleratorConfig, debug_id: int) -> Stage | None:
    """The stage a ``debug_id`` stops after (None for 0 or an id no stage uses)."""
    by_id = {s.debug_id: s for s in stages(cfg)}
    if debug_id not in by_id and debug_id % LAYER_DEBUG_STRIDE == 10:
        L = debug_id // LAYER_DEBUG_STRIDE
        if L < cfg.depth and cfg.is_moe(L):
            return by_id[debug_id + 1]
    return by_id.get(debug_id)


def stage_for_tap(cfg: AcceleratorConfig, tap: str) -> Stage:
    """The stage that leaves golden tap ``tap`` in DRAM; a clear error for on-chip-only taps."""
    for s in stages(cfg):
        if tap in dict(s.taps):
            return s
    from moevit.golden.model import tap_names   # numba: only on this error path
    stoppable = [t for s in stages(cfg) for t, _ in s.taps]
    if tap in tap_names(cfg):
        raise ConfigError(f"tap {tap!r} never reaches DRAM (it lives on chip), so no debug_id "
                          f"stops there; stoppable stages: {', '.join(stoppable[:14])}, ...")
    raise ConfigError(f"unknown stage {tap!r} for preset {cfg.name!r}; stoppable stages are "
                      f"golden tap names such as {', '.join(stoppable[:14])}, ... "
                      f"(see moevit.host.layout.stages)")


def describe_stage(cfg: AcceleratorConfig, code: int) -> str:
    """A ``stage`` register value in words."""
    if code == 0:
        return "0 (no stage finished yet)"
    s = stage_by_id(cfg, code)
    return f"{code} (after {s.name})" if s else f"{code} (no such stage)"
