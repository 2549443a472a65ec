"""Whole edge-moe images through the RTL top (moevit_top) with the fast harness
(:mod:`moevit.sim.top_fast`), recorded in bench/top_edge_moe.json.

Runs (each compared bit for bit with the golden model):

* ``layer1``: up to the end of MoE layer 1 (debug_id 28: patch embedding, dense layer 0,
  MoE layer 1) with the weights read from an Edge-MoE folder (``*.float32.bin``, written
  here from seeded weights, or ``--weights DIR``);
* ``full``: one whole image, the ``stage`` register sampled every ``--sample-every`` cycles
  for per-stage cycles (summed per step kind over the layers too).

Records the cycles, the modelled time at the config's clock, the wall and CPU time of each
simulation, the Verilator build time (from the build's stamp, i.e. when it was first built),
the whole-accelerator cycle model's estimate for comparison, and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moevit import machine, tools  # noqa: E402
from moevit.config import preset  # noqa: E402


def _images(cfg, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(1, cfg.image_channels, cfg.image_height, cfg.image_width),
                        dtype=np.uint8)


def _step(name: str) -> str:
    """``l3.q`` -> ``q`` (the step kind, summed over layers); others unchanged."""
    return name.split(".", 1)[1] if name.startswith("l") and "." in name else name


def _record(r, cfg) -> dict:
    d = r.as_dict(cfg)
    d.pop("run_dir", None)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge-moe")
    ap.add_argument("--weights", default=None, metavar="DIR",
                    help="Edge-MoE weight folder (default: seeded weights written as one)")
    ap.add_argument("--seed", type=int, default=1, help="weights and image seed")
    ap.add_argument("--sample-every", type=int, default=500,
                    help="cycles between stage-register samples in the full run")
    ap.add_argument("--skip-layer1", action="store_true")
    ap.add_argument("--memory-latency", type=int, default=0,
                    help="simulated DRAM: cycles from AR to the first R beat (default 0)")
    ap.add_argument("--memory-stall", type=int, default=0,
                    help="simulated DRAM: stall probability/256 per channel and cycle")
    ap.add_argument("--out", default=str(REPO / "bench" / "top_edge_moe.json"))
    args = ap.parse_args(argv)
    from moevit.golden.cli import load_weights
    from moevit.golden.weight_io import save_folder
    from moevit.golden.weights import seeded_weights
    from moevit.hw.perf.cycle_model import run as cycle_model
    from moevit.sim.top_fast import build_top_fast, memory_words_log2, place_buffers, run_top_fast

    cfg = preset(args.preset)
    t0 = time.monotonic()
    bdir, _, first_build_s = build_top_fast(cfg, memory_words_log2(cfg, place_buffers(cfg, 1)))
    stamp = json.loads((bdir / ".built").read_text())
    res = {"what": "moevit_top (sequenced core) with the simulated DRAM in the design "
                   "(sim/top_fast.py): one $readmemh load, $writememh dumps, no Python per "
                   "cycle; compared bit for bit with the golden model",
           "preset": cfg.name, "config_digest": cfg.digest, "clock_mhz": cfg.clock_mhz,
           "simulator": tools.simulator_version("verilator"),
           "verilator_build_s": stamp["seconds"],
           "build_note": "Verilator build of the simulated-DRAM top around the exported "
                         "edge-moe moevit_top, as recorded when first built (the Verilog "
                         "export itself adds about a minute); reruns use the cache",
           "this_invocation_build_s": round(first_build_s, 1),
           "target_wall_s": 15 * 60}
    with tempfile.TemporaryDirectory() as tmp:
        if args.weights is None:
            folder = Path(tmp) / "weights"
            save_folder(seeded_weights(cfg, args.seed), folder, cfg)
            source = f"seeded_weights(seed={args.seed}) written as an Edge-MoE folder"
        else:
            folder, source = Path(args.weights), f"folder {args.weights}"
        weights = load_weights(cfg, folder)
    res["weights"] = source
    mem = {"latency": args.memory_latency, "stall": args.memory_stall}
    res["memory"] = {**mem, "note": "moevit_sim_mem: one beat per cycle and port when nothing "
                                    "stalls; latency = cycles from AR to the first R beat; "
                                    "stall = probability/256 of a stall per channel and cycle"}
    img = _images(cfg, args.seed)
    if not args.skip_layer1:
        r = run_top_fast(cfg, weights, img, debug_id=28, sample_every=0, **mem)
        res["layer1"] = _record(r, cfg)
        print("layer1", json.dumps({k: res["layer1"][k] for k in
                                    ("cycles", "bit_exact", "run_wall_s", "khz")}))
    r = run_top_fast(cfg, weights, img, sample_every=args.sample_every, **mem)
    full = _record(r, cfg)
    per_step: dict[str, int] = {}
    for s in r.stage_cycles:
        per_step[_step(s.name)] = per_step.get(_step(s.name), 0) + s.cycles
    full["cycles_per_step_kind"] = per_step
    model = cycle_model(cfg)
    full["cycle_model"] = {"cycles": round(model.ms_per_image * cfg.clock_mhz * 1e3),
                           "ms": round(model.ms_per_image, 3),
                           "note": "hw.perf.cycle_model at batch 1 (activations as in "
                                   "cfg.activations_on_chip); not calibrated to this RTL here"}
    res["full"] = full
    res["total_wall_s"] = round(time.monotonic() - t0, 1)
    res["machine"] = machine.describe()
    out = Path(args.out)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print("full", json.dumps({k: full[k] for k in ("cycles", "bit_exact", "run_wall_s", "khz",
                                                    "modelled_ms")}))
    print(f"wrote {out}")
    return 0 if full["bit_exact"] and res.get("layer1", {"bit_exact": True})["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
