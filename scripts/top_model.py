#!/usr/bin/env python3
"""`make top-model`: the RTL top's cycle model (hw/perf/top_model.py) for edge-moe and zcu104.

Writes build/bench/top_model.json (per-stage cycles, DRAM bytes, bound, ms/image at the
config's clock on the board memory model and on the RTL testbench's ideal memory, the
targets, and the what-if figures of hw/perf/cycle_model.py: weights prefetched, activations
on chip, the batched schedule), build/bench/top_model.md and build/bench/top_model.png (the
per-stage breakdown).  ``--measure-rtl`` also runs the tiny top in Verilator (every debug
stop, the full run, and the timeline testbench) into build/bench/top_tiny_cycles.json.
``--measure-edge-moe`` runs edge-moe through the RTL with the in-design DRAM (sim/top_fast.py)
to the end of MoE layer 1 and for the whole image.  ``--record`` copies the results into
bench/.

    python scripts/top_model.py [--out build/bench] [--measure-rtl] [--measure-edge-moe]
                                [--record]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit import machine  # noqa: E402
from moevit.config import preset  # noqa: E402
from moevit.hw.perf import cycle_model, top_model  # noqa: E402

PRESETS = ("edge-moe", "zcu104")
#: issue #11 targets for the zcu104 preset at 300 MHz
TARGET_MS_PER_IMAGE = 10.0
TARGET_IMAGES_PER_S = 100.0
BATCH = 16
RECORD = ("top_model.json", "top_model.md", "top_model.png", "top_tiny_cycles.json",
          "top_edge_moe_layer1_cycles.json", "top_edge_moe_cycles.json")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def what_if(cfg, routing) -> dict:
    """The schedule this RTL does not have, from hw/perf/cycle_model.py (same routing)."""
    off = cfg.replace(activations_on_chip=False)
    on = cfg.replace(activations_on_chip=True)
    pre = cycle_model.run(off, 1, routing)
    chip = cycle_model.run(on, 1, routing)
    batched = cycle_model.run(on, BATCH, routing)
    return {"prefetch_weights_ms_per_image": round(pre.ms_per_image, 3),
            "prefetch_and_activations_on_chip_ms_per_image": round(chip.ms_per_image, 3),
            f"batched_{BATCH}_images_per_s": round(batched.images_per_s, 1),
            "note": "hw/perf/cycle_model.py: weights prefetched into ping/pong during the "
                    "previous stage, activations in DRAM or on chip, the batched schedule "
                    f"(batch {BATCH}); same DRAM model (board)"}


def model_preset(name: str) -> dict:
    cfg = preset(name)
    golden = {L: [int(x) for x in v] for L, v in cycle_model.golden_routing(cfg).items()}
    out = {"config": name, "clock_mhz": cfg.clock_mhz,
           "activations_on_chip_in_config": cfg.activations_on_chip,
           "note": "the RTL top runs every tensor through DRAM whatever activations_on_chip "
                   "says (the sequenced core implements only the Edge-MoE schedule)",
           "routing_golden": {str(k): v for k, v in golden.items()}}
    for label, routing in (("golden", golden), ("uniform", None)):
        res = {}
        for mem in ("board", "ideal"):
            r = top_model.top_cycles(cfg, memory=mem, routing=routing)
            res[mem] = {"summary": r.summary(), "by_kind": r.by_kind()}
            if mem == "board":
                res[mem]["stages"] = [s.row() for s in r.stages]
        res["what_if"] = what_if(cfg, golden if routing is not None else "uniform")
        out[label] = res
    return out


def markdown(doc: dict) -> str:
    lines = ["# Cycle model of the RTL top (hw/perf/top_model.py)", "",
             f"Commit {doc['commit'][:12]}; targets (issue #11, zcu104 at 300 MHz): "
             f"<= {TARGET_MS_PER_IMAGE:g} ms/image at batch 1, >= {TARGET_IMAGES_PER_S:g} "
             "images/s batched.  `board`: ZCU104 memory model; `ideal`: the RTL testbench "
             "memory.  The RTL runs stages one after another, weights loaded before each "
             "compute, every tensor through DRAM (K and V read once per attention stage and "
             "replayed on chip once per query block).", "",
             "| preset | routing | RTL schedule, board (ms/image) | RTL schedule, ideal memory "
             "(ms) | what-if: prefetch (ms) | what-if: prefetch + on-chip (ms) | what-if: "
             f"batched {BATCH} (images/s) |", "|---|---|---|---|---|---|---|"]
    for name, p in doc["presets"].items():
        for label in ("golden", "uniform"):
            r = p[label]
            w = r["what_if"]
            lines.append(f"| {name} | {label} | {r['board']['summary']['ms_per_image']:.2f} | "
                         f"{r['ideal']['summary']['ms_per_image']:.2f} | "
                         f"{w['prefetch_weights_ms_per_image']:.2f} | "
                         f"{w['prefetch_and_activations_on_chip_ms_per_image']:.2f} | "
                         f"{w[f'batched_{BATCH}_images_per_s']:.1f} |")
    lines += ["", "Per stage kind (board memory, golden routing), ms per image: compute / "
              "DRAM wait / overhead:", "",
              "| preset | kind | ms | compute | DRAM wait | overhead | DRAM MB |",
              "|---|---|---|---|---|---|---|"]
    for name, p in doc["presets"].items():
        clk = p["clock_mhz"] * 1e3
        for kind, v in p["golden"]["board"]["by_kind"].items():
            lines.append(f"| {name} | {kind} | {v['cycles'] / clk:.2f} | {v['compute'] / clk:.2f}"
                         f" | {v['memory'] / clk:.2f} | {v['overhead'] / clk:.3f} | "
                         f"{v['bytes'] / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["presets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), sharey=True)
    parts = (("compute", "tab:blue"), ("memory", "tab:red"), ("overhead", "tab:gray"))
    for ax, name in zip(axes, names):
        p = doc["presets"][name]
        clk = p["clock_mhz"] * 1e3
        kinds = p["golden"]["board"]["by_kind"]
        xs = list(range(len(kinds)))
        bottom = [0.0] * len(kinds)
        for part, color in parts:
            vals = [kinds[k][part] / clk for k in kinds]
            ax.bar(xs, vals, bottom=bottom, color=color,
                   label={"memory": "DRAM wait"}.get(part, part))
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(xs, list(kinds), rotation=30)
        tot = p["golden"]["board"]["summary"]["ms_per_image"]
        w = p["golden"]["what_if"]
        ax.set_title(f"{name}: RTL schedule {tot:.1f} ms/image (board)\n"
                     f"what-if prefetch+on-chip {w['prefetch_and_activations_on_chip_ms_per_image']:.1f}"
                     f" ms; target <= {TARGET_MS_PER_IMAGE:g} ms", fontsize=9)
        ax.set_ylabel("ms per image (batch 1, 300 MHz)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


#: the runs of each RTL measurement: one image of task 0, then two images of task 1
RTL_RUNS = [{"task": 0, "num_images": 1, "reload": 1}, {"task": 1, "num_images": 2, "reload": 1}]


def e2e_record(cfg, m: dict) -> dict:
    """The cycle counts of one tb_top_e2e run (RTL_RUNS, stops 'all')."""
    return {"config": cfg.name, "config_digest": cfg.digest, "seed": 1,
            "bit_exact": m["mismatches"] == 0, "run_cycles": m["runs"][0]["cycles"],
            "run_2_images_task_1": m["runs"][1]["cycles"],
            "stops": {k: v["cycles"] for k, v in m["stops"].items()},
            "stop_names": {k: v["tap"] for k, v in m["stops"].items()}}


def measure_rtl(out: Path) -> Path:
    """tiny and the held-out config in Verilator: every debug stop and RTL_RUNS
    (tb_top_e2e), and tiny's timeline (tb_top_trace) -> top_tiny_cycles.json."""
    from moevit.sim.top_run import run_top
    params = {"runs": RTL_RUNS, "stops": "all"}
    cfg = preset("tiny")
    held = top_model.held_out_config()
    doc = {"machine": machine.describe(), "commit": commit(),
           "source": "sim/tb_top_e2e.py (stops 'all' with reload=1, then RTL_RUNS) and "
                     "sim/tb_top_trace.py, Verilator, cocotbext-axi AxiRam, no pauses",
           **e2e_record(cfg, run_top(cfg, params=params))}
    trace = run_top(cfg, "moevit.sim.tb_top_trace")
    doc["axi_measured"] = trace["axi"]
    doc["moe_events"] = [e for e in trace["events"] if e[1].startswith("moe_")]
    doc["held_out"] = e2e_record(held, run_top(held, params=params))
    path = out / "top_tiny_cycles.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def measure_edge_moe(out: Path, debug_id: int = 28) -> Path:
    """edge-moe through the current core with the in-design DRAM (sim/top_fast.py) up to
    ``debug_id`` (28: the end of MoE layer 1; 0: the whole image), stage register sampled
    every 500 cycles -> top_edge_moe_layer1_cycles.json / top_edge_moe_cycles.json."""
    import numpy as np

    from moevit.golden.weights import seeded_weights
    from moevit.sim.top_fast import run_top_fast
    cfg = preset("edge-moe")
    img = np.random.default_rng(1).integers(
        0, 256, size=(1, cfg.image_channels, cfg.image_height, cfg.image_width), dtype=np.uint8)
    r = run_top_fast(cfg, seeded_weights(cfg, 1), img, debug_id=debug_id, sample_every=500)
    key = "layer1_stop_28_cycles" if debug_id == 28 else f"stop_{debug_id}_cycles"
    doc = {"what": f"edge-moe through moevit_top (current core) up to debug_id {debug_id}",
           "source": "sim/top_fast.run_top_fast(preset('edge-moe'), seeded_weights(cfg, 1), "
                     "default_rng(1) uint8 image, task 0, sample_every=500); in-design DRAM, "
                     "latency 0, no stalls",
           "commit": commit(), "config_digest": cfg.digest, "kv_replay": True, "weight_prefetch": True,
           "patch_on_linear": True,
           "bit_exact": all(v is None for v in r.mismatches.values()),
           key: r.cycles, "stage_sample_every": r.sample_every,
           "stage_cycles": [[s.debug_id, s.name, s.cycles] for s in r.stage_cycles],
           "sim_wall_s": r.sim_wall_s, "simulator": r.simulator, "machine": machine.describe()}
    name = "top_edge_moe_layer1_cycles.json" if debug_id == 28 else "top_edge_moe_cycles.json"
    path = out / name
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    ap.add_argument("--measure-rtl", action="store_true")
    ap.add_argument("--measure-edge-moe", action="store_true",
                    help="also run edge-moe to the end of MoE layer 1 and the whole image "
                         "through the RTL (fast harness; ~5 min build, ~2 min runs)")
    ap.add_argument("--record", action="store_true", help="copy the results into bench/")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine.describe(), "commit": commit(),
           "targets": {"ms_per_image_batch1": TARGET_MS_PER_IMAGE,
                       "images_per_s_batched": TARGET_IMAGES_PER_S},
           "presets": {n: model_preset(n) for n in PRESETS}}
    (a.out / "top_model.json").write_text(json.dumps(doc, indent=1) + "\n")
    (a.out / "top_model.md").write_text(markdown(doc))
    plot(doc, a.out / "top_model.png")
    print(markdown(doc))
    if a.measure_rtl:
        print("wrote", measure_rtl(a.out))
    if a.measure_edge_moe:
        print("wrote", measure_edge_moe(a.out, 28))
        print("wrote", measure_edge_moe(a.out, 0))
    if a.record:
        dst = REPO / "bench"
        for n in RECORD:
            if (a.out / n).is_file():
                shutil.copy2(a.out / n, dst / n)
                print("recorded", dst / n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
