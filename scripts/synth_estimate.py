#!/usr/bin/env python3
"""Yosys resource estimates of the hardware units (``make synth-estimate``).

    python scripts/synth_estimate.py                       # all registered units, edge-moe
    python scripts/synth_estimate.py exp gelu --preset tiny
    python scripts/synth_estimate.py attention --no-commit  # a unit added by another module

For each unit: Verilog from the Amaranth component, Debian yosys ``synth_xilinx -family
xcup``, cell counts -> LUT, FF, DSP48E2, BRAM (36 Kb), URAM.  Latency and items/cycle are
measured by a short Verilator run of the unit's testbench (``--no-measure`` skips it and
reports the design latency).  Writes ``build/synth/<digest>/units.{json,md}`` and, for the
edge-moe preset, the committed summaries ``bench/units.json`` and ``docs/units.md``
(merged with entries already there, so units can be added one at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moevit.config import preset  # noqa: E402
from moevit.hw.verilog import CAVEAT, write_verilog, yosys_estimate  # noqa: E402
from moevit import tools  # noqa: E402
from moevit.sim.units import UNITS, get_unit, run_unit  # noqa: E402

DEFAULT_UNITS = ["exp", "gelu", "recip", "div", "sqrt", "rsqrt", "softmax", "moe_gate"]
#: random vectors of the measuring run where 2000 does not fit (moe_gate: random tokens on
#: top of its golden-model and corner layers)
MEASURE_VECTORS = {"moe_gate": 0}
COLUMNS = ["latency_cycles", "items_per_cycle", "LUT", "FF", "DSP48E2", "BRAM36", "URAM",
           "LUTRAM", "CARRY"]


def estimate_unit(name: str, cfg, *, measure: bool, out_dir: Path) -> dict:
    spec = get_unit(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = spec.build(cfg)
    vfile = write_verilog(comp, out_dir / f"{name}.v", name)
    print(f"[{name}] yosys synth_xilinx -family xcup ...", flush=True)
    res = yosys_estimate(vfile, name, log=out_dir / f"{name}.yosys.log")
    row = {"unit": name, "description": spec.description, **res}
    row["latency_cycles"] = getattr(comp, "latency", None)
    row["latency_source"] = "design"
    if measure and tools.skip_reason("verilator") is None:
        m = run_unit(name, cfg, vectors=MEASURE_VECTORS.get(name, 2000), seed=1)
        row.update(latency_cycles=m["latency_cycles"], items_per_cycle=m["items_per_cycle"],
                   latency_source="measured (Verilator)")
    print(f"[{name}] " + ", ".join(f"{k}={row.get(k)}" for k in COLUMNS) +
          f" ({res['seconds']} s)", flush=True)
    return row


def markdown(rows: list[dict], cfg) -> str:
    head = ("| unit | latency (cycles) | items/cycle | LUT | FF (upper bound) | DSP48E2 | "
            "BRAM36 | URAM | what |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    body = "".join(
        f"| {r['unit']} | {r.get('latency_cycles')} | {r.get('items_per_cycle', '—')} | "
        f"{r['LUT']} | {r['FF']} | {r['DSP48E2']} | {r['BRAM36']:g} | {r['URAM']} | "
        f"{r.get('description', '')} |\n" for r in rows)
    return (f"Preset `{cfg.name}` ({cfg.fpga_part}), config digest `{cfg.digest}`.\n\n"
            + head + body + f"\n{CAVEAT}\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("units", nargs="*", help=f"units (default: {' '.join(DEFAULT_UNITS)}); "
                    f"registered: {', '.join(sorted(UNITS))}")
    ap.add_argument("--preset", default="edge-moe")
    ap.add_argument("--no-measure", action="store_true", help="skip the Verilator runs")
    ap.add_argument("--no-commit", action="store_true",
                    help="do not update bench/units.json and docs/units.md")
    args = ap.parse_args(argv)
    cfg = preset(args.preset)
    units = args.units or DEFAULT_UNITS
    try:
        tools.find_yosys()
    except Exception as exc:
        print(f"synth-estimate: {exc}", file=sys.stderr)
        return 2
    out_dir = ROOT / "build" / "synth" / cfg.digest
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [estimate_unit(u, cfg, measure=not args.no_measure, out_dir=out_dir) for u in units]
    (out_dir / "units.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out_dir / "units.md").write_text(markdown(rows, cfg))
    print(f"wrote {out_dir / 'units.json'} and units.md")
    if cfg.name == "edge-moe" and not args.no_commit:
        bench = ROOT / "bench" / "units.json"
        old = json.loads(bench.read_text()) if bench.exists() else {"units": []}
        merged = {r["unit"]: r for r in old.get("units", [])}
        for r in rows:
            merged[r["unit"]] = {k: v for k, v in r.items() if k != "cells"} | \
                {"cells": r["cells"]}
        order = [u for u in DEFAULT_UNITS if u in merged] + \
            sorted(u for u in merged if u not in DEFAULT_UNITS)
        summary = {"preset": cfg.name, "fpga_part": cfg.fpga_part, "tool": "yosys "
                   "synth_xilinx -family xcup", "caveat": CAVEAT,
                   "units": [merged[u] for u in order]}
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(json.dumps(summary, indent=1) + "\n")
        doc = ROOT / "docs" / "units.md"
        text = doc.read_text() if doc.exists() else ""
        table = markdown(summary["units"], cfg)
        start, end = "<!-- units-table:start -->", "<!-- units-table:end -->"
        block = f"{start}\n{table}{end}"
        if start in text and end in text:
            text = text.split(start)[0] + block + text.split(end, 1)[1]
        else:
            text = text + ("\n" if text else "") + block + "\n"
        doc.write_text(text)
        print(f"updated {bench} and {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
