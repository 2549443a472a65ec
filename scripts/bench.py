#!/usr/bin/env python
"""`make bench`: run every benchmark into build/bench/, then write build/bench/summary.md.

    python scripts/bench.py [--skip golden,float] [--summary-only]
    python scripts/bench.py --record      # `make bench-record`: copy build/bench/ -> bench/

Each benchmark records the machine it ran on; machines are noisy, so the figures are medians
and the summary states the load average at the time.  Fresh results stay in build/bench/
(ignored by git), so a rerun never dirties the tree; the tracked copies in bench/ change only
when someone records them on purpose.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: fresh results (untracked)
RESULTS = REPO / "build" / "bench"
#: recorded results (tracked; written only by --record)
RECORDED = REPO / "bench"

#: name -> (script, extra args); each writes build/bench/<name>.json
BENCHMARKS = {
    "golden": ("scripts/bench_golden.py", ["--out", str(RESULTS)]),
    "float": ("scripts/bench_float.py", ["--device", "all", "--out", str(RESULTS / "float.json")]),
}
#: files --record copies from build/bench/ into bench/ (those present); bench/summary.md is
#: then rewritten from what bench/ holds
RECORD_FILES = ("golden.json", "golden.md", "float.json", "attention.json")


def run(name: str) -> None:
    script, args = BENCHMARKS[name]
    print(f"== bench {name}: {script} {' '.join(args)}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(REPO / script), *args], check=True, cwd=REPO)


def record(src: Path = RESULTS, dst: Path = RECORDED) -> list[Path]:
    """Copy the fresh results in ``src`` into the tracked ``dst``; returns the copies."""
    found = [src / n for n in RECORD_FILES if (src / n).is_file()]
    if not found:
        raise SystemExit(f"bench.py --record: no results in {src}; run `make bench` first")
    dst.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copy2(f, dst / f.name)) for f in found]
    (dst / "summary.md").write_text(summary(dst))
    return copies + [dst / "summary.md"]


def _load(name: str, folder: Path = RESULTS) -> dict | None:
    path = folder / f"{name}.json"
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


def summary(folder: Path = RESULTS) -> str:
    lines = ["# Benchmarks", "",
             "Medians over repeated runs; each JSON beside this file records its machine and load.",
             "", "| benchmark | result |", "|---|---|"]
    data = {name: _load(name, folder) for name in ("golden", "float")}
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
    ap.add_argument("--summary-only", action="store_true",
                    help="only rewrite build/bench/summary.md")
    ap.add_argument("--record", action="store_true",
                    help="copy the results in build/bench/ into the tracked bench/ and stop")
    args = ap.parse_args(argv)
    if args.record:
        for f in record():
            print(f"recorded {f.relative_to(REPO)}")
        return 0
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}")
    if not args.summary_only:
        for name in BENCHMARKS:
            if name not in skip:
                run(name)
    text = summary()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(text)
    print(text)
    print(f"results in {RESULTS.relative_to(REPO)}/; `make bench-record` copies them into bench/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
