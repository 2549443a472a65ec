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
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps outside legends
    plt.close(fig)
    return Path(path).name


def _integer_ticks(ax, lo: int, hi: int) -> None:
    """Integer ticks lo..hi on the x axis (thinned to at most ~16 labels)."""
    step = max(1, -(-(hi - lo + 1) // 16))
    ax.set_xticks(range(lo, hi + 1, step))
    ax.set_xlim(lo - 0.5, hi + 0.5)


def plot_error_per_layer(stages: list[dict], path, depth: int | None = None) -> str:
    """Max |error| and relative RMS error (RMS err / RMS float) of each stage across layers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    cmap = plt.get_cmap("tab20")
    layers_seen = [r["layer"] for r in stages if r["layer"] is not None]
    depth = depth or (max(layers_seen) + 1 if layers_seen else 1)
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
    titles = ("max |fixed - float|", "RMS error / RMS of float values")
    ylabels = ("max absolute error (feature-map value units, log)",
               "relative RMS error (unitless ratio, log)")
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_yscale("log")
        ax.set_xlabel("layer (-1 = patch embedding)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        _integer_ticks(ax, -1, depth - 1)
        ax.grid(True, which="both", alpha=0.3)
    # one legend for both panels, outside the axes so that it hides no data
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
               title="stage")
    return _save(plt, fig, "Fixed-point error per stage across layers", path)


def plot_histograms(float_taps: dict, fixed_taps: dict, cfg, stages: list[dict], path) -> str:
    """Histograms of the signed error (fixed - float) at representative stages."""
    plt = _plt()
    fm = cfg.formats.fm
    last = cfg.depth - 1
    first_moe = cfg.moe_layers[0] if cfg.moe_layers else None
    names = ["patch_embed", "l0.scores", "l0.av", "l0.hidden" if 0 in cfg.dense_layers else "l0.mlp_out",
             f"l{first_moe}.gate_logits" if first_moe is not None else None,
             f"l{last // 2}.out", f"l{last}.mlp_out", "output"]
    names = [n for n in names if n and n in float_taps and n in fixed_taps]
    fig, axes = _grid(plt, len(names), 14, 3.4)
    for i, (ax, name) in enumerate(zip(axes, names)):
        ref = np.asarray(float_taps[name])[0]
        fix = to_float(fixed_taps[name][0], fm)
        err = (fix - ref).reshape(-1)
        ax.hist(err, bins=80, color="tab:blue", alpha=0.85)
        ax.set_yscale("log")
        # statistics in the title, not over the bars
        ax.set_title(f"{name}  (n={err.size})\nmean {err.mean():.2e}, std {err.std():.2e} "
                     f"= {err.std() / fm.ulp:.3g} ULP", fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.set_xlabel("fixed - float (value units)", fontsize=8)
        if i % 4 == 0:
            ax.set_ylabel("values (count, log)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axvline(0, color="k", lw=0.6)
    fig.text(0.5, -0.01, f"ULP = one unit in the last place of {fm} = 2^-{fm.frac} = {fm.ulp:.3g}",
             ha="center", va="top", fontsize=8)
    return _save(plt, fig, "Error histograms (fixed-point golden model minus float model)", path,
                 unused=axes[len(names):])


def plot_routing(routing: list[dict], path) -> str:
    """Top-k agreement per MoE layer and tokens per expert (float vs fixed) for each layer."""
    plt = _plt()
    n = len(routing)
    fig, axes = _grid(plt, n + 1, 15, 3.5)
    ax = axes[0]
    layers = [r["layer"] for r in routing]
    x = np.arange(n)
    ax.bar(x - 0.2, [r["topk_set_agreement"] for r in routing], 0.4, label="top-k set")
    ax.bar(x + 0.2, [r["top1_agreement"] for r in routing], 0.4, label="top-1")
    ax.set_xticks(x, [f"l{layer}" for layer in layers])
    ax.set_ylim(0.0, 1.3)  # from 0; the band above 1 holds the legend, clear of the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.axhline(1.0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("MoE layer", fontsize=8)
    ax.set_ylabel("fraction of tokens (0..1)", fontsize=8)
    ax.set_title("tokens whose experts agree", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper center", ncol=2, framealpha=0.9)
    for i, (a, r) in enumerate(zip(axes[1:], routing), start=1):
        e = np.arange(len(r["tokens_per_expert_float"]))
        a.bar(e - 0.2, r["tokens_per_expert_float"], 0.4, label="float")
        a.bar(e + 0.2, r["tokens_per_expert_fixed"], 0.4, label="fixed")
        a.set_title(f"layer {r['layer']}: tokens per expert (agree {r['topk_set_agreement']:.3f})",
                    fontsize=9)
        a.set_xlabel("expert", fontsize=8)
        a.set_xticks(e)
        a.set_xlim(-0.6, len(e) - 0.4)
        if i % 4 == 0:
            a.set_ylabel("tokens routed (count)", fontsize=8)
        top = max(r["tokens_per_expert_float"] + r["tokens_per_expert_fixed"] + [1])
        a.set_ylim(0, top * 1.3)  # headroom so that the legend sits above the bars
        a.tick_params(labelsize=7)
        a.legend(fontsize=7, loc="upper right", ncol=2, framealpha=0.9)
    return _save(plt, fig, "Expert routing: float model vs fixed-point golden model", path,
                 unused=axes[n + 1:])
