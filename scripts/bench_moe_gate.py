#!/usr/bin/env python3
"""MoE gate figures -> bench/moe_gate.json.

* RTL (Verilator) on tiny and on full edge-moe shapes: the golden-model layer, the corner
  layers and random layers under random back-pressure (bit-exact check), then an unthrottled
  layer: cycles vs the cycle model and the ideal one block per clock, items/cycle, simulated
  cycles per second of wall time;
* resources: Yosys ``synth_xilinx -family xcup`` (LUT, FF, DSP48E2, BRAM36, URAM) for edge-moe
  and zcu104 (same Verilog: the zcu104 entry is the cached result);
* timing proxy: ``synth_xilinx -family xcup -flatten -abc9; sta`` logic-only latest arrival
  (it does not time DSP48E2 or carry-chain cells), with the critical path's cells.

    python scripts/bench_moe_gate.py [--no-rtl] [--no-yosys] [--no-sta]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit import machine, tools  # noqa: E402
from moevit.config import preset  # noqa: E402

UNIT = "moe_gate"
RTL_KEYS = ("mismatches", "mismatches_taps", "extra_outputs", "layers", "layer_names",
            "cycles", "model_cycles", "ideal_cycles", "items_per_cycle",
            "blocks_per_cycle_overall", "sim_cycles", "tb_seconds", "sim_cycles_per_second",
            "wall_s", "simulator_version", "p_valid", "p_ready")


def rtl(cfg, random_tokens: int, seed: int) -> dict:
    from moevit.sim.units import run_unit
    m = run_unit(UNIT, cfg, sim="verilator", vectors=random_tokens, seed=seed)
    out = {k: m.get(k) for k in RTL_KEYS}
    out["model_error_pct"] = round(100 * abs(m["cycles"] - m["model_cycles"])
                                   / m["model_cycles"], 3)
    return out


def _verilog(cfg) -> Path:
    from moevit.hw.units.moe_gate import MoeGate
    from moevit.sim.runner import generate_verilog
    return generate_verilog(lambda: MoeGate(cfg), cfg, UNIT)


def resources(cfg) -> dict:
    from moevit.hw.verilog import yosys_estimate
    res = yosys_estimate(_verilog(cfg), UNIT)
    res.pop("cells", None)
    return res


#: the instantiated arithmetic units (timed on their own: another module re-pipelines them)
UNIT_MODULES = ("moe_gate.exp_scan.exp", "moe_gate.exp_num.exp", "moe_gate.div.div")


def sta(verilog: Path, top: str, blackbox: tuple = ()) -> dict:
    """Logic-only latest arrival (ps) and the critical path, ``blackbox`` modules excluded
    (cached per Verilog text and blackbox list)."""
    key = hashlib.sha256(verilog.read_bytes() + "|".join(blackbox).encode()).hexdigest()[:16]
    d = tools.build_root() / "yosys-sta" / key
    res_file = d / "result.json"
    if res_file.is_file():
        return json.loads(res_file.read_text())
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    bb = f"blackbox {' '.join(blackbox)}; " if blackbox else ""
    out = subprocess.run([tools.find_yosys(), "-p", f"read_verilog -sv {verilog}; {bb}"
                          f"synth_xilinx -family xcup -top {top} -flatten -abc9; sta"],
                         capture_output=True, text=True, timeout=7200)
    (d / "yosys.log").write_text(out.stdout + out.stderr)
    mt = re.search(r"Latest arrival time in '\S+' is (\d+):\n((?:.*\n){0,40})", out.stdout)
    if not mt:
        raise RuntimeError(f"no sta report in {d / 'yosys.log'}")
    path = [ln.strip() for ln in mt.group(2).splitlines() if re.match(r"\s+\d+ ", ln)]
    res = {"latest_arrival_ps": int(mt.group(1)), "critical_path": path[:16],
           "blackbox": list(blackbox), "seconds": round(time.monotonic() - t0, 1)}
    res_file.write_text(json.dumps(res, indent=1))
    return res


def timing(cfg) -> dict:
    from moevit.hw.units.divide import Divide
    from moevit.hw.units.exp import Exp
    from moevit.hw.verilog import write_verilog
    d = tools.build_root() / "yosys-sta" / cfg.digest
    units = {"exp": Exp(cfg), "div": Divide(cfg)}
    res = {"own_logic": sta(_verilog(cfg), UNIT, UNIT_MODULES)}
    for name, comp in units.items():
        res[f"{name}_unit"] = sta(write_verilog(comp, d / f"{name}.v", name), name)
    res["unit_bound_ps"] = max(r["latest_arrival_ps"] for r in res.values())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-rtl", action="store_true")
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--no-sta", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "moe_gate.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    res = dict(old)
    res["unit"] = UNIT
    res["machine"] = machine.describe()
    if not args.no_rtl:
        res["rtl"] = {"tiny": rtl(preset("tiny"), 2 * preset("tiny").tokens, 5),
                      "edge-moe": rtl(preset("edge-moe"), preset("edge-moe").tokens, 7)}
        print(json.dumps(res["rtl"], indent=1))
    if not args.no_yosys:
        res["resources"] = {p: dict(resources(preset(p)), fpga_part=preset(p).fpga_part)
                            for p in ("edge-moe", "zcu104")}
        print(json.dumps(res["resources"], indent=1))
    if not args.no_sta:
        res["timing_proxy"] = dict(timing(preset("edge-moe")), target_ps=1600,
                                   tool="yosys synth_xilinx -family xcup -flatten -abc9; sta "
                                        "(logic only: DSP48E2 and CARRY8 cells untimed)")
        print(json.dumps(res["timing_proxy"], indent=1))
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
