#!/usr/bin/env python3
"""Yosys estimate of the accelerator top *around* its datapath units (``make synth-core``):
the sequencer (program ROM, descriptor generators, stream router, MoE FSM), the AXI4-Lite
control block and the AXI4 masters, with every datapath unit kept as an empty box (the units
have their own rows in ``bench/units.json``).

    python scripts/synth_top_core.py                  # edge-moe and zcu104
    python scripts/synth_top_core.py --preset tiny

Writes ``bench/top_core.json`` (LUT, FF, DSP48E2, BRAM36, URAM and the logic-only timing
proxy ``sta_ps`` with its worst path's ends, per preset, and the machine).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moevit.config import preset  # noqa: E402
from moevit.hw.verilog import CAVEAT, yosys_estimate  # noqa: E402
from moevit.machine import describe  # noqa: E402

#: the datapath units instantiated in the core (submodule names); counted by synth_estimate
UNITS = ("attention", "layernorm", "linear", "moe_gate", "patch_embed", "patch_gather",
         "residual")
TOP = "moevit_top"
KEEP = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM", "sta_ps", "sta_from", "sta_to", "sta_luts",
        "seconds")


def unit_modules(verilog: Path) -> tuple[str, ...]:
    """The unit modules present in the top's Verilog (Yosys names: ``\\moevit_top.linear``)."""
    names = set(re.findall(r"^module \\(\S+)", verilog.read_text(), re.M))
    return tuple(f"\\{TOP}.{u}" for u in UNITS if f"{TOP}.{u}" in names)


def estimate(name: str) -> dict:
    from moevit.hw.top.wrapper import top_verilog_file
    cfg = preset(name)
    print(f"[{name}] exporting moevit_top ...", flush=True)
    vfile = top_verilog_file(cfg)
    boxes = unit_modules(vfile)
    print(f"[{name}] yosys synth_xilinx -family xcup -abc9 with {len(boxes)} units boxed "
          "(several minutes) ...", flush=True)
    res = yosys_estimate(vfile, TOP, blackbox=boxes)
    row = {k: res[k] for k in KEEP if k in res}
    row["units_boxed"] = [b.split(".", 1)[1] for b in boxes]
    row["config_digest"] = cfg.digest
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", help="preset(s) (default: edge-moe, zcu104)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "top_core.json")
    args = ap.parse_args(argv)
    names = args.preset or ["edge-moe", "zcu104"]
    t0 = time.monotonic()
    doc = {"what": "moevit_top with its datapath units as empty boxes: sequencer, control "
                   "block, AXI masters", "tool": CAVEAT, "machine": describe(),
           "presets": {n: estimate(n) for n in names}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for n, r in doc["presets"].items():
        print(f"{n}: LUT {r['LUT']}, FF {r['FF']}, DSP48E2 {r['DSP48E2']}, BRAM36 {r['BRAM36']}, "
              f"sta {r.get('sta_ps')} ps ({r.get('sta_from')} -> {r.get('sta_to')})")
    print(f"wrote {args.out} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
