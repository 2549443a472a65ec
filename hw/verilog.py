"""Verilog export and Yosys resource estimates for Amaranth components.

:func:`yosys_estimate` runs Debian's yosys (``synth_xilinx -family xcup``; amaranth's
bundled yosys lacks ``synth_xilinx``) and counts LUT/FF/DSP48E2/BRAM/URAM cells.  Results are
cached under ``build/yosys/<key>/`` (key: the Verilog text, top, family, yosys path and
script), so a design that did not change is not synthesised again.

Caveat: Yosys does not pack pipeline registers into the DSP48E2 (A/B/M/P registers) for
UltraScale+, so they stay in fabric: FF counts are upper bounds; DSP and BRAM counts are
right.  No timing is estimated.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from moevit.errors import ToolNotFoundError

CAVEAT = ("Yosys synth_xilinx -family xcup estimates (not Vivado): Yosys leaves UltraScale+ "
          "DSP48E2 pipeline registers in fabric, so FF counts are upper bounds; DSP and BRAM "
          "counts are right; no timing is checked.")

_LUTRAM = re.compile(r"^RAM(32|64|128|256)")


def verilog_text(component, name: str) -> str:
    """Verilog for an Amaranth ``wiring.Component`` (ports from its signature, no source
    attributes, so the text depends only on the design)."""
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, path: Path, name: str) -> Path:
    """Write the component's Verilog (:func:`verilog_text`) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog_text(component, name))
    return path


def parse_stat(text: str) -> dict[str, int]:
    """Cell-type counts from the last ``stat`` report in a yosys log."""
    block = text.rsplit("Number of cells:", 1)
    if len(block) < 2:
        raise ValueError("no `stat` report in the yosys log")
    cells: dict[str, int] = {}
    for line in block[1].splitlines()[1:]:
        mt = re.match(r"^\s+(\$?[\w$]+)\s+(\d+)\s*$", line)
        if mt:
            cells[mt.group(1)] = int(mt.group(2))
        elif line.strip() and cells:
            break
    return cells


def summarise(cells: dict[str, int]) -> dict[str, float | int]:
    """LUT (logic + LUTRAM + SRL), FF, DSP48E2, BRAM (36 Kb equivalents), URAM, carry cells."""
    # INV cells become LUT1s in Vivado
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]|INV", c))
    lutram = sum(n for c, n in cells.items() if _LUTRAM.match(c))
    srl = sum(n for c, n in cells.items() if c.startswith("SRL"))
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[CEPRS]E?(_1)?", c))
    bram = cells.get("RAMB36E2", 0) + 0.5 * cells.get("RAMB18E2", 0)
    return {"LUT": lut_logic + lutram + srl, "LUT_logic": lut_logic, "LUTRAM": lutram,
            "SRL": srl, "FF": ff, "DSP48E2": cells.get("DSP48E2", 0), "BRAM36": bram,
            "URAM": cells.get("URAM288", 0),
            "CARRY": cells.get("CARRY8", 0) + cells.get("CARRY4", 0)}


def _yosys_script(verilog: Path, top: str, family: str) -> str:
    return f"read_verilog -sv {verilog}; synth_xilinx -family {family} -top {top} -flatten; stat"


def _cache_dir(verilog: Path, top: str, family: str, exe: str) -> Path:
    """``build/yosys/<key>/``: the key covers the Verilog text (not its path), the top
    module, the family, the yosys executable and the synthesis script."""
    from moevit.tools import build_root
    h = hashlib.sha256(Path(verilog).read_bytes())
    script = _yosys_script(Path("design.v"), top, family)
    h.update("\0".join([top, family, exe, script]).encode())
    return build_root() / "yosys" / h.hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cached_yosys_estimate(verilog: Path, top: str, *, yosys: str | None = None,
                          family: str = "xcup", log: Path | None = None) -> dict | None:
    """The cached :func:`yosys_estimate` result for this Verilog text, top and options, or
    None when it was never synthesised (yosys is not run).  ``log`` receives the cached log."""
    from moevit.tools import find_yosys
    d = _cache_dir(verilog, top, family, yosys or find_yosys())
    res_file = d / "result.json"
    if not res_file.is_file():
        return None
    if log and (d / "yosys.log").is_file():
        Path(log).write_text((d / "yosys.log").read_text())
    return json.loads(res_file.read_text())


def yosys_estimate(verilog: Path, top: str, *, yosys: str | None = None,
                   family: str = "xcup", log: Path | None = None,
                   timeout: int = 1800, cache: bool = True) -> dict:
    """Synthesise ``verilog`` with ``synth_xilinx -family <family>``; returns the summary
    (see :func:`summarise`) plus ``cells`` and ``seconds`` (of the synthesis run).

    With ``cache`` (default) a result for the same Verilog text, top, family and yosys is
    returned from ``build/yosys/`` without running yosys (``log`` then gets the cached log).
    """
    from moevit.tools import find_yosys
    exe = yosys or find_yosys()
    if cache:
        hit = cached_yosys_estimate(verilog, top, yosys=exe, family=family, log=log)
        if hit is not None:
            return hit
    script = _yosys_script(verilog, top, family)
    t0 = time.monotonic()
    try:
        out = subprocess.run([exe, "-p", script], capture_output=True, text=True,
                             timeout=timeout)
    except FileNotFoundError:
        raise ToolNotFoundError(f"yosys not found at {exe}") from None
    text = out.stdout
    if log:
        Path(log).write_text(text + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"yosys failed on {verilog} ({top}):\n" +
                           "\n".join((out.stderr + text).splitlines()[-20:]))
    cells = parse_stat(text)
    res = summarise(cells)
    res.update(cells=cells, seconds=round(time.monotonic() - t0, 1))
    if cache:
        d = _cache_dir(verilog, top, family, exe)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / "yosys.log", text + out.stderr)
        _write_atomic(d / "result.json", json.dumps(res))   # written last: marks a hit
    return res
