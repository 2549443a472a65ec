"""Markdown report of ``moevit compare`` (links the PNGs and JSON written beside it)."""

from __future__ import annotations

from pathlib import Path


def _tokens(tokens: list[int], limit: int = 12) -> str:
    return (", ".join(map(str, tokens[:limit])) + (" ..." if len(tokens) > limit else "")) or "-"


def _wrap_section(summary: dict) -> list[str]:
    wraps = summary.get("weight_wraps", {}).get("files", [])
    if not wraps:
        return []
    lines = ["## Warning: weights were wrapped", "",
             f"{summary['weight_wraps']['total']} weight values in {len(wraps)} files lie outside "
             "their fixed-point formats. The golden model wrapped them as the hardware would "
             "(`--on-wrap wrap`), so the errors and the routing below include that damage; the "
             "float model used the unwrapped values.", "",
             "| file | tensor | format | values wrapped | of | worst value |", "|---|---|---|---|---|---|"]
    lines += [f"| {w['file']} | {w['tensor']} | `{w['format']}` | {w['wrapped']} | {w['count']} | "
              f"{w['worst_value']:.6g} |" for w in wraps]
    return lines + [""]


def write_report(path, summary: dict, stages: list[dict], routing: list[dict], pngs: dict,
                 cfg=None) -> Path:
    """Write ``report.md``: wrapped weights (if any), final output, routing, plots, every stage."""
    f = summary["final_output"]
    q = summary["final_output_vs_quantised_weights"]
    lines = [
        f"# Float vs fixed point: preset `{summary['preset']}`, task {summary['task']}",
        "",
        f"Weights: {summary['weights']}. Config digest `{summary['config_digest']}`. "
        f"Float model on {summary['float_device']} in {summary['float_dtype']}; "
        f"golden model {summary['seconds']['golden_model']:.2f} s, float model "
        f"{summary['seconds']['float_model']:.3f} s.",
        "",
        *_wrap_section(summary),
        "## Final output (block output after the last layer)",
        "",
        "| max abs err | mean abs err | RMS err | MSE | cosine | float range |",
        "|---|---|---|---|---|---|",
        f"| {f['max_abs']:.3g} | {f['mean_abs']:.3g} | {f['rms']:.3g} | {f['mse']:.3g} | "
        f"{f['cosine']:.7f} | [{f['float_range'][0]:.3g}, {f['float_range'][1]:.3g}] |",
        "",
        "(The Edge-MoE testbench accepts MSE <= 0.1 against its float reference.)",
        "",
        "Datapath error alone (float model run on the floored weights, so weight quantisation "
        "is excluded): max abs err {:.3g}, mean abs err {:.3g}, cosine {:.7f}.".format(
            q["max_abs"], q["mean_abs"], q["cosine"]),
        "",
        "## Routing agreement",
        "",
        "Fractions of tokens; the token lists name the tokens behind each fraction.",
        "",
        "| MoE layer | top-k set agrees | tokens whose top-k set differs | same order "
        "| top-1 agrees | tokens whose top-1 differs |",
        "|---|---|---|---|---|---|",
    ]
    for r in routing:
        top1 = r.get("top1_disagreeing_tokens", [])
        lines.append(f"| {r['layer']} | {r['topk_set_agreement']:.4f} | "
                     f"{_tokens(r['disagreeing_tokens'])} | {r['topk_order_agreement']:.4f} "
                     f"| {r['top1_agreement']:.4f} | {_tokens(top1)} |")
    lines += ["", "Tokens per expert in float and fixed point: `routing.json`.", ""]
    if pngs:
        lines += ["## Plots", ""]
        titles = dict(error_per_layer="Error per stage across layers", histograms="Error histograms",
                      routing="Routing agreement and tokens per expert")
        for key, name in pngs.items():
            lines += [f"### {titles.get(key, key)}", "", f"![{key}]({name})", ""]
    if cfg is not None:
        fm = cfg.formats.fm
        lines += [f"ULP: one unit in the last place of the feature-map format `{fm}`, i.e. "
                  f"2^-{fm.frac} = {fm.ulp:.3g}; errors in ULP are errors divided by it.", ""]
    lines += ["## Every stage", "",
              "Absolute errors are in feature-map value units (the same units as the values); "
              "stages in pipeline order, patch embedding first and the final output last.", "",
              "| stage | max abs | mean abs | RMS | float RMS | cosine | worst index | float / fixed there |",
              "|---|---|---|---|---|---|---|---|"]
    for r in stages:
        lines.append(f"| {r['stage']} | {r['max_abs']:.3g} | {r['mean_abs']:.3g} | {r['rms']:.3g} | "
                     f"{r['ref_rms']:.3g} | {r['cosine']:.7f} | {tuple(r['worst_index'])} | "
                     f"{r['float_at_worst']:.6g} / {r['fixed_at_worst']:.6g} |")
    lines += ["", "Machine-readable: `stages.json`, `routing.json`, `summary.json`.", ""]
    p = Path(path)
    p.write_text("\n".join(lines))
    return p
