#!/usr/bin/env python
"""Benchmark the bit-exact golden model: seconds per image for the full edge-moe model.

Measures (after a warm-up run that compiles/loads the numba kernels and prepares the cached
weight operands): the median of ``--runs`` single-image runs, images/s for a batch of
``--batch``, peak memory (process max RSS and the tracemalloc peak of one run), plus one
run of the plain numpy reference path for comparison.  Writes ``build/bench/golden.json`` and
``build/bench/golden.md`` with a description of the machine.

    .venv/bin/python scripts/bench_golden.py [--runs 5] [--batch 8] [--out build/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from moevit.machine import describe


def machine() -> dict:
    import numba
    return describe(numpy=np.__version__, numba=numba.__version__)


def timed(fn):
    """(seconds ``fn()`` took, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge-moe")
    ap.add_argument("--runs", type=int, default=5, help="single-image runs (median; >= 3)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batch-runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip the numpy reference run")
    ap.add_argument("--out", default="build/bench", help="folder for golden.json / golden.md "
                    "(default build/bench; `make bench-record` copies it into bench/)")
    args = ap.parse_args(argv)
    if args.runs < 3:
        ap.error("--runs must be >= 3")

    t0 = time.perf_counter()
    from moevit.config import preset
    from moevit.golden.model import GoldenModel
    from moevit.golden.weights import seeded_weights
    from moevit.golden.weight_io import synthetic_image
    t_import = time.perf_counter() - t0

    cfg = preset(args.preset)
    weights = seeded_weights(cfg, args.seed)
    image = synthetic_image(cfg, args.seed)
    batch = np.stack([synthetic_image(cfg, args.seed + i) for i in range(args.batch)])
    load0 = os.getloadavg()

    t1 = time.perf_counter()
    model = GoldenModel(cfg, weights)
    t_setup = time.perf_counter() - t1
    t_first, _ = timed(lambda: model.run(image))  # numba compile / cache load + weight operands
    single = [timed(lambda: model.run(image)) for _ in range(args.runs)]
    runs = [t for t, _ in single]
    stages = single[-1][1].timings  # per-stage seconds of the last timed single-image run
    per_image = statistics.median(runs)
    batch_runs = [timed(lambda: model.run(batch))[0] for _ in range(args.batch_runs)]
    batch_s = statistics.median(batch_runs)
    batch2_runs = [timed(lambda: model.run(batch, workers=2))[0] for _ in range(args.batch_runs)]
    batch2_s = statistics.median(batch2_runs)

    tracemalloc.start()
    model.run(image)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ref_s = None
    if not args.no_reference:
        ref_model = GoldenModel(cfg, weights, fast=False)
        ref_s, _ = timed(lambda: ref_model.run(image))

    result = dict(
        preset=cfg.name, digest=cfg.digest, layers=cfg.depth, weights=f"seeded({args.seed})",
        seconds_per_image_median=round(per_image, 4),
        seconds_per_image_runs=[round(r, 4) for r in runs],
        batch=args.batch, batch_seconds_median=round(batch_s, 4),
        batch_seconds_runs=[round(r, 4) for r in batch_runs],
        images_per_second_batch=round(args.batch / batch_s, 3),
        batch_seconds_median_2_workers=round(batch2_s, 4),
        images_per_second_batch_2_workers=round(args.batch / batch2_s, 3),
        kernels="numba, serial (nogil); batches optionally on 2 threads",
        first_run_seconds=round(t_first, 3), model_setup_seconds=round(t_setup, 3),
        import_seconds=round(t_import, 3),
        numpy_reference_seconds_per_image=None if ref_s is None else round(ref_s, 3),
        peak_rss_mib=round(maxrss_mib, 1), tracemalloc_peak_mib_one_image=round(traced_peak / 2**20, 1),
        stage_seconds_one_image={k: round(v, 4) for k, v in stages.items()},
        target_seconds_per_image=1.0, meets_target=per_image <= 1.0,
        machine=dict(machine(), load_average_before=[round(x, 2) for x in load0]),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "golden.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (out / "golden.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {out / 'golden.json'} and {out / 'golden.md'}")
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    rows = [
        ("seconds / image (median of %d)" % len(r["seconds_per_image_runs"]),
         f"{r['seconds_per_image_median']:.3f} s"),
        ("runs", ", ".join(f"{x:.3f}" for x in r["seconds_per_image_runs"])),
        (f"images / s, batch of {r['batch']}", f"{r['images_per_second_batch']:.2f}"),
        (f"images / s, batch of {r['batch']}, 2 worker threads",
         f"{r['images_per_second_batch_2_workers']:.2f}"),
        ("first run (kernel load + weight operands)", f"{r['first_run_seconds']:.2f} s"),
        ("model set-up (weight quantisation)", f"{r['model_setup_seconds']:.2f} s"),
        ("numpy reference path, one image",
         "-" if r["numpy_reference_seconds_per_image"] is None
         else f"{r['numpy_reference_seconds_per_image']:.2f} s"),
        ("peak RSS", f"{r['peak_rss_mib']:.0f} MiB"),
        ("tracemalloc peak, one image", f"{r['tracemalloc_peak_mib_one_image']:.1f} MiB"),
        ("target", f"<= {r['target_seconds_per_image']} s / image: "
                   f"{'met' if r['meets_target'] else 'NOT met'}"),
    ]
    lines = [f"### Golden model benchmark ({r['preset']}, {r['layers']} layers, {r['weights']} weights)",
             "", "| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, "
                  f"load average {m['load_average_before']} before / {m['load_average']} after; "
                  f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']}; {m['date']}."]
    st = r["stage_seconds_one_image"]
    lines += ["", "Stages (one image): " + ", ".join(
        f"{k} {v * 1e3:.0f} ms" for k, v in sorted(st.items(), key=lambda kv: -kv[1]))]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
