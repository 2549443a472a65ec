#!/usr/bin/env python3
"""Simulated-DRAM speed -> bench/sim_mem.json.

The copy test top (sim/mem/copy_top.py: the real AXI burst masters, one per port) runs on
Verilator behind ``moevit_sim_mem`` (sim/mem/moevit_sim_mem.v): every port copies a slice,
all ports at once, with stalls off and on.  Recorded: beats per cycle per port, simulated
cycles per second (wall and CPU time of the simulator process), the time to load and dump an
image of the given size, and the cost of the memory side of a full edge-moe image
(``--image-cycles``) at the measured rate.  The accelerator's own logic adds to that; it is
not in this design.  A probe of the edge-moe linear engine with only its clock running shows
what cocotb's default ``--public-flat-rw`` costs against making only the ports public
(``build_simulator(public=...)``, which ``build_sim_top`` uses).

    python scripts/bench_sim_mem.py [--mib 40] [--image-cycles 10000000] [--no-public-probe]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit import machine, tools  # noqa: E402
from moevit.config import preset  # noqa: E402

UNIT = "sim_mem_copy_bench"
KEYS = ("rate_beats_per_port", "rate_ports", "rate_stall", "rate_latency", "rate_cycles",
        "rate_beats_per_cycle_per_port", "rate_wall_s", "rate_cycles_per_s", "rate_cpu_s",
        "rate_cycles_per_cpu_s", "rate_load_bytes", "rate_load_s", "rate_dump_s", "wall_s")


def public_effect(cfg, cycles: int = 200_000) -> dict:
    """The edge-moe linear engine (the largest datapath unit) with only its clock running,
    built with cocotb's default ``--public-flat-rw`` and with only its ports public."""
    import re

    from moevit.hw.units.linear import Linear
    from moevit.sim.runner import build_simulator, generate_verilog, run_built
    unit = "linear_probe"
    v = generate_verilog(lambda: Linear(cfg), cfg, unit, toplevel="linear")
    m = re.search(r"^module linear\((.*?)\);", v.read_text(), re.M | re.S)
    ports = [p.strip() for p in m.group(1).split(",")]
    out = {"design": f"hw.units.linear.Linear({cfg.name}), idle clock"}
    for name, public in (("public_flat_rw", None), ("ports_only", ports)):
        bdir = build_simulator(v, "linear", public=public)
        r = run_built(bdir, cfg, unit, "moevit.sim.tb_idle_clock", toplevel="linear",
                      params={"cycles": cycles})
        out[name] = {k: r[k] for k in ("idle_cycles", "idle_wall_s", "idle_cpu_s",
                                       "idle_cycles_per_cpu_s")}
        out[name]["build_s"] = json.loads((bdir / ".built").read_text())["seconds"]
        print(name, json.dumps(out[name]))
    out["speedup"] = round(out["ports_only"]["idle_cycles_per_cpu_s"]
                           / out["public_flat_rw"]["idle_cycles_per_cpu_s"], 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=40, help="MiB copied (and loaded) per run")
    ap.add_argument("--image-cycles", type=int, default=10_000_000,
                    help="cycles of one full edge-moe image (the issue's 6-10 M)")
    ap.add_argument("--words-log2", type=int, default=22)
    ap.add_argument("--no-public-probe", action="store_true",
                    help="skip the --public-flat-rw vs ports-only probe of the linear engine")
    ap.add_argument("--out", default=str(REPO / "bench" / "sim_mem.json"))
    args = ap.parse_args(argv)
    from moevit.sim.mem.copy_top import COPY_TOP, CopyTop
    from moevit.sim.mem.top import SimMemSpec, build_sim_top
    from moevit.sim.runner import run_built

    cfg = preset("tiny")       # the copy top reads only axi_width / mem_ports (same in edge-moe)
    mem = SimMemSpec(words_log2=args.words_log2)
    bdir, top = build_sim_top(CopyTop(cfg).verilog(), COPY_TOP, cfg, UNIT, mem=mem)
    build_s = json.loads((bdir / ".built").read_text())["seconds"]    # when first built
    beats = args.mib * 2**20 // (cfg.mem_ports * cfg.axi_width // 8)
    runs = {}
    for name, stall in (("no_stalls", 0), ("stalls_30pct", 77)):
        m = run_built(bdir, cfg, UNIT, "moevit.sim.tb_mem_top", toplevel=top,
                      testcase="test_copy_rate",
                      params={"words_log2": mem.words_log2, "rate_beats": beats,
                              "rate_stall": stall, "rate_latency": 20})
        runs[name] = {k: m.get(k) for k in KEYS}
        print(name, json.dumps(runs[name]))
    cps = runs["no_stalls"]["rate_cycles_per_cpu_s"]
    res = {
        "what": "moevit_sim_mem (Verilog DRAM model) behind the copy test top: every port "
                "copies its slice with the real AXI burst masters, reads and writes at once",
        "simulator": tools.simulator_version("verilator"),
        "memory": {"words_log2": mem.words_log2, "bytes": mem.words * cfg.axi_width // 8,
                   "ports": cfg.mem_ports, "data_bits": cfg.axi_width},
        "build_s": round(build_s, 1),
        "runs": runs,
        "image_estimate": {
            "image_cycles": args.image_cycles,
            "memory_side_cpu_s": round(args.image_cycles / cps, 1),
            "load_s_for_copied_mib": runs["no_stalls"]["rate_load_s"],
            "target_s": 15 * 60,
            "note": "memory model + AXI masters + clock only; the accelerator core's own "
                    "logic adds its eval cost per cycle (not measurable until it exists)"},
        "machine": machine.describe(),
    }
    if not args.no_public_probe:
        res["verilator_public_signals"] = public_effect(preset("edge-moe"))
    out = Path(args.out)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
