"""``moevit golden`` (run the bit-exact model, write results) and ``moevit demo``."""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from moevit.cli import seed_int
from moevit.config import preset
from moevit.errors import FormatRangeError, WeightFileError
from moevit.golden import weight_io
from moevit.golden.fixed import to_float
from moevit.outputs import atomic_dir, check_output_dir, describe_path


# ---------------------------------------------------------------------------- inputs
def load_weights(cfg, weights_dir=None, seed=None, on_wrap="raise"):
    """Weights from an Edge-MoE folder (``weights_dir``) or the seeded generator."""
    if weights_dir is not None:
        path = Path(weights_dir)
        if str(weights_dir).strip() == "" or not path.is_dir():
            what = "is empty" if str(weights_dir).strip() == "" else describe_path(path)
            raise WeightFileError(
                f"--weights {str(weights_dir)!r} {what}, expected the folder "
                f"holding the *.float32.bin files; pass that folder, or use --seed N")
        try:
            return weight_io.load_folder(path, cfg, on_wrap=on_wrap)
        except FormatRangeError as exc:
            raise FormatRangeError(
                f"{exc.where}: {len(exc.problems)} tensor(s) hold values outside their "
                f"fixed-point format; pass --on-wrap wrap to reproduce the hardware's "
                f"wrap-around, or rescale the weights / widen the format:\n  "
                + "\n  ".join(exc.problems)) from None
    from moevit.golden.weights import seeded_weights
    return seeded_weights(cfg, seed)


def load_input_image(cfg, image=None, synthetic_seed=0):
    """float32 [C,H,W] image from a file, or the synthetic test image."""
    if image is not None:
        path = Path(image)
        if str(image).strip() == "" or not path.is_file():
            what = "is empty" if str(image).strip() == "" else describe_path(path)
            raise WeightFileError(
                f"--image {str(image)!r} {what}, expected an image file "
                f"(PNG/JPEG, or a raw float32 .bin [{cfg.image_channels}x{cfg.image_height}x"
                f"{cfg.image_width}]); pass such a file, or use --synthetic")
        return weight_io.load_image(path, cfg)
    return weight_io.synthetic_image(cfg, synthetic_seed)


def resolve_task(cfg, task) -> int:
    """Task id of ``cfg`` from an id or a name (``semseg``, ``depth``); clear error otherwise."""
    from moevit.golden.tasks import default_tasks, task_index
    return task_index(default_tasks(cfg.num_tasks), task)


def add_input_args(p, *, preset_help="configuration preset (default edge-moe)") -> None:
    """The options ``golden`` and ``compare`` share: preset, weights, image, task, output."""
    p.add_argument("--preset", default="edge-moe", help=preset_help)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="DIR", help="Edge-MoE weights folder (*.float32.bin)")
    src.add_argument("--seed", type=seed_int, metavar="N",
                     help="build deterministic seeded weights (seeded_weights(cfg, N)) instead")
    img = p.add_mutually_exclusive_group(required=True)
    img.add_argument("--image", metavar="FILE",
                     help="PNG/JPEG (resized to the preset's input) or raw float32 .bin image")
    img.add_argument("--synthetic", action="store_true", help="use the synthetic test image")
    p.add_argument("--image-seed", type=seed_int, default=None, metavar="S",
                   help="seed of the synthetic image (default 0)")
    p.add_argument("--task", default="0", help="task id or name (semseg=0, depth=1; default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--on-wrap", choices=("raise", "wrap"), default="raise",
                   help="weight values outside their format: stop with an error (default) or "
                        "wrap them as the hardware would")


def load_inputs(args):
    """(cfg, task, weights, image, source) from the options of :func:`add_input_args`.

    Checks ``--out`` first, so that a bad output path fails before anything is loaded."""
    check_output_dir(args.out)
    cfg = preset(args.preset)
    task = resolve_task(cfg, args.task)
    weights = load_weights(cfg, args.weights, args.seed, args.on_wrap)
    if args.image is not None and args.image_seed is not None:
        warnings.warn("--image-seed is ignored with --image (it seeds the --synthetic image)",
                      stacklevel=1)
    image = load_input_image(cfg, args.image, args.image_seed or 0)
    source = (f"folder {args.weights}" if args.weights is not None
              else f"seeded_weights(seed={args.seed})")
    return cfg, task, weights, image, source


# ---------------------------------------------------------------------------- running
def run_golden(cfg, weights, image, task=0, taps=False, progress_bar=True):
    """Run one image; returns (result, layer summaries, timings dict)."""
    from moevit.golden.model import GoldenModel, tap_names
    from moevit.golden.summary import layer_summaries, summary_taps

    t0 = time.perf_counter()
    model = GoldenModel(cfg, weights)
    t_setup = time.perf_counter() - t0
    want = set(summary_taps(cfg)) | (set(tap_names(cfg)) if taps else set())
    bar = None
    if progress_bar:
        from tqdm import tqdm
        bar = tqdm(total=cfg.depth, desc="golden", unit="layer", leave=False)
    t1 = time.perf_counter()
    try:
        result = model.run(image, task=task, taps=want,
                           progress=(bar.update if bar is not None else None))
    finally:
        if bar is not None:
            bar.close()
    t_run = time.perf_counter() - t1
    rows = layer_summaries(cfg, result.taps, result.routing)
    timings = dict(setup_s=t_setup, run_s=t_run,
                   stages_s={k: round(v, 6) for k, v in result.timings.items()})
    weight_wraps = {n: r.wrapped for n, r in model.quant_reports.items() if not r.ok}
    return result, rows, timings, weight_wraps


def write_outputs(out_dir, cfg, result, rows, timings, weight_wraps, taps):
    """Write the result files into ``out_dir`` atomically (all or none); returns their paths."""
    files = ["output.int32.bin", "output.npy", "layers.json", "experts.json", "timings.json"]
    if taps:
        files.append("taps.npz")
    with atomic_dir(out_dir) as out:
        y = result.output[0]
        y.astype("<i4").tofile(out / "output.int32.bin")
        np.save(out / "output.npy", to_float(y).astype(np.float32))
        (out / "layers.json").write_text(json.dumps(
            dict(preset=cfg.name, digest=cfg.digest, weight_wraps=weight_wraps, layers=rows),
            indent=1))
        experts = {f"l{L}": dict(tokens_per_expert=[int(v) for v in r["tokens_per_expert"][0]],
                                 experts_per_token=r["experts"][0].tolist())
                   for L, r in result.routing.items()}
        (out / "experts.json").write_text(json.dumps(experts, indent=1))
        (out / "timings.json").write_text(json.dumps(timings, indent=1))
        if taps:
            from moevit.golden.model import tap_names
            np.savez(out / "taps.npz",
                     **{n: result.taps[n][0].astype("<i4") for n in tap_names(cfg)})
    return [Path(out_dir) / f for f in files]


def format_summary(cfg, result, rows, timings, weight_wraps) -> str:
    """Readable text summary: per-layer table, experts per MoE layer, output, wraps, timing."""
    from moevit.golden.summary import total_wraps
    lines = [f"golden model  preset {cfg.name}  ({cfg.tokens} tokens x {cfg.dim}, "
             f"{cfg.depth} layers, {cfg.num_experts} experts top-{cfg.top_k})", ""]
    lines.append(f"{'layer':>5} {'kind':<5} {'min':>9} {'max':>9} {'mean':>9} {'std':>8} "
                 f"{'wraps':>5}  experts used")
    for r in rows:
        ex = ""
        if "experts_used" in r:
            busy = sorted(((c, e) for e, c in enumerate(r["tokens_per_expert"]) if c),
                          reverse=True)
            ex = f"{r['experts_used']:>2}: " + " ".join(f"e{e}x{c}" for c, e in busy[:6])
            ex += " ..." if len(busy) > 6 else ""
        lines.append(f"{r['layer']:>5} {r['kind']:<5} {r['out_min']:>9.4f} {r['out_max']:>9.4f} "
                     f"{r['out_mean']:>9.4f} {r['out_std']:>8.4f} {sum(r['wraps'].values()):>5}  {ex}")
    y = to_float(result.output[0])
    lines += ["", f"output [{y.shape[0]} x {y.shape[1]}]: range [{y.min():.6f}, {y.max():.6f}], "
                  f"mean {y.mean():.6f}",
              f"silent wraps: {total_wraps(rows)} in the datapath, "
              f"{sum(weight_wraps.values())} weight values outside their formats",
              f"time: {timings['run_s']:.3f} s for the first image with summary taps "
              f"(model set-up {timings['setup_s']:.3f} s)"]
    st = timings["stages_s"]
    lines.append("      " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in
                                      sorted(st.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands
def cmd_golden(args):
    cfg, task, weights, image, _ = load_inputs(args)
    result, rows, timings, ww = run_golden(cfg, weights, image, task, args.taps,
                                           progress_bar=not args.quiet)
    files = write_outputs(args.out, cfg, result, rows, timings, ww, args.taps)
    print(format_summary(cfg, result, rows, timings, ww))
    print("\nwrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_demo(args):
    if args.out is not None:
        check_output_dir(args.out)
    cfg = preset(args.preset)
    weights = load_weights(cfg, seed=args.seed)
    image = load_input_image(cfg, None, args.seed)
    # warm-up on the tiny preset compiles the numba kernels outside the timed run
    t0 = time.perf_counter()
    from moevit.golden.model import GoldenModel
    from moevit.golden.weights import seeded_weights
    tiny = preset("tiny")
    GoldenModel(tiny, seeded_weights(tiny, 0)).run(
        np.zeros((tiny.image_channels, tiny.image_height, tiny.image_width), np.uint8))
    t_warm = time.perf_counter() - t0
    result, rows, timings, ww = run_golden(cfg, weights, image, 0, False, progress_bar=True)
    print(format_summary(cfg, result, rows, timings, ww))
    model = GoldenModel(cfg, weights)
    model.run(image)  # prepares the cached float64 weight operands
    t1 = time.perf_counter()
    model.run(image)
    print(f"warm run (weights prepared, no taps): {time.perf_counter() - t1:.3f} s per image")
    print(f"(numba warm-up {t_warm:.1f} s; {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()})")
    if args.out is not None:
        files = write_outputs(args.out, cfg, result, rows, timings, ww, False)
        print("wrote " + ", ".join(str(f) for f in files))
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "golden", help="run the bit-exact integer golden model on one image",
        description="Run the bit-exact Edge-MoE integer model on one image and write the "
                    "final output (raw int32 .bin and float .npy), per-layer summaries, expert "
                    "routing, timings and optionally every tap.")
    add_input_args(p)
    p.add_argument("--taps", action="store_true", help="also write every tap to taps.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_golden)

    d = subparsers.add_parser(
        "demo", help="golden model end to end on seeded weights and a synthetic image",
        description="Run the golden model on the default preset with seeded weights and a "
                    "synthetic image, and print a readable summary.")
    d.add_argument("--preset", default="edge-moe")
    d.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the weights and of the synthetic image (default 0)")
    d.add_argument("--out", metavar="DIR", help="also write the result files here")
    d.set_defaults(func=cmd_demo)
