#!/usr/bin/env python3
"""Attention unit figures for P = 1, 2, 4, 8 -> build/bench/attention.json.

* cycles per layer: analytical (moevit.hw.units.attention_schedule.cycles_per_layer) for tiny
  and edge-moe, measured in RTL simulation at full rate on tiny (and edge-moe with
  ``--rtl-edge``), beside the spec's ideal trip-count figure (§11 method: II=1, no stalls);
* resources: Yosys ``synth_xilinx -family xcup`` on the Amaranth unit built for the zcu104
  preset (edge-moe dimensions) with each P (``--no-yosys`` to skip; minutes per P);
* numerics across P: max ULP difference of softmax info and softmax·V against P=4 on layer 0
  of a seeded edge-moe network (the visiting order k0 = q mod P is part of the numerics).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit.config import preset  # noqa: E402
from moevit.hw.units.attention_schedule import cycles_per_layer, geometry  # noqa: E402

PS = (1, 2, 4, 8)


def rtl_cycles(cfg, sim: str) -> dict:
    from moevit.hw.units.attention import Attention
    from moevit.sim.runner import run_testbench
    m = run_testbench(lambda: Attention(cfg), cfg, "attention", "moevit.sim.tb_attention",
                      sim=sim, params={"seed": 1, "p_valid": 1.0, "p_ready": 1.0})
    assert m["mismatches"] == 0, m
    return {k: m[k] for k in ("qk_cycles", "av_cycles", "layer_cycles", "mismatches", "simulator",
                              "wall_s")}


def yosys_synth(cfg, run: bool = True) -> dict | None:
    """moevit.hw.verilog.yosys_estimate (Debian yosys, synth_xilinx -family xcup -flatten) on
    the Attention component (cached per Verilog text by yosys_estimate).  With ``run=False``
    only a cached result for the current Verilog is returned (or None)."""
    from moevit.hw.units.attention import Attention
    from moevit.hw.verilog import cached_yosys_estimate, yosys_estimate
    from moevit.sim.runner import generate_verilog, unit_dir
    v = generate_verilog(lambda: Attention(cfg), cfg, "attention")
    d = unit_dir(cfg, "attention") / "yosys"
    d.mkdir(parents=True, exist_ok=True)
    log = d / f"{v.stem}.log"
    res = (yosys_estimate(v, "attention", log=log) if run
           else cached_yosys_estimate(v, "attention", log=log))
    if res is None:
        return None
    res["CARRY4"] = res["cells"].get("CARRY4", 0)
    res.pop("cells")
    return res


def ulp_across_p(seed: int = 0) -> dict:
    from moevit.golden import attention as ga
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    base = preset("edge-moe")
    names = {"l0.q", "l0.k", "l0.v"}
    t = GoldenModel(base, seeded_weights(base, seed)).run(synthetic_image(base, seed),
                                                           taps=names).taps
    q, k, v = (t[f"l0.{n}"][0] for n in "qkv")
    res = {}
    for P in PS:
        cfg = base.replace(attn_parallel=P)
        a = ga.attention(q, k, v, cfg)
        res[P] = (a["scores"], a["recip"], a["max"], a["av"])
    out = {}
    s4, r4, m4, a4 = res[4]
    for P in PS:
        s, r, m, a = res[P]
        out[str(P)] = dict(scores_differ=int((s != s4).sum()), max_differ=int((m != m4).sum()),
                           recip_differ=int((r != r4).sum()),
                           recip_max_ulp=int(np.abs(r - r4).max()),
                           av_differ=int((a != a4).sum()), av_max_ulp=int(np.abs(a - a4).max()),
                           rows=int(r.size), outputs=int(a.size))
    return {"data": f"edge-moe seeded_weights(seed={seed}), synthetic_image(seed={seed}), layer 0",
            "vs_P4": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "attention.json",
                    help="result JSON (default build/bench/; `make bench-record` copies it)")
    ap.add_argument("--sim", default="icarus", help="simulator for the tiny RTL runs")
    ap.add_argument("--no-rtl", action="store_true")
    ap.add_argument("--rtl-edge", type=int, nargs="*", default=[], metavar="P",
                    help="also simulate edge-moe at these P on Verilator (minutes each)")
    ap.add_argument("--no-yosys", action="store_true")
    ap.add_argument("--yosys-p", type=int, nargs="*", default=list(PS), metavar="P",
                    help="run Yosys for these P only (others: cached result for the current "
                         "Verilog, if any)")
    a = ap.parse_args(argv)
    # partial reruns keep the other figures: from the last result, else the recorded copy
    recorded = REPO / "bench" / "attention.json"
    seed = a.out if a.out.exists() else recorded
    old = json.loads(seed.read_text()) if seed.exists() else {}
    clock = preset("edge-moe").clock_mhz
    res = {"clock_mhz": clock, "per_P": {}}
    for P in PS:
        row = {}
        for name in ("tiny", "edge-moe"):
            cfg = preset(name).replace(attn_parallel=P)
            row[f"{name}_analytical"] = cycles_per_layer(cfg)
        row["edge-moe_ms_at_clock"] = round(row["edge-moe_analytical"]["layer_cycles"]
                                            / (clock * 1e3), 4)
        if not a.no_rtl:
            row["tiny_rtl"] = rtl_cycles(preset("tiny").replace(attn_parallel=P), a.sim)
            if P in a.rtl_edge:
                row["edge-moe_rtl"] = rtl_cycles(preset("edge-moe").replace(attn_parallel=P),
                                                 "verilator")
        for key in ("tiny_rtl", "edge-moe_rtl"):  # keep earlier measurements not redone
            prev = old.get("per_P", {}).get(str(P), {}).get(key)
            if key not in row and prev and prev.get("layer_cycles") == row[
                    key.replace("_rtl", "_analytical")]["layer_cycles"]:
                row[key] = prev  # (only while they still agree with the cycle model)
        ys = yosys_synth(preset("zcu104").replace(attn_parallel=P),
                         run=not a.no_yosys and P in a.yosys_p)
        if ys is not None:  # only results for the current RTL (cached per Verilog hash)
            row["yosys_zcu104"] = ys
        res["per_P"][str(P)] = row
        print(f"P={P}: {json.dumps(row)}", flush=True)
    e = preset("edge-moe")
    steps = geometry(e).steps  # QB x T x FB
    res["spec_ideal_edge_moe_P4"] = {
        "qk_loop": steps,
        "av_loop": steps,
        "layer": cycles_per_layer(e)["ideal_layer_cycles"],
        "note": "§11 method (pipelined loops at II=1, trip counts 33 x 129 x 24 per phase)"}
    res["numerics_across_P"] = ulp_across_p()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
