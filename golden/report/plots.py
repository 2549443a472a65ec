"""Plots for ``moevit compare`` (matplotlib, Agg backend; every function writes one PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moevit.golden.fixed import to_float

#: per-layer stages drawn in the error-per-layer plot
PLOT_STAGES = ("ln1", "q", "k", "scores", "av", "proj", "resid1", "ln2", "hidden",
               "gate_logits", "mlp_out", "out")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _grid(plt, n: int, width: float, row_height: float, cols: int = 4):
    """A figure with enough rows of ``cols`` axes for ``n`` panels; returns (fig, flat axes list)."""
    rows_n = -(-n // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(width, row_height * rows_n), squeeze=False)
    return fig, list(axes.flat)


def _save(plt, fig, title: str, path, unused=()) -> str:
    """Turn off the ``unused`` axes, add the title, write the PNG (dpi 110), close the figure."""
    for ax in unused:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path).name


def plot_error_per_layer(stages: list[dict], path) -> str:
    """Max |error| and relative RMS error (RMS err / RMS float) of each stage across layers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    cmap = plt.get_cmap("tab20")
    for i, kind in enumerate(PLOT_STAGES):
        rows = sorted((r for r in stages if r["kind"] == kind and r["layer"] is not None),
                      key=lambda r: r["layer"])
        if not rows:
            continue
        x = [r["layer"] for r in rows]
        style = dict(marker="o", ms=3.5, lw=1.3, color=cmap(i), label=kind)
        axes[0].plot(x, [max(r["max_abs"], 1e-12) for r in rows], **style)
        axes[1].plot(x, [max(r["rms"] / r["ref_rms"], 1e-12) if r["ref_rms"] else np.nan
                         for r in rows], **style)
    for r in stages:
        if r["stage"] == "patch_embed":
            axes[0].scatter([-1], [max(r["max_abs"], 1e-12)], marker="s", color="k", zorder=3,
                            label="patch_embed")
            axes[1].scatter([-1], [max(r["rms"] / r["ref_rms"], 1e-12)], marker="s", color="k",
                            zorder=3)
    for ax, title in zip(axes, ("max |fixed - float|", "RMS error / RMS of float values")):
        ax.set_yscale("log")
        ax.set_xlabel("layer (-1 = patch embedding)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2, loc="upper left")
    return _save(plt, fig, "Fixed-point error per stage across layers", path)


def plot_histograms(float_taps: dict, fixed_taps: dict, cfg, stages: list[dict], path) -> str:
    """Histograms of the signed error (fixed - float) at representative stages."""
    plt = _plt()
    frac = cfg.formats.fm.frac
    last = cfg.depth - 1
    first_moe = cfg.moe_layers[0] if cfg.moe_layers else None
    names = ["patch_embed", "l0.scores", "l0.av", "l0.hidden" if 0 in cfg.dense_layers else "l0.mlp_out",
             f"l{first_moe}.gate_logits" if first_moe is not None else None,
             f"l{last // 2}.out", f"l{last}.mlp_out", "output"]
    names = [n for n in names if n and n in float_taps and n in fixed_taps]
    fig, axes = _grid(plt, len(names), 14, 3.2)
    for ax, name in zip(axes, names):
        ref = np.asarray(float_taps[name])[0]
        fix = to_float(fixed_taps[name][0], cfg.formats.fm)
        err = (fix - ref).reshape(-1)
        ax.hist(err, bins=80, color="tab:blue", alpha=0.85)
        ax.set_yscale("log")
        ax.set_title(f"{name}  (n={err.size})", fontsize=9)
        ax.set_xlabel("fixed - float", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ulp = 2.0 ** -frac
        ax.text(0.02, 0.95, f"mean {err.mean():.2e}\nstd {err.std():.2e}\n= {err.std() / ulp:.3g} ulp",
                transform=ax.transAxes, va="top", fontsize=7)
    return _save(plt, fig, "Error histograms (fixed-point golden model minus float model)", path,
                 unused=axes[len(names):])


def plot_routing(routing: list[dict], path) -> str:
    """Top-k agreement per MoE layer and tokens per expert (float vs fixed) for each layer."""
    plt = _plt()
    n = len(routing)
    fig, axes = _grid(plt, n + 1, 15, 3.3)
    ax = axes[0]
    layers = [r["layer"] for r in routing]
    x = np.arange(n)
    ax.bar(x - 0.2, [r["topk_set_agreement"] for r in routing], 0.4, label="top-k set")
    ax.bar(x + 0.2, [r["top1_agreement"] for r in routing], 0.4, label="top-1")
    ax.set_xticks(x, [f"l{layer}" for layer in layers])
    lo = min([r["topk_set_agreement"] for r in routing] + [r["top1_agreement"] for r in routing] + [1.0])
    ax.set_ylim(max(0.0, lo - 0.05), 1.005)
    ax.set_title("tokens whose experts agree (fraction)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    for a, r in zip(axes[1:], routing):
        e = np.arange(len(r["tokens_per_expert_float"]))
        a.bar(e - 0.2, r["tokens_per_expert_float"], 0.4, label="float")
        a.bar(e + 0.2, r["tokens_per_expert_fixed"], 0.4, label="fixed")
        a.set_title(f"layer {r['layer']}: tokens per expert (agree {r['topk_set_agreement']:.3f})",
                    fontsize=9)
        a.set_xlabel("expert", fontsize=8)
        a.tick_params(labelsize=7)
        a.legend(fontsize=7)
    return _save(plt, fig, "Expert routing: float model vs fixed-point golden model", path,
                 unused=axes[n + 1:])
