#!/usr/bin/env python3
"""``make bitstream PRESET=zcu104``: export the top's Verilog, write the Vivado project TCL,
run Vivado when it is on PATH, and parse its reports into JSON.

    python scripts/bitstream.py --preset zcu104 [--out DIR] [--ports N] [--saif F]
    python scripts/bitstream.py --parse-only DIR      # reports from a Vivado run elsewhere

Exit status: 0 bitstream built (or reports parsed), 1 Vivado failed, 2 Vivado not found
(the TCL and Verilog are written first, so the folder can be taken to a Vivado machine).

The top is currently a PLACEHOLDER: the real control block and AXI masters around a core
that does no computation (see docs/top.md); this script says so on every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from moevit.config import preset
from moevit.errors import MoevitError
from moevit.hw.top import vivado
from moevit.hw.top.vivado_reports import parse_reports
from moevit.tools import build_root

EXIT_NO_VIVADO = 2


def parse_only(out: Path) -> int:
    paths = {k: p for k, p in vivado.report_paths(out).items() if p.is_file()}
    if not paths:
        print(f"no Vivado reports in {out} (expected {', '.join(vivado.REPORTS.values())})",
              file=sys.stderr)
        return 1
    reports = parse_reports(paths)
    dest = out / f"{vivado.OUTPUT_STEM}.reports.json"
    dest.write_text(json.dumps(reports, indent=1))
    print(f"parsed {', '.join(sorted(paths))} -> {dest}")
    u = reports.get("utilization", {}).get("summary", {})
    for k, v in u.items():
        print(f"  {k:<7} {v['used']} / {v['available']} ({v['util_pct']} %)")
    t = reports.get("timing")
    if t:
        print(f"  timing  WNS {t.get('wns_ns')} ns, met: {t.get('met')}")
    p = reports.get("power")
    if p:
        print(f"  power   {p.get('total_w')} W total ({p.get('confidence')} confidence)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="zcu104")
    ap.add_argument("--out", type=Path, help="project folder (default build/bitstream/<preset>-<digest>)")
    ap.add_argument("--ports", type=int, default=None,
                    help="AXI4 memory masters (default: the preset's mem_ports)")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--saif", type=Path, help="switching activity for report_power")
    ap.add_argument("--saif-strip-path", help="hierarchy prefix to strip from the SAIF")
    ap.add_argument("--vivado", help="Vivado executable (default: vivado on PATH)")
    ap.add_argument("--parse-only", type=Path, metavar="DIR",
                    help="only parse the reports of a finished run in DIR")
    args = ap.parse_args(argv)
    try:
        if args.parse_only:
            return parse_only(args.parse_only)
        cfg = preset(args.preset)
        out = args.out or build_root() / "bitstream" / f"{cfg.name}-{cfg.digest}"
        files = vivado.write_project(cfg, out, ports=args.ports, jobs=args.jobs,
                                     saif=args.saif, saif_strip_path=args.saif_strip_path)
        for k, p in files.items():
            print(f"wrote {k:<8} {p}")
        exe = args.vivado or shutil.which("vivado")
        if exe is None:
            print(f"Vivado not found on PATH: the project TCL is written but no bitstream was "
                  f"built. On a machine with Vivado (and the {cfg.board} board files) run\n"
                  f"  cd {out} && vivado -mode batch -source {files['tcl'].name}\n"
                  f"then parse its reports with\n"
                  f"  python scripts/bitstream.py --parse-only {out}", file=sys.stderr)
            return EXIT_NO_VIVADO
        log = out / "vivado.log"
        print(f"running {exe} (log {log}) ...")
        res = subprocess.run([exe, "-mode", "batch", "-source", files["tcl"].name,
                              "-log", log.name, "-journal", "vivado.jou", "-notrace"], cwd=out)
        if res.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) \
                if log.is_file() else "(no log)"
            print(f"Vivado failed with status {res.returncode}; last lines of {log}:\n{tail}",
                  file=sys.stderr)
            return 1
        for f in (f"{vivado.OUTPUT_STEM}.bit", f"{vivado.OUTPUT_STEM}.hwh"):
            if not (out / f).is_file():
                print(f"Vivado finished but {out / f} is missing", file=sys.stderr)
                return 1
        print(f"bitstream: {out / (vivado.OUTPUT_STEM + '.bit')} (+ .hwh) -- "
              f"PLACEHOLDER core, see above")
        return parse_only(out)
    except MoevitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
