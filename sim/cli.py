"""``moevit sim UNIT``: run one unit's cocotb testbench and write a JSON summary
(``moevit sim top``, whole images through the accelerator: :mod:`moevit.sim.top_cli`).

    moevit sim exp --preset edge-moe --sim verilator --vectors 100000 --seed 1 --json out.json

Exit status: 0 when every output matched the golden model; 1 only when the hardware
disagreed with it (a mismatch or a failed cocotb check; the JSON is still written); 2 for
a bad option, a missing tool or a simulator build that failed — every option is checked
(:data:`moevit.sim.units.SIM_OPTIONS`) before anything is built.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from moevit import tools
from moevit.config import preset
from moevit.errors import ConfigError
from moevit.outputs import check_output_file, write_text
from moevit.sim.runner import SimulationError
from moevit.sim.units import SIM_OPTIONS, UNITS, check_options, run_unit

SUMMARY_KEYS = ("unit", "config", "simulator", "simulator_version", "vectors", "random_vectors",
                "corner_vectors", "outputs", "mismatches", "latency_cycles", "items_per_cycle",
                "seed", "wall_s", "tb_seconds", "waves")

WAVE_VIEWERS = "gtkwave FILE, or surfer FILE (see docs/sim.md)"


def _parser_type(opt):
    def parse(text):
        try:
            return opt.parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(" ", 1)[1]) from None
    parse.__name__ = opt.type.__name__
    return parse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim", help="run a unit's RTL testbench (cocotb) against the golden model, or the "
                    "whole accelerator (moevit sim top)",
        description="Build the unit's Verilog for the preset, simulate it with random "
                    "valid/ready back-pressure, compare every output with the golden model, "
                    "and report what matters for the unit (latency and throughput; cycles per "
                    "layer for attention).  'moevit sim top' runs whole images through the "
                    "accelerator's top instead (see 'moevit sim top --help').")
    names = sorted(k for k in UNITS if k != "delay") + ["delay"]
    units = p.add_subparsers(dest="unit", metavar="UNIT",
                             help="one of: " + ", ".join(sorted(UNITS)) + "; or top")
    units.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", default="edge-moe",
                        help="configuration preset (default edge-moe)")
    common.add_argument("--sim", default="verilator", choices=tools.SIMULATORS,
                        help="simulator (default verilator)")
    for opt in SIM_OPTIONS.values():  # default None: we can tell which ones were given
        common.add_argument(opt.flag, dest=opt.name, type=_parser_type(opt), default=None,
                            help=opt.help)
    common.add_argument("--waves", action="store_true",
                        help="record waveforms (Verilator: VCD, Icarus: FST) in the run's folder")
    common.add_argument("--json", dest="json_out", default=None, help="write the summary here")
    common.add_argument("--verbose", action="store_true", help="show simulator output")
    common.add_argument("--inject-mismatch", action="store_true", help=argparse.SUPPRESS)
    for name in names:
        # prog "moevit sim": a unit's option errors read as they always have
        u = units.add_parser(name, parents=[common], prog=p.prog,
                             description=p.description)
        u.set_defaults(func=_run)
    from moevit.sim.top_cli import register_top
    register_top(units)


def _options(args) -> tuple[dict, dict, dict, list[str]]:
    """(run_unit keywords, opts, params, warnings) from the options the user gave."""
    given = {k: getattr(args, k) for k in SIM_OPTIONS if getattr(args, k) is not None}
    notes = check_options(args.unit, given)
    reads = UNITS[args.unit].options
    run_kw = {k: o.default for k, o in SIM_OPTIONS.items() if o.target == "run"}
    opts, params = {}, {}
    for key, value in given.items():
        if key not in reads:
            continue
        target = {"run": run_kw, "opts": opts, "params": params}[SIM_OPTIONS[key].target]
        target.update(SIM_OPTIONS[key].routed(value))
    return run_kw, opts, params, notes


def _run(args) -> int:
    # everything is checked before any Verilog is generated or compiled
    if args.json_out is not None:
        check_output_file(args.json_out, "--json")
    cfg = preset(args.preset)
    run_kw, opts, params, notes = _options(args)
    for note in notes:
        warnings.warn(note, stacklevel=1)
    tools.find_simulator(args.sim)
    if args.inject_mismatch:
        params["corrupt"] = True
    try:
        m = run_unit(args.unit, cfg, sim=args.sim, waves=args.waves, opts=opts,
                     verbose=args.verbose, params=params or None, **run_kw)
        err = None
    except SimulationError as exc:
        if exc.kind != "failed":  # the simulator did not get to compare anything
            raise
        m, err = dict(getattr(exc, "metrics", {}) or {}), exc
        m.setdefault("mismatches", None)
        m["error"] = str(exc)
    summary = {k: m.get(k) for k in SUMMARY_KEYS if k in m}
    summary["details"] = {k: v for k, v in m.items() if k not in SUMMARY_KEYS}
    if args.json_out:
        write_text(args.json_out, json.dumps(summary, indent=1) + "\n", "--json")
    if err is not None:
        print(f"moevit sim {args.unit}: FAILED: the hardware disagreed with the golden model"
              f"\n{err}", file=sys.stderr)
        return 1
    print(console_line(args.unit, cfg, m))
    if args.waves:
        if m.get("waves"):
            print(f"waveform: {m['waves']}  (view: {WAVE_VIEWERS.replace('FILE', m['waves'])})")
        else:
            warnings.warn(f"--waves: the simulator wrote no waveform in {m.get('run_dir')}",
                          stacklevel=1)
    return 0


def console_line(unit: str, cfg, m: dict) -> str:
    """The one-line result: what matters for the unit."""
    head = f"{unit} [{cfg.name}, {m['simulator_version']}]"
    if unit == "attention":
        ideal = 2 * m["steps_per_phase"]
        parts = [f"P={m['P']}, {m.get('layers', 1)} layer(s) of {m['tokens']} tokens x "
                 f"{m['dim']}: {m['layer_cycles']} cycles per layer against the ideal {ideal} "
                 f"(2 x {m['steps_per_phase']} steps; x{m['layer_cycles'] / ideal:.2f} at "
                 f"p_valid {m['p_valid']}, p_ready {m['p_ready']})",
                 f"{m['outputs']} outputs, {m['mismatches']} mismatches (scores "
                 f"{m['mismatches_scores']}, softmax info {m['mismatches_info']}, softmax·V "
                 f"{m['mismatches_av']})"]
        return f"{head}: " + "; ".join(parts) + f", {m['wall_s']} s"
    return (f"{head}: {m['vectors']} vectors ({m['corner_vectors']} corner), "
            f"{m['mismatches']} mismatches, latency {m.get('latency_cycles')} cycles, "
            f"{m.get('items_per_cycle')} items/cycle at full rate, {m['wall_s']} s")
