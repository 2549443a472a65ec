#!/usr/bin/env python
"""`make bench`: run every benchmark, then write bench/summary.md from their JSON results.

    python scripts/bench.py [--skip golden,float] [--summary-only]

Each benchmark records the machine it ran on; machines are noisy, so the figures are medians
and the summary states the load average at the time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

#: name -> (script, extra args); each writes bench/<name>.json
BENCHMARKS = {
    "golden": ("scripts/bench_golden.py", []),
    "float": ("scripts/bench_float.py", ["--device", "all"]),
}


def run(name: str) -> None:
    script, args = BENCHMARKS[name]
    print(f"== bench {name}: {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(REPO / script), *args], check=True, cwd=REPO)


def _load(name: str) -> dict | None:
    path = BENCH / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _float_rows(data: dict) -> list[str]:
    rows = []
    for r in data.get("results", []):
        where = f"{r['preset']}, {r['device']}, {r['dtype']}"
        if r.get("threads"):
            where += f", {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        rows.append(f"| float M³ViT backbone ({where}) | {r['backbone']['median_ms']:.1f} ms / image |")
        if "backbone_plus_head" in r:
            rows.append(f"| float M³ViT backbone + PUP head ({where}) | "
                        f"{r['backbone_plus_head']['median_ms']:.1f} ms / image |")
    return rows


def summary() -> str:
    lines = ["# Benchmarks", "",
             "Medians over repeated runs; each JSON beside this file records its machine and load.",
             "", "| benchmark | result |", "|---|---|"]
    data = {name: _load(name) for name in ("golden", "float")}
    golden, flt = data["golden"], data["float"]
    if golden:
        lines.append(f"| golden integer model, edge-moe, 12 layers | "
                     f"{golden['seconds_per_image_median']:.3f} s / image (target ≤ 1.0 s) |")
        lines.append(f"| golden integer model, batch of 8 | "
                     f"{golden['images_per_second_batch']:.2f} images / s |")
        lines.append(f"| golden integer model, peak RSS | {golden['peak_rss_mib']:.0f} MiB |")
    if flt:
        lines += _float_rows(flt)
    lines.append("")
    for name, doc in data.items():
        if doc and "machine" in doc:
            m = doc["machine"]
            desc = ", ".join(f"{k} {v}" for k, v in m.items() if not isinstance(v, (dict, list)))
            lines.append(f"- {name}: {desc}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", default="", help="comma-separated benchmarks to skip")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite bench/summary.md")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    if not args.summary_only:
        for name in BENCHMARKS:
            if name not in skip:
                run(name)
    text = summary()
    (BENCH / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
