"""Float vs fixed point, stage by stage: ``moevit compare``.

Runs the float PyTorch model (:mod:`moevit.golden.float.model`) and the bit-exact integer
golden model (:mod:`moevit.golden.model`) on the same weights and image, and writes to ``--out``:

- ``stages.json``: per stage (golden tap names) max / mean absolute error, RMS error, the
  float RMS, cosine similarity, and the worst index with both values;
- ``routing.json``: per MoE layer, tokens per expert in float and in fixed point and the
  fraction of tokens whose top-k experts agree (as a set, in order, and the top-1);
- ``summary.json``: the final-output numbers, config, task and timings;
- ``error_per_layer.png``, ``histograms.png``, ``routing.png`` and ``report.md`` linking them.
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.golden.cli import add_input_args, load_inputs
from moevit.golden.fixed import to_float
from moevit.outputs import atomic_dir, check_output_dir

#: order of the per-layer stages in reports (golden tap names without the "l{L}." prefix)
LAYER_STAGES = ("ln1", "q", "k", "scores", "score_buffer", "softmax_info", "v", "av", "proj",
                "resid1", "ln2", "hidden", "gate_logits", "mlp_out", "out")
_TAP = re.compile(r"^l(\d+)\.(.+)$")


# ----------------------------------------------------------------------------- statistics
def stage_stats(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Error statistics of ``test`` against the float ``ref`` (same shape; ``mask`` selects
    the entries that carry data).  The worst index is into the unmasked array."""
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"shape mismatch: float {ref.shape} vs fixed {test.shape}")
    if mask is None:
        mask = np.ones(ref.shape, dtype=bool)
    err = np.where(mask, np.abs(test - ref), -1.0)
    r, t, e = ref[mask], test[mask], np.abs(test - ref)[mask]
    flat = int(np.argmax(err))
    worst = tuple(int(i) for i in np.unravel_index(flat, ref.shape))
    nr, nt = float(np.linalg.norm(r)), float(np.linalg.norm(t))
    cos = float(np.dot(r, t) / (nr * nt)) if nr > 0 and nt > 0 else (1.0 if nr == nt else 0.0)
    return dict(count=int(mask.sum()), max_abs=float(e.max()) if e.size else 0.0,
                mean_abs=float(e.mean()) if e.size else 0.0,
                rms=float(np.sqrt(np.mean(e ** 2))) if e.size else 0.0,
                ref_rms=float(np.sqrt(np.mean(r ** 2))) if r.size else 0.0,
                cosine=cos, worst_index=list(worst),
                float_at_worst=float(ref[worst]), fixed_at_worst=float(test[worst]))


def float_score_buffer(scores: np.ndarray, cfg: AcceleratorConfig):
    """Float scores [T,T,heads] in the ``attn`` DRAM layout (float64), with the validity mask."""
    from moevit.golden.attention import score_buffer, score_buffer_valid
    return score_buffer(np.asarray(scores, dtype=np.float64), cfg), score_buffer_valid(cfg)


def compare_taps(float_taps: dict, fixed_taps: dict, cfg: AcceleratorConfig) -> list[dict]:
    """One row per stage present in both: float taps (float, [N,...] or without N) against
    golden taps (raw fm_t, [N,...]); statistics over image 0."""
    rows = []
    names = [n for n in fixed_taps if n in float_taps or n.endswith("score_buffer")]

    def key(n):  # patch_embed first, then layer by layer in LAYER_STAGES order, output last
        m = _TAP.match(n)
        if not m:
            return (cfg.depth, 0) if n == "output" else (-1, 0)
        stage = m.group(2)
        return (int(m.group(1)), LAYER_STAGES.index(stage) if stage in LAYER_STAGES else 99)

    for name in sorted(names, key=key):
        fixed = to_float(fixed_taps[name][0], cfg.formats.fm)
        mask = None
        if name.endswith("score_buffer"):
            from moevit.golden.attention import score_buffer_valid
            if name in float_taps:
                ref, mask = np.asarray(float_taps[name])[0], score_buffer_valid(cfg)
            else:
                scores = float_taps.get(name[:-len("score_buffer")] + "scores")
                if scores is None:
                    continue
                ref, mask = float_score_buffer(np.asarray(scores)[0], cfg)
        else:
            ref = np.asarray(float_taps[name])[0]
            if name.endswith("softmax_info"):
                mask = np.zeros(ref.shape, dtype=bool)
                mask[..., :2 * cfg.heads] = True
        if ref.shape != fixed.shape:
            raise ValueError(f"tap {name}: float shape {ref.shape} vs golden {fixed.shape}")
        m = _TAP.match(name)
        row = dict(stage=name, layer=int(m.group(1)) if m else None,
                   kind=m.group(2) if m else name, shape=list(ref.shape))
        row.update(stage_stats(ref, fixed, mask))
        rows.append(row)
    return rows


def routing_agreement(float_routing: dict, fixed_routing: dict, num_experts: int) -> list[dict]:
    """Per MoE layer (image 0): tokens per expert in both, and the fraction of tokens whose
    top-k experts agree as a set, in order, and at rank 1."""
    out = []
    for layer in sorted(fixed_routing):
        fe = np.asarray(float_routing[layer]["experts"])[0]
        xe = np.asarray(fixed_routing[layer]["experts"])[0]
        same_set = np.all(np.sort(fe, -1) == np.sort(xe, -1), axis=-1)
        out.append(dict(
            layer=int(layer), tokens=int(fe.shape[0]),
            tokens_per_expert_float=np.bincount(fe.reshape(-1), minlength=num_experts).tolist(),
            tokens_per_expert_fixed=np.bincount(xe.reshape(-1), minlength=num_experts).tolist(),
            topk_set_agreement=float(same_set.mean()),
            topk_order_agreement=float(np.all(fe == xe, axis=-1).mean()),
            top1_agreement=float((fe[:, 0] == xe[:, 0]).mean()),
            disagreeing_tokens=np.nonzero(~same_set)[0].tolist(),
            top1_disagreeing_tokens=np.nonzero(fe[:, 0] != xe[:, 0])[0].tolist()))
    return out


def wrapped_weights(weights, cfg: AcceleratorConfig) -> list[dict]:
    """Weight files (Edge-MoE folder names, spec §8.1) holding values outside their format,
    which the golden model wraps as the hardware would: file, tensor, count, worst value."""
    from moevit.golden.fixed import quantize
    from moevit.golden.weight_io import folder_layout
    if weights.raw:
        return []
    out = []
    for s in folder_layout(cfg):
        arr = np.asarray(getattr(weights, s.field))[s.index]
        _, rep = quantize(arr, getattr(cfg.formats, s.fmt), name=s.filename, on_wrap="wrap")
        if not rep.ok:
            out.append(dict(file=s.filename, tensor=s.field, wrapped=int(rep.wrapped),
                            count=int(rep.count), format=str(rep.fmt),
                            worst_value=float(rep.worst_value)))
    return out


def describe_wraps(wraps: list[dict], limit: int = 6) -> str:
    """One line: how many weight values were wrapped, in which files."""
    total = sum(w["wrapped"] for w in wraps)
    shown = ", ".join(f"{w['file']} ({w['wrapped']})" for w in wraps[:limit])
    more = f", ... ({len(wraps) - limit} more files)" if len(wraps) > limit else ""
    return (f"{total} weight values in {len(wraps)} files lie outside their fixed-point formats "
            f"and were WRAPPED as the hardware would (--on-wrap wrap): {shown}{more}")


# ----------------------------------------------------------------------------- running both
def prepare_image(image: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """The image both models see: floored onto the pixel grid exactly as the hardware loads it."""
    from moevit.golden.fixed import quantize
    raw, _ = quantize(np.asarray(image, dtype=np.float64), cfg.formats.pixel, name="image")
    return to_float(raw, cfg.formats.pixel).astype(np.float32)


def run_float(weights, cfg: AcceleratorConfig, image: np.ndarray, task: int, *, device="cpu",
              dtype="float64"):
    """-> (output [T,D] float64, taps {name: [1,...] float64}, routing, seconds)."""
    import torch
    from moevit.golden.float.checkpoint import model_from_weights
    from moevit.golden.float.model import taps_to_golden_layout
    tdtype = getattr(torch, dtype)
    model = model_from_weights(weights, cfg, heads=False, dtype=tdtype, device=device)
    x = torch.from_numpy(np.asarray(image))[None]
    t0 = time.perf_counter()
    with torch.no_grad():
        res = model(x, task=task, taps=True, head=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    taps = taps_to_golden_layout(res.taps)
    routing = {layer: {k: v.detach().cpu().numpy() for k, v in r.items()}
               for layer, r in res.routing.items()}
    return res.features[0].detach().cpu().double().numpy(), taps, routing, dt


def run_fixed(weights, cfg: AcceleratorConfig, image: np.ndarray, task: int):
    """-> (output raw [T,D], taps raw {name: [1,...]}, routing, seconds, the quantised
    weights it ran on) from the golden model."""
    from moevit.golden.model import GoldenModel
    t0 = time.perf_counter()
    model = GoldenModel(cfg, weights)
    res = model.run(np.asarray(image), task=task, taps=True)
    return np.asarray(res.output)[0], res.taps, res.routing, time.perf_counter() - t0, model.w


def compare(cfg: AcceleratorConfig, weights, image: np.ndarray, task: int | str, out_dir,
            *, device: str = "cpu", dtype: str = "float64", source: str = "", plots: bool = True) -> dict:
    """Run both models, write the JSON files, plots and report into ``out_dir``; return the summary."""
    from moevit.golden.cli import resolve_task
    task = resolve_task(cfg, task)  # an id or a name, as everywhere
    check_output_dir(out_dir)
    img = prepare_image(image, cfg)
    f_out, f_taps, f_routing, f_time = run_float(weights, cfg, img, task, device=device, dtype=dtype)
    x_raw, x_taps, x_routing, x_time, wq = run_fixed(weights, cfg, img, task)
    # the same float model on the floored weights: separates weight quantisation from datapath error
    q_out, _, q_routing, _ = run_float(wq.dequantize(cfg), cfg, img, task, device=device, dtype=dtype)
    x_taps = dict(x_taps)
    x_taps.setdefault("output", np.asarray(x_raw)[None])
    f_taps["output"] = f_out[None]
    stages = compare_taps(f_taps, x_taps, cfg)
    routing = routing_agreement(f_routing, x_routing, cfg.num_experts)
    final = next(r for r in stages if r["stage"] == "output")
    fixed_out = to_float(x_raw, cfg.formats.fm)
    vs_q = stage_stats(q_out, fixed_out)
    wraps = wrapped_weights(weights, cfg)
    summary = dict(
        preset=cfg.name, config_digest=cfg.digest, task=task, weights=source,
        weight_wraps=dict(total=sum(w["wrapped"] for w in wraps), files=wraps),
        final_output=dict(max_abs=final["max_abs"], mean_abs=final["mean_abs"], rms=final["rms"],
                          mse=float(np.mean((fixed_out - f_out) ** 2)), cosine=final["cosine"],
                          float_range=[float(f_out.min()), float(f_out.max())],
                          worst_index=final["worst_index"]),
        final_output_vs_quantised_weights=dict(
            max_abs=vs_q["max_abs"], mean_abs=vs_q["mean_abs"], cosine=vs_q["cosine"],
            topk_set_agreement=[r["topk_set_agreement"] for r in
                                routing_agreement(q_routing, x_routing, cfg.num_experts)]),
        routing=[dict(layer=r["layer"], topk_set_agreement=r["topk_set_agreement"],
                      top1_agreement=r["top1_agreement"]) for r in routing],
        seconds=dict(float_model=f_time, golden_model=x_time), float_device=device,
        float_dtype=dtype, machine=platform.platform())
    with atomic_dir(out_dir) as out:
        (out / "stages.json").write_text(json.dumps(stages, indent=1))
        (out / "routing.json").write_text(json.dumps(routing, indent=1))
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        pngs = {}
        if plots:
            from moevit.golden.report.plots import (plot_error_per_layer, plot_histograms,
                                                    plot_routing)
            pngs["error_per_layer"] = plot_error_per_layer(stages, out / "error_per_layer.png",
                                                           cfg.depth)
            pngs["histograms"] = plot_histograms(f_taps, x_taps, cfg, stages,
                                                 out / "histograms.png")
            pngs["routing"] = plot_routing(routing, out / "routing.png")
        from moevit.golden.report.markdown import write_report
        write_report(out / "report.md", summary, stages, routing, pngs, cfg)
    return summary


# ----------------------------------------------------------------------------- command line
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="float model vs fixed-point golden model, stage by stage",
        description="Run the float PyTorch model and the bit-exact golden model on the same "
                    "weights and image; write per-stage errors, routing agreement (JSON), plots "
                    "(PNG) and a markdown report.")
    add_input_args(p, preset_help="accelerator preset (default edge-moe)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="float model device")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                   help="float model precision (default float64)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is visible to torch; use --device cpu")
    cfg, task, weights, image, source = load_inputs(args)
    s = compare(cfg, weights, image, task, args.out, device=args.device, dtype=args.dtype,
                source=source, plots=not args.no_plots)
    if s["weight_wraps"]["files"]:
        print("WARNING: " + describe_wraps(s["weight_wraps"]["files"]))
    f = s["final_output"]
    print(f"final output vs float: max |err| {f['max_abs']:.3g}, mean |err| {f['mean_abs']:.3g}, "
          f"cosine {f['cosine']:.6f}")
    for r in s["routing"]:
        print(f"  layer {r['layer']}: top-k agreement {r['topk_set_agreement']:.3f}, "
              f"top-1 {r['top1_agreement']:.3f}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
