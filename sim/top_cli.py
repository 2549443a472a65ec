"""``moevit sim top``: images through the whole accelerator's RTL (``moevit_top``), compared with
the golden model.

    moevit sim top --preset tiny --seed 1 --synthetic --task 0
    moevit sim top --preset edge-moe --weights DIR --image cat.png --task depth --debug-id 28

Prints the mismatches (a ``--debug-id`` run: that stage's taps; a full run: ``x``), the cycles
(per stage where the harness samples them) and the modelled time at the config's clock.  The
default harness keeps the DRAM in the simulated design (:mod:`moevit.sim.top_fast`);
``--protocol`` uses the cocotbext-axi harness (:mod:`moevit.sim.tb_top_e2e`: AXI protocol checks,
random back-pressure, much slower).

Exit status: 0 bit-exact, 1 the RTL disagreed with the golden model, 2 a mistake in the
options or inputs (one line naming it and the fix; nothing is built or simulated).
"""

from __future__ import annotations

import json
import sys

from moevit import tools
from moevit.errors import ConfigError

HARNESS_FAST, HARNESS_PROTOCOL = "fast (simulated DRAM)", "protocol (cocotbext-axi AxiRam)"


def _int_at_least(low: int, what: str):
    from moevit.cli import int_at_least
    return int_at_least(low, what)


def register_top(units) -> None:
    """Add the ``top`` parser to ``moevit sim``'s unit subparsers."""
    from moevit.cli import seed_int
    p = units.add_parser(
        "top", help="whole images through the accelerator's RTL top",
        description="Run images through moevit_top (the sequenced core with its AXI masters) "
                    "and compare with the golden model: the x output of a full run, or the "
                    "stage's taps (in their DRAM layouts) of a --debug-id run.  Prints "
                    "mismatches, cycles per stage and the modelled time at the config's clock.")
    p.add_argument("--preset", default="edge-moe", help="configuration preset (default edge-moe)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="DIR", help="Edge-MoE weights folder (*.float32.bin)")
    src.add_argument("--seed", type=seed_int, metavar="N",
                     help="seeded weights (seeded_weights(cfg, N)) instead")
    img = p.add_mutually_exclusive_group(required=True)
    img.add_argument("--image", metavar="FILE",
                     help="PNG/JPEG (resized to the preset's input) or raw float32 .bin image")
    img.add_argument("--synthetic", nargs="?", const=0, type=seed_int, metavar="SEED",
                     help="the synthetic test image (seed default 0)")
    p.add_argument("--task", default="0", help="task id or name (semseg=0, depth=1; default 0)")
    p.add_argument("--debug-id", type=_int_at_least(0, "a debug_id (a whole number >= 0)"),
                   default=0, metavar="N",
                   help="stop after this stage (spec §6.2: 256 patch embedding, 16*layer+step; "
                        "default 0: the whole run)")
    p.add_argument("--num-images", type=_int_at_least(1, "an image count"), default=1,
                   metavar="N", help="images per run (the same image N times; default 1)")
    p.add_argument("--protocol", action="store_true",
                   help="use the cocotbext-axi harness (AXI protocol checks, random "
                        "back-pressure; Python per beat: tiny preset only in practice)")
    p.add_argument("--sim", default="verilator", choices=tools.SIMULATORS,
                   help="simulator (default verilator; the fast harness needs verilator)")
    p.add_argument("--stall", type=_int_at_least(0, "a stall level 0..255"), default=0,
                   help="fast harness: probability/256 of a stall per AXI channel and cycle")
    p.add_argument("--latency", type=_int_at_least(0, "a latency in cycles"), default=0,
                   help="fast harness: cycles from AR to the first R beat (default 0)")
    p.add_argument("--sample-every", type=_int_at_least(0, "a cycle count"), default=None,
                   metavar="CYCLES", help="fast harness: read the stage register every CYCLES "
                   "for per-stage cycles (0: off; default ~2,000 samples per run)")
    p.add_argument("--on-wrap", choices=("raise", "wrap"), default="raise",
                   help="weight values outside their format: stop (default) or wrap them")
    p.add_argument("--waves", action="store_true", help="record waveforms in the run's folder")
    p.add_argument("--json", dest="json_out", default=None, help="write the summary here")
    p.add_argument("--verbose", action="store_true", help="show simulator output")
    p.set_defaults(func=run_top_command)


def _inputs(args):
    """(cfg, task, weights, pixels uint8 [N,C,H,W]); every check before anything is built."""
    from moevit.config import preset
    from moevit.golden.cli import load_input_image, load_weights, resolve_task
    from moevit.host.driver import to_pixels
    from moevit.outputs import check_output_file
    from moevit.sim.mem.top import SimMemSpec, check_simulator
    from moevit.sim.top_fast import check_run
    import numpy as np
    if args.json_out is not None:
        check_output_file(args.json_out, "--json")
    cfg = preset(args.preset)
    task = resolve_task(cfg, args.task)
    if not args.protocol:
        if args.sim != "verilator":
            check_simulator(args.sim, SimMemSpec(), wrapped_top=True)
        if args.stall > 255:
            raise ConfigError(f"--stall {args.stall} is out of range; pass 0..255 "
                              f"(probability/256 per channel and cycle)")
    elif args.stall or args.latency or args.sample_every:
        raise ConfigError("--stall/--latency/--sample-every apply to the fast harness; drop "
                          "them with --protocol (it uses random pauses of its own)")
    dummy = np.zeros((1, cfg.image_channels, cfg.image_height, cfg.image_width), np.uint8)
    check_run(cfg, dummy, task, args.debug_id)          # --debug-id before the slow loads
    tools.find_simulator(args.sim)
    weights = load_weights(cfg, args.weights, args.seed, args.on_wrap)
    image = load_input_image(cfg, args.image, args.synthetic or 0)
    pixels = to_pixels(image, cfg)
    return cfg, task, weights, np.repeat(pixels, args.num_images, axis=0)


def run_top_command(args) -> int:
    cfg, task, weights, pixels = _inputs(args)
    if args.protocol:
        summary = _run_protocol(args, cfg, task, weights, pixels)
    else:
        summary = _run_fast(args, cfg, task, weights, pixels)
    if args.json_out:
        from moevit.outputs import write_text
        write_text(args.json_out, json.dumps(summary, indent=1) + "\n", "--json")
    print(format_summary(summary))
    if summary.get("waves_dir"):
        print(f"waveform in {summary['waves_dir']} (view: gtkwave or surfer, see docs/sim.md)")
    if not summary["bit_exact"]:
        print("moevit sim top: FAILED: the RTL disagreed with the golden model",
              file=sys.stderr)
        return 1
    return 0


def _run_fast(args, cfg, task, weights, pixels) -> dict:
    from moevit.sim.runner import SimulationError
    from moevit.sim.top_fast import run_top_fast
    try:
        r = run_top_fast(cfg, weights, pixels, task=task, debug_id=args.debug_id,
                         stall=args.stall, latency=args.latency, sample_every=args.sample_every,
                         sim=args.sim, waves=args.waves, verbose=args.verbose)
    except SimulationError as exc:
        if exc.kind != "failed":
            raise
        # a cocotb check failed (hang, protocol error): the RTL is wrong, not the options
        return {"harness": HARNESS_FAST, "preset": cfg.name, "task": task,
                "debug_id": args.debug_id, "num_images": len(pixels), "bit_exact": False,
                "mismatches": {"run": str(exc)}, "cycles": None, "clock_mhz": cfg.clock_mhz}
    out = r.as_dict(cfg)
    out.update(harness=HARNESS_FAST, waves_dir=r.run_dir if args.waves else None)
    return out


def _run_protocol(args, cfg, task, weights, pixels) -> dict:
    import pickle
    import tempfile
    from pathlib import Path

    import numpy as np

    from moevit.sim.runner import SimulationError
    from moevit.sim.top_run import run_top
    n = len(pixels)
    with tempfile.TemporaryDirectory(prefix="moevit-top-") as tmp:
        wfile, ifile = Path(tmp) / "weights.pkl", Path(tmp) / "images.npy"
        wfile.write_bytes(pickle.dumps(weights))
        np.save(ifile, pixels)
        params = {"weights_file": str(wfile), "images_file": str(ifile), "pause": 0.2,
                  "runs": [] if args.debug_id else [{"task": task, "num_images": n,
                                                     "reload": 1}],
                  "stops": [args.debug_id] if args.debug_id else [], "stop_task": task}
        try:
            m = run_top(cfg, sim=args.sim, params=params, waves=args.waves)
            failed = None
        except SimulationError as exc:
            if exc.kind != "failed":
                raise
            m, failed = dict(getattr(exc, "metrics", {}) or {}), str(exc)
    errors = m.get("errors") or ([failed] if failed else [])
    if args.debug_id:
        stop = m.get("stops", {}).get(str(args.debug_id), {})
        cycles = stop.get("cycles")
    else:
        runs = m.get("runs") or [{}]
        cycles = runs[0].get("cycles")
    label = "taps" if args.debug_id else "x"
    return {"harness": HARNESS_PROTOCOL, "preset": cfg.name, "task": task,
            "debug_id": args.debug_id, "num_images": n, "bit_exact": failed is None,
            "mismatches": {label: ("; ".join(errors) if errors else None)},
            "cycles": cycles, "clock_mhz": cfg.clock_mhz,
            "modelled_ms": round(cycles / (cfg.clock_mhz * 1e3), 4) if cycles else None,
            "sim_wall_s": m.get("wall_s"), "simulator": m.get("simulator_version"),
            "axi_violations": m.get("n_violations"),
            "waves_dir": m.get("run_dir") if args.waves else None}


def format_summary(s: dict) -> str:
    """The console report of one ``moevit sim top`` run."""
    what = f"debug_id {s['debug_id']}" if s["debug_id"] else "full run"
    sim = " ".join((s.get("simulator") or "?").split()[:2])
    lines = [f"top [{s['preset']}, {sim}, {s['harness']} harness]: "
             f"{what}, task {s['task']}, {s['num_images']} image(s)"]
    for name, msg in s["mismatches"].items():
        words = s.get("words", {}).get(name)
        lines.append(f"  {name}: " + (f"bit-exact ({words} words)" if msg is None and words
                                      else "bit-exact" if msg is None else f"MISMATCH: {msg}"))
    if s.get("cycles"):
        ms = s["cycles"] / (s["clock_mhz"] * 1e3)
        line = f"  cycles: {s['cycles']:,} = {ms:.3f} ms modelled at {s['clock_mhz']:g} MHz"
        if s.get("run_wall_s"):
            khz = s["cycles"] / s["run_wall_s"] / 1e3
            line += f"; simulated in {s['run_wall_s']:.1f} s ({khz:.1f} kHz"
            line += f", {s['khz_cpu']:.1f} kHz per CPU second)" if s.get("khz_cpu") else ")"
        elif s.get("sim_wall_s"):
            line += f"; simulator ran {s['sim_wall_s']:.1f} s"
        if s.get("build_s") is not None:
            line += f", build {s['build_s']:.0f} s"
        lines.append(line)
    stages = s.get("stage_cycles") or []
    if stages:
        lines.append(f"  cycles per stage (stage register sampled every {s['sample_every']} "
                     f"cycles):")
        multi = s["num_images"] > 1
        for st in stages:
            tag = f"image {st['image']} " if multi else ""
            lines.append(f"    {tag}{st['name']:<18} {st['cycles']:>12,}")
    elif s["harness"] == HARNESS_PROTOCOL:
        lines.append("  (per-stage cycles: only the fast harness samples them)")
    return "\n".join(lines)

