"""Per-layer summaries of a golden-model run: value ranges and every silent wrap (spec §12.1).

Wraps counted per layer: residual adds whose exact sum leaves fm_t (x + proj, x + mlp),
LayerNorm tokens whose 1/sqrt(var) wraps (var <= 3.8e-6), and softmax exp arguments
s - max below -512 (which wrap positive and saturate).
"""

from __future__ import annotations

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden.fixed import FM_FRAC, sqrt_rhu, to_float
from moevit.golden.layernorm import layernorm_stats


def summary_taps(cfg: AcceleratorConfig) -> set[str]:
    """Taps :func:`layer_summaries` needs."""
    names = {"patch_embed"}
    for L in range(cfg.depth):
        names |= {f"l{L}.{t}" for t in ("proj", "resid1", "mlp_out", "out", "scores")}
    return names


def _out_of_range(v) -> int:
    return int(np.count_nonzero((v < -(1 << 31)) | (v >= (1 << 31))))


def rstd_wraps(x_raw, cfg: AcceleratorConfig) -> int:
    """Tokens whose LayerNorm reciprocal square root does not fit fm_t."""
    _, var, _ = layernorm_stats(x_raw, cfg)
    s = sqrt_rhu(var)
    exact = np.where(s > 0, (1 << (2 * FM_FRAC)) // np.maximum(s, 1), 0)
    return _out_of_range(exact)


def layer_summaries(cfg: AcceleratorConfig, taps: dict, routing: dict, n: int = 0) -> list[dict]:
    """One dict per layer for image ``n`` of a run made with ``taps >= summary_taps(cfg)``."""
    rows = []
    prev = taps["patch_embed"][n]
    for L in range(cfg.depth):
        g = lambda t: taps[f"l{L}.{t}"][n]
        out = to_float(g("out"))
        s = g("scores")
        exp_wraps = _out_of_range(s - s.max(axis=1, keepdims=True))
        row = dict(
            layer=L, kind="moe" if cfg.is_moe(L) else "dense",
            out_min=float(out.min()), out_max=float(out.max()),
            out_mean=float(out.mean()), out_std=float(out.std()),
            wraps=dict(
                resid_attn=_out_of_range(prev + g("proj")),
                resid_mlp=_out_of_range(g("resid1") + g("mlp_out")),
                ln1_rstd=rstd_wraps(prev, cfg),
                ln2_rstd=rstd_wraps(g("resid1"), cfg),
                softmax_exp_arg=exp_wraps,
            ),
        )
        if L in routing:
            tpe = routing[L]["tokens_per_expert"][n]
            row["experts_used"] = int(np.count_nonzero(tpe))
            row["tokens_per_expert"] = [int(v) for v in tpe]
        rows.append(row)
        prev = g("out")
    return rows


def total_wraps(rows: list[dict]) -> int:
    return sum(sum(r["wraps"].values()) for r in rows)
