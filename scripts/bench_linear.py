#!/usr/bin/env python3
"""Linear engine and patch embedding figures -> bench/linear.json.

* RTL (Verilator): full edge-moe FC1 (129 × 192 → 768, GELU) then FC2 whose weights load
  during FC1, unthrottled (tile steps per cycle, cycles vs the cycle model, simulated cycles
  per second); the golden-model layers, corners and the MoE expert loop under back-pressure
  on edge-moe; the patch embedding on edge-moe (the same, plus its full-rate image).
* Resources: Yosys ``synth_xilinx -family xcup -flatten`` (LUT, FF, DSP48E2, BRAM, URAM) and
  the timing proxy ``synth_xilinx -family xcup -flatten -abc9; sta`` (logic-only latest
  arrival).  edge-moe and zcu104 build the same Verilog (they differ in part and board
  only), so one synthesis serves both.

    python scripts/bench_linear.py [--no-rtl] [--no-yosys] [--no-sta]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit.config import preset  # noqa: E402
from moevit.machine import describe  # noqa: E402

OUT = REPO / "bench" / "linear.json"
STA_SCRIPT = "read_verilog -sv {v}; synth_xilinx -family xcup -top {top} -flatten -abc9; sta"


def rtl(unit: str, cfg, phases=None, seed=1) -> dict:
    from moevit.sim.units import run_unit
    params = {"phases": phases} if phases else {}
    m = run_unit(unit, cfg, seed=seed, params=params)
    keep = ("mismatches", "outputs", "phases", "cycles", "ideal_cycles", "items_per_cycle",
            "model_cycles", "latency_cycles", "simulator_version", "wall_s", "tb_seconds")
    return {k: m.get(k) for k in keep}


def verilog(unit: str, cfg) -> Path:
    from moevit.sim.runner import generate_verilog
    from moevit.sim.units import get_unit
    return generate_verilog(lambda: get_unit(unit).build(cfg), cfg, unit)


def resources(unit: str, cfg) -> dict:
    from moevit.hw.verilog import yosys_estimate
    res = yosys_estimate(verilog(unit, cfg), unit)
    res = {k: v for k, v in res.items() if k != "cells"}
    return res


def sta(unit: str, cfg) -> dict:
    """Logic-only latest arrival (ps) from yosys ``sta`` after ``-abc9`` (cached by the
    Verilog file name, which carries its content hash)."""
    from moevit.tools import find_yosys
    v = verilog(unit, cfg)
    log = v.with_suffix(".sta.log")
    if not log.is_file():
        t0 = time.monotonic()
        out = subprocess.run([find_yosys(), "-p", STA_SCRIPT.format(v=v, top=unit)],
                             capture_output=True, text=True, timeout=6 * 3600)
        if out.returncode:
            raise RuntimeError(f"yosys sta failed for {unit}:\n{out.stderr[-2000:]}")
        log.write_text(out.stdout + f"\n# seconds {time.monotonic() - t0:.0f}\n")
    text = log.read_text()
    mt = re.search(r"Latest arrival time in '.*?' is (\d+)", text) or \
        re.search(r"Latest arrival time.*?(\d+)", text)
    secs = re.search(r"# seconds (\d+)", text)
    return {"latest_arrival_ps": int(mt.group(1)) if mt else None,
            "seconds": int(secs.group(1)) if secs else None, "log": str(log)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-rtl", action="store_true")
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--no-sta", action="store_true")
    args = ap.parse_args(argv)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    edge = preset("edge-moe")
    res = dict(old)
    res["machine"] = describe()
    res["note"] = ("edge-moe and zcu104 share the linear engine's Verilog (same 16 × 16 tile; "
                   "the presets differ in part and board), so one synthesis serves both.")
    if not args.no_rtl:
        res["rtl_edge_moe_fc1_fc2_full_rate"] = rtl("linear", edge, ["rate"], seed=5)
        res["rtl_edge_moe_layers_backpressure"] = rtl("linear", edge, ["model", "corners"])
        res["rtl_edge_moe_patch_embed"] = rtl("patch_embed", edge, seed=6)
        res["rtl_tiny"] = {u: rtl(u, preset("tiny")) for u in ("linear", "patch_embed")}
    for unit in ("linear", "patch_embed"):
        if not args.no_yosys:
            res.setdefault("yosys", {})[unit] = resources(unit, edge)
        if not args.no_sta:
            res.setdefault("sta", {})[unit] = sta(unit, edge)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
