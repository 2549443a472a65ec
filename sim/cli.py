"""``moevit sim UNIT``: run one unit's cocotb testbench and write a JSON summary.

    moevit sim exp --preset edge-moe --sim verilator --vectors 100000 --seed 1 --json out.json

Exit status 0 when every output matched the golden model, 1 on any mismatch or failed
cocotb test (the JSON is still written), 2 for usage/tool errors (moevit's convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from moevit.config import preset
from moevit import tools
from moevit.sim.runner import SimulationError
from moevit.sim.units import UNITS, run_unit

SUMMARY_KEYS = ("unit", "config", "simulator", "simulator_version", "vectors", "random_vectors",
                "corner_vectors", "outputs", "mismatches", "latency_cycles", "items_per_cycle",
                "seed", "wall_s", "tb_seconds", "waves")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim", help="run a unit's RTL testbench (cocotb) against the golden model",
        description="Build the unit's Verilog for the preset, simulate it with random "
                    "valid/ready back-pressure, compare every output with the golden model, "
                    "and report latency and throughput.")
    p.add_argument("unit", choices=sorted(k for k in UNITS if k != "delay") + ["delay"],
                   metavar="UNIT", help="one of: " + ", ".join(sorted(UNITS)))
    p.add_argument("--preset", default="edge-moe", help="configuration preset (default edge-moe)")
    p.add_argument("--sim", default="verilator", choices=tools.SIMULATORS,
                   help="simulator (default verilator)")
    p.add_argument("--vectors", type=int, default=10000, help="random vectors (default 10000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--waves", action="store_true", help="record waveforms (VCD/FST)")
    p.add_argument("--p-valid", type=float, default=0.7,
                   help="source valid probability in the back-pressure phase")
    p.add_argument("--p-ready", type=float, default=0.7,
                   help="sink ready probability in the back-pressure phase")
    p.add_argument("--rows", type=int, default=None,
                   help="softmax: interleaved rows (default P x head lanes)")
    p.add_argument("--json", dest="json_out", default=None, help="write the summary here")
    p.add_argument("--verbose", action="store_true", help="show simulator output")
    p.add_argument("--inject-mismatch", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args) -> int:
    cfg = preset(args.preset)
    opts = {}
    if args.rows is not None:
        from moevit.hw.units.softmax import MIN_INTERLEAVE
        opts = {"rows": args.rows, "full_rate": args.rows >= MIN_INTERLEAVE}
    try:
        m = run_unit(args.unit, cfg, sim=args.sim, vectors=args.vectors, seed=args.seed,
                     waves=args.waves, p_valid=args.p_valid, p_ready=args.p_ready, opts=opts,
                     verbose=args.verbose,
                     params={"corrupt": True} if args.inject_mismatch else None)
        rc, err = 0, None
    except SimulationError as exc:
        m, rc, err = dict(getattr(exc, "metrics", {}) or {}), 1, exc
        m.setdefault("mismatches", None)
        m["error"] = str(exc)
    summary = {k: m.get(k) for k in SUMMARY_KEYS if k in m}
    summary["details"] = {k: v for k, v in m.items() if k not in SUMMARY_KEYS}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(summary, indent=1) + "\n")
    if err is not None:
        print(f"moevit sim {args.unit}: FAILED\n{err}", file=sys.stderr)
        return rc
    print(f"{args.unit} [{cfg.name}, {m['simulator_version']}]: {m['vectors']} vectors "
          f"({m['corner_vectors']} corner), {m['mismatches']} mismatches, latency "
          f"{m.get('latency_cycles')} cycles, {m.get('items_per_cycle')} items/cycle, "
          f"{m['wall_s']} s")
    return 0
