"""Verilog export and Yosys resource estimates for Amaranth components.

:func:`yosys_estimate` runs Debian's yosys (``synth_xilinx -family xcup``; amaranth's
bundled yosys lacks ``synth_xilinx``) and counts LUT/FF/DSP48E2/BRAM/URAM cells.  Results are
cached under ``build/yosys/<key>/`` (key: the Verilog text, top, family, yosys path and
script), so a design that did not change is not synthesised again.

Caveat: Yosys does not pack pipeline registers into the DSP48E2 (A/B/M/P registers) for
UltraScale+, so they stay in fabric: FF counts are upper bounds; DSP and BRAM counts are
right.

Timing proxy: the synthesis runs with ``-abc9`` and ends with ``sta``; its latest arrival
(ps, :func:`parse_sta`) is recorded as ``sta_ps``.  Yosys 0.23 times ``xcup`` with the 7-series
cell delays and has no timing arcs for CARRY4/CARRY8, MUXF7/8 and DSP48E2: the number is the
clock buffer + clock-to-Q + LUT levels of the worst register-to-register (or port) path, a
logic-depth proxy, not a Vivado timing result.
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
          "counts are right.  sta_ps is Yosys `sta` after synth_xilinx -abc9 (7-series cell "
          "delays, no carry/MUXF/DSP timing arcs): a logic-depth proxy, not a Vivado timing "
          "result.")

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


def parse_sta(text: str) -> dict:
    """The latest arrival (ps) of yosys ``sta`` and its path: ``sta_ps``, ``sta_from`` and
    ``sta_to`` (the wires the path starts and ends at; a path into a cell without timing
    arcs, e.g. a CARRY4, ends at an unnamed net), ``sta_luts`` (LUT cells on it)."""
    mt = re.search(r"Latest arrival time in '[^']*' is (\d+):\n((?:(?:[ \t]+\S|Warning:).*\n)+)",
                   text)
    if not mt:
        raise ValueError("no `sta` report (\"Latest arrival time\") in the yosys log")
    cells, wires = [], []              # the report lists the path from its end backwards
    for ln in mt.group(2).splitlines():
        if ln.startswith("Warning:"):
            continue
        cell = re.match(r"^\s+\d+ (?:\S+ )?\((\S+)\)", ln)
        if cell:
            cells.append(cell.group(1))
        else:
            wires.append((len(cells), ln.strip()))
    start = next((w for n, w in wires if n < len(cells) and cells[n].endswith("C->Q")),
                 wires[-1][1] if wires else "")
    return {"sta_ps": int(mt.group(1)), "sta_from": start,
            "sta_to": wires[0][1] if wires else "",
            "sta_luts": sum(1 for c in cells if c.startswith("LUT"))}


def _yosys_script(verilog: Path, top: str, family: str, blackbox: tuple[str, ...] = ()) -> str:
    bb = f"blackbox {' '.join(blackbox)}; hierarchy -top {top}; " if blackbox else ""
    return (f"read_verilog -sv {verilog}; {bb}synth_xilinx -family {family} -top {top} "
            f"-flatten -abc9; stat; sta")


def _cache_dir(verilog: Path, top: str, family: str, exe: str,
               blackbox: tuple[str, ...] = ()) -> Path:
    """``build/yosys/<key>/``: the key covers the Verilog text (not its path), the top
    module, the family, the yosys executable and the synthesis script."""
    from moevit.tools import build_root
    h = hashlib.sha256(Path(verilog).read_bytes())
    script = _yosys_script(Path("design.v"), top, family, blackbox)
    h.update("\0".join([top, family, exe, script]).encode())
    return build_root() / "yosys" / h.hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cached_yosys_estimate(verilog: Path, top: str, *, yosys: str | None = None,
                          family: str = "xcup", log: Path | None = None,
                          blackbox: tuple[str, ...] = ()) -> dict | None:
    """The cached :func:`yosys_estimate` result for this Verilog text, top and options, or
    None when it was never synthesised (yosys is not run).  ``log`` receives the cached log."""
    from moevit.tools import find_yosys
    d = _cache_dir(verilog, top, family, yosys or find_yosys(), blackbox)
    res_file = d / "result.json"
    if not res_file.is_file():
        return None
    if log and (d / "yosys.log").is_file():
        Path(log).write_text((d / "yosys.log").read_text())
    return json.loads(res_file.read_text())


def yosys_estimate(verilog: Path, top: str, *, yosys: str | None = None,
                   family: str = "xcup", log: Path | None = None,
                   timeout: int = 1800, cache: bool = True,
                   blackbox: tuple[str, ...] = ()) -> dict:
    """Synthesise ``verilog`` with ``synth_xilinx -family <family> -flatten -abc9`` and time
    it with ``sta``; returns the summary (see :func:`summarise`), the timing proxy (see
    :func:`parse_sta`), ``cells`` and ``seconds`` (of the synthesis run).

    With ``cache`` (default) a result for the same Verilog text, top, family and yosys is
    returned from ``build/yosys/`` without running yosys (``log`` then gets the cached log).
    ``blackbox``: module names kept as empty boxes (not counted; e.g. a top's units).
    """
    from moevit.tools import find_yosys
    exe = yosys or find_yosys()
    if cache:
        hit = cached_yosys_estimate(verilog, top, yosys=exe, family=family, log=log,
                                    blackbox=blackbox)
        if hit is not None:
            return hit
    script = _yosys_script(verilog, top, family, blackbox)
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
    res.update(parse_sta(text))
    res.update(cells=cells, seconds=round(time.monotonic() - t0, 1))
    if cache:
        d = _cache_dir(verilog, top, family, exe, blackbox)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / "yosys.log", text + out.stderr)
        _write_atomic(d / "result.json", json.dumps(res))   # written last: marks a hit
    return res
