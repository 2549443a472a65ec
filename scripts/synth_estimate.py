#!/usr/bin/env python3
"""Yosys resource and timing-proxy estimates of the hardware units (``make synth-estimate``).

    python scripts/synth_estimate.py                        # DEFAULT_UNITS, edge-moe + zcu104
    python scripts/synth_estimate.py exp gelu --preset tiny
    python scripts/synth_estimate.py layernorm --no-measure

For each unit and preset: Verilog from the Amaranth component, Debian yosys
``synth_xilinx -family xcup -flatten -abc9; stat; sta`` (cached under ``build/yosys/``) ->
LUT, FF, DSP48E2, BRAM (36 Kb), URAM and the logic-only latest arrival ``sta_ps`` (the timing
proxy; :mod:`moevit.hw.verilog`), checked against ``STA_LIMIT_PS``.  Latency and items/cycle
are measured by a short Verilator run of the unit's testbench on the first preset
(``--no-measure`` reports the design latency).  Writes ``build/synth/<digest>/units.{json,md}``
per preset and, when the presets include edge-moe, the committed summaries
``bench/units.json`` (edge-moe columns plus a ``zcu104`` entry per unit, and the machine) and
the table in ``docs/units.md`` (merged with the units already there).
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
from moevit.machine import describe  # noqa: E402
from moevit.sim.units import UNITS, get_unit, run_unit  # noqa: E402

DEFAULT_UNITS = ["exp", "gelu", "recip", "div", "sqrt", "rsqrt", "softmax", "layernorm",
                 "residual", "attention", "linear", "patch_embed", "moe_gate"]
DEFAULT_PRESETS = ["edge-moe", "zcu104"]
#: the timing-proxy budget: half of the 3.33 ns period at 300 MHz (the rest for routing)
STA_LIMIT_PS = 1600
RESOURCES = ["LUT", "FF", "DSP48E2", "BRAM36", "URAM", "sta_ps"]
#: run_unit options of the measurement: the attention testbench has no unthrottled phase of
#: its own, so it is measured at full rate (the others time an unthrottled phase themselves)
MEASURE_OPTS = {"attention": {"p_valid": 1.0, "p_ready": 1.0}}
#: random vectors of the measuring run where 2000 does not fit (moe_gate: random tokens on
#: top of its golden-model and corner layers; 1 = no random layer, vectors // tokens of
#: them, and 0 is rejected by run_unit)
MEASURE_VECTORS = {"moe_gate": 1}
COLUMNS = ["latency_cycles", "items_per_cycle"] + RESOURCES + ["LUTRAM", "CARRY", "sta_luts"]


def synth_unit(name: str, cfg, out_dir: Path) -> dict:
    """Yosys estimate of one unit for one preset (cached by Verilog text)."""
    spec = get_unit(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = spec.build(cfg)
    vfile = write_verilog(comp, out_dir / f"{name}.v", name)
    print(f"[{name} {cfg.name}] yosys synth_xilinx -family xcup -abc9; sta ...", flush=True)
    res = yosys_estimate(vfile, name, log=out_dir / f"{name}.yosys.log")
    row = {"unit": name, "description": spec.description, "config_digest": cfg.digest, **res,
           "latency_cycles": getattr(comp, "latency", None), "latency_source": "design",
           "sta_ok": res["sta_ps"] <= STA_LIMIT_PS}
    return row


def measure_unit(name: str, cfg, row: dict) -> None:
    if tools.skip_reason("verilator") is not None:
        return
    m = run_unit(name, cfg, vectors=MEASURE_VECTORS.get(name, 2000), seed=1,
                 **MEASURE_OPTS.get(name, {}))
    row.update(latency_cycles=m.get("latency_cycles"), items_per_cycle=m.get("items_per_cycle"),
               latency_source="measured (Verilator)")
    # the run itself: exactness, cycles against the unit's cycle model, simulation speed
    cycles = sum(int(m.get(k) or 0) for k in ("backpressure_cycles", "cycles",
                                              "layer_cycles") if k in m)
    run = {k: m[k] for k in ("vectors", "outputs", "mismatches", "extra_outputs", "cycles",
                             "model_cycles", "ideal_cycles", "layer_cycles", "tokens", "dim",
                             "simulator_version", "wall_s", "tb_seconds") if k in m}
    if cycles and m.get("wall_s"):
        run["simulated_cycles"] = cycles
        run["cycles_per_wall_s"] = round(cycles / m["wall_s"])
    row["verilator_run"] = run


def markdown(rows: list[dict], cfg, other: dict | None = None) -> str:
    """The unit table; ``other`` {preset: {unit: row}} adds resource columns per preset."""
    other = other or {}
    extra_head = "".join(f" {p}: LUT / FF / DSP / BRAM / URAM / sta ns |" for p in other)
    head = ("| unit | latency (cycles) | items/cycle | LUT | FF (upper bound) | DSP48E2 | "
            "BRAM36 | URAM | sta (ns) |" + extra_head + " what |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(other) + "---|\n")

    def sta(r):
        return f"{r['sta_ps'] / 1000:.2f}" if r.get("sta_ps") is not None else "—"

    def res(r):
        if r is None:
            return "—"
        return (f"{r['LUT']} / {r['FF']} / {r['DSP48E2']} / {r['BRAM36']:g} / {r['URAM']} / "
                f"{sta(r)}")
    body = "".join(
        f"| {r['unit']} | {r.get('latency_cycles')} | {r.get('items_per_cycle', '—')} | "
        f"{r['LUT']} | {r['FF']} | {r['DSP48E2']} | {r['BRAM36']:g} | {r['URAM']} | {sta(r)} |"
        + "".join(f" {res(o.get(r['unit']))} |" for o in other.values())
        + f" {r.get('description', '')} |\n" for r in rows)
    return (f"Preset `{cfg.name}` ({cfg.fpga_part}), config digest `{cfg.digest}`"
            + "".join(f"; `{p}` columns from the same run" for p in other) + ".  Timing "
            f"proxy budget: sta <= {STA_LIMIT_PS / 1000:.1f} ns.\n\n" + head + body +
            f"\n{CAVEAT}\n")


def _commit(rows_by_preset: dict, machine: dict) -> None:
    """Merge into bench/units.json and the docs/units.md table (edge-moe + the others)."""
    cfg = preset("edge-moe")
    bench = ROOT / "bench" / "units.json"
    old = json.loads(bench.read_text()) if bench.exists() else {"units": []}
    merged = {r["unit"]: r for r in old.get("units", [])}
    others = [p for p in rows_by_preset if p != "edge-moe"]
    for r in rows_by_preset["edge-moe"]:
        entry = {k: v for k, v in r.items() if k != "cells"} | {"cells": r["cells"]}
        prev = merged.get(r["unit"], {})
        for p in old.get("other_presets", []):
            if p in prev and p not in others:
                entry[p] = prev[p]
        for p in others:
            o = next((x for x in rows_by_preset[p] if x["unit"] == r["unit"]), None)
            if o is not None:
                entry[p] = {k: o[k] for k in RESOURCES + ["sta_from", "sta_to", "sta_ok",
                                                          "fpga_part", "config_digest"]
                            if k in o}
        merged[r["unit"]] = entry
    order = [u for u in DEFAULT_UNITS if u in merged] + \
        sorted(u for u in merged if u not in DEFAULT_UNITS)
    presets = sorted(set(old.get("other_presets", [])) | set(others))
    summary = {"preset": cfg.name, "fpga_part": cfg.fpga_part, "other_presets": presets,
               "tool": "yosys synth_xilinx -family xcup -flatten -abc9; sta",
               "sta_limit_ps": STA_LIMIT_PS, "caveat": CAVEAT, "machine": machine,
               "units": [merged[u] for u in order]}
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(json.dumps(summary, indent=1) + "\n")
    doc = ROOT / "docs" / "units.md"
    text = doc.read_text() if doc.exists() else ""
    other = {p: {u["unit"]: u[p] for u in summary["units"] if p in u} for p in presets}
    table = markdown(summary["units"], cfg, other)
    start, end = "<!-- units-table:start -->", "<!-- units-table:end -->"
    block = f"{start}\n{table}{end}"
    if start in text and end in text:
        text = text.split(start)[0] + block + text.split(end, 1)[1]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    doc.write_text(text)
    print(f"updated {bench} and {doc}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("units", nargs="*", help=f"units (default: {' '.join(DEFAULT_UNITS)}); "
                    f"registered: {', '.join(sorted(UNITS))}")
    ap.add_argument("--preset", action="append", dest="presets",
                    help=f"preset (repeatable; default {' '.join(DEFAULT_PRESETS)})")
    ap.add_argument("--no-measure", action="store_true", help="skip the Verilator runs")
    ap.add_argument("--no-commit", action="store_true",
                    help="do not update bench/units.json and docs/units.md")
    args = ap.parse_args(argv)
    presets = args.presets or DEFAULT_PRESETS
    units = args.units or DEFAULT_UNITS
    try:
        tools.find_yosys()
    except Exception as exc:
        print(f"synth-estimate: {exc}", file=sys.stderr)
        return 2
    rows_by_preset = {}
    for k, name in enumerate(presets):
        cfg = preset(name)
        out_dir = ROOT / "build" / "synth" / cfg.digest
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for u in units:
            row = synth_unit(u, cfg, out_dir)
            row["fpga_part"] = cfg.fpga_part
            if k == 0 and not args.no_measure:
                measure_unit(u, cfg, row)
            elif k > 0 and rows_by_preset:
                first = next(r for r in next(iter(rows_by_preset.values())) if r["unit"] == u)
                row.update({c: first.get(c) for c in ("latency_cycles", "items_per_cycle",
                                                      "latency_source")})
            print(f"[{u} {name}] " + ", ".join(f"{c}={row.get(c)}" for c in COLUMNS) +
                  f" ({row['seconds']} s)" + ("" if row["sta_ok"] else
                                              f"  ** sta over {STA_LIMIT_PS} ps"), flush=True)
            rows.append(row)
        (out_dir / "units.json").write_text(json.dumps(rows, indent=1) + "\n")
        (out_dir / "units.md").write_text(markdown(rows, cfg))
        print(f"wrote {out_dir / 'units.json'} and units.md")
        rows_by_preset[name] = rows
    if "edge-moe" in rows_by_preset and not args.no_commit:
        machine = describe(yosys=_yosys_version())
        _commit(rows_by_preset, machine)
    over = [(p, r["unit"], r["sta_ps"]) for p, rows in rows_by_preset.items() for r in rows
            if not r["sta_ok"]]
    if over:
        print("timing proxy over budget: " + ", ".join(f"{u} ({p}) {s} ps" for p, u, s in over))
    return 0


def _yosys_version() -> str:
    import subprocess
    try:
        return subprocess.run([tools.find_yosys(), "-V"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
