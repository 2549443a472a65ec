"""Parsers for Vivado's text reports: ``report_utilization``, ``report_timing_summary`` and
``report_power``, into plain dicts (JSON next to the reports, see scripts/bitstream.py).

The formats are Vivado's ASCII tables::

    1. CLB Logic                      <- numbered section title
    ------------                      <- underline
    +-----------+------+-----------+
    | Site Type | Used | Available |  <- header row(s)
    +-----------+------+-----------+
    | CLB LUTs* | 1234 |    230400 |  <- data rows
    +-----------+------+-----------+

and, in the timing summary, whitespace-aligned columns under a dashed rule.  A report that
lacks what a parser needs raises :class:`VivadoReportError` naming the report and the
missing piece.
"""

from __future__ import annotations

import re

from moevit.errors import MoevitError


class VivadoReportError(MoevitError, ValueError):
    """A Vivado report that cannot be parsed (wrong file, truncated, unknown format)."""


_SECTION = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*?)\s*$")


def _number(text: str):
    """'1234' -> 1234, '12.5' -> 12.5, '<0.1' -> 0.1 (bound kept as text elsewhere), else text."""
    t = text.strip()
    m = re.fullmatch(r"<?\s*(-?\d+)", t)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"<?\s*(-?\d+\.\d*|-?\.\d+)", t)
    if m:
        return float(m.group(1))
    return t


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[dict]:
    """Every ``+---+`` table of a report: ``{"section", "header", "rows"}``.

    ``section`` is the nearest numbered title above the table (``"1. CLB Logic"`` ->
    ``"CLB Logic"``); ``header`` the column names (multi-line headers joined), or None for a
    two-column key/value table with no header; ``rows`` lists the data rows' cell texts.
    """
    lines = text.splitlines()
    tables, section, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        m = _SECTION.match(line)
        if m and i + 1 < len(lines) and re.fullmatch(r"-{3,}\s*", lines[i + 1]):
            section = m.group(2)
        if line.startswith("+-"):
            block = []
            while i < len(lines) and lines[i][:1] in ("+", "|"):
                block.append(lines[i])
                i += 1
            tables.append(_table(block, section))
            continue
        i += 1
    return tables


def _table(block: list[str], section) -> dict:
    groups, cur = [], []
    for line in block:
        if line.startswith("+"):
            if cur:
                groups.append(cur)
            cur = []
        else:
            cur.append(_cells(line))
    if cur:
        groups.append(cur)
    if len(groups) >= 2:
        head_rows = groups[0]
        header = [" ".join(p for p in parts if p).strip() for parts in zip(*head_rows)]
        rows = [r for g in groups[1:] for r in g]
    else:
        header, rows = None, (groups[0] if groups else [])
    return {"section": section, "header": header, "rows": rows}


def _records(table: dict) -> list[dict]:
    return [dict(zip(table["header"], (_number(c) for c in row))) for row in table["rows"]]


# ---------------------------------------------------------------------------- utilization
#: summary key -> site-type names (the first present wins; '*' and spaces are ignored)
UTILIZATION_ROWS = {
    "LUT": ("CLB LUTs", "Slice LUTs"),
    "LUTRAM": ("LUT as Memory",),
    "FF": ("CLB Registers", "Slice Registers"),
    "BRAM36": ("Block RAM Tile",),
    "URAM": ("URAM",),
    "DSP": ("DSPs",),
}


def _site(name) -> str:
    return re.sub(r"\s+", " ", str(name).replace("*", "")).strip()


def parse_utilization(text: str) -> dict:
    """``report_utilization``: ``summary`` {LUT, LUTRAM, FF, BRAM36, URAM, DSP: {used,
    available, util_pct}} and ``sections`` {title: [row dicts]}."""
    tables = [t for t in parse_tables(text) if t["header"] and "Site Type" in t["header"]]
    if not tables:
        raise VivadoReportError("not a report_utilization output: no 'Site Type' table "
                                "found (check the file passed as the utilization report)")
    sections: dict[str, list] = {}
    by_site: dict[str, dict] = {}
    for t in tables:
        recs = _records(t)
        sections.setdefault(t["section"] or "", []).extend(recs)
        for r in recs:
            by_site.setdefault(_site(r["Site Type"]), r)
    summary = {}
    for key, names in UTILIZATION_ROWS.items():
        for n in names:
            if n in by_site:
                r = by_site[n]
                summary[key] = {"used": r.get("Used"), "available": r.get("Available"),
                                "util_pct": r.get("Util%")}
                break
    missing = [k for k in ("LUT", "FF", "DSP") if k not in summary]
    if missing:
        raise VivadoReportError(f"report_utilization: rows for {missing} not found (looked "
                                f"for {[UTILIZATION_ROWS[k] for k in missing]})")
    header = _header_fields(text)
    return {"design": header.get("Design"), "device": header.get("Device"),
            "summary": summary, "sections": sections}


def _header_fields(text: str) -> dict:
    """The ``| Key : value`` lines at the top of every Vivado report."""
    out = {}
    for m in re.finditer(r"^\|\s*([A-Za-z][\w ]*?)\s*:\s*(.*?)\s*$", text, re.M):
        out.setdefault(m.group(1), m.group(2))
    return out


# ---------------------------------------------------------------------------- timing
_TOKENS = re.compile(r"\{[^}]*\}|\S+")


def _column_block(lines: list[str], title: str) -> tuple[list[str], list[list[str]]] | None:
    """The whitespace-aligned table under a ``| <title>`` banner: header words (split on
    2+ spaces) and the token rows after its dashed rule, up to the first blank line."""
    for i, line in enumerate(lines):
        if line.strip() == f"| {title}":
            j = i + 1
            while j < len(lines) and (lines[j].startswith("|") or lines[j].startswith("-")
                                      or not lines[j].strip()):
                j += 1
            if j + 1 >= len(lines):
                return None
            header = [h for h in re.split(r"\s{2,}", lines[j].strip()) if h]
            rows, k = [], j + 2
            while k < len(lines) and lines[k].strip():
                rows.append(_TOKENS.findall(lines[k]))
                k += 1
            return header, rows
    return None


def parse_timing_summary(text: str) -> dict:
    """``report_timing_summary``: WNS/TNS/WHS/THS/WPWS/TPWS with failing/total endpoint
    counts, ``met`` (all user constraints met), and the clocks (name, period, MHz)."""
    lines = text.splitlines()
    block = _column_block(lines, "Design Timing Summary")
    if block is None or not block[1]:
        raise VivadoReportError("not a report_timing_summary output: no 'Design Timing "
                                "Summary' table (was the design routed and timed?)")
    header, rows = block
    if len(rows[0]) != len(header):
        raise VivadoReportError(f"report_timing_summary: {len(header)} columns but "
                                f"{len(rows[0])} values in the Design Timing Summary row")
    summary = {_key(h): _number(v) for h, v in zip(header, rows[0])}
    clocks = []
    cblock = _column_block(lines, "Clock Summary")
    if cblock:
        ch, crow = cblock
        for r in crow:
            if len(r) == len(ch):
                rec = dict(zip(ch, r))
                clocks.append({"name": rec.get("Clock"),
                               "period_ns": _number(rec.get("Period(ns)", "")),
                               "frequency_mhz": _number(rec.get("Frequency(MHz)", ""))})
    met = None
    if "All user specified timing constraints are met." in text:
        met = True
    elif "Timing constraints are not met." in text:
        met = False
    return {**summary, "met": met, "clocks": clocks}


def _key(header: str) -> str:
    """'WNS(ns)' -> 'wns_ns', 'TNS Failing Endpoints' -> 'tns_failing_endpoints'."""
    h = header.replace("(ns)", " ns").replace("(", " ").replace(")", " ")
    return "_".join(h.lower().split())


# ---------------------------------------------------------------------------- power
POWER_KEYS = {
    "Total On-Chip Power (W)": "total_w",
    "FPGA Power (W)": "fpga_w",
    "Dynamic (W)": "dynamic_w",
    "Device Static (W)": "static_w",
    "Junction Temperature (C)": "junction_c",
    "Max Ambient (C)": "max_ambient_c",
    "Confidence Level": "confidence",
    "Simulation Activity File": "activity_file",
    "Design Nets Matched": "nets_matched",
}


def parse_power(text: str) -> dict:
    """``report_power``: the summary (total/dynamic/static W, junction temperature,
    confidence, the SAIF used and nets matched) and the on-chip components (W each)."""
    tables = parse_tables(text)
    summary_t = next((t for t in tables if t["header"] is None and any(
        r and r[0].startswith("Total On-Chip Power") for r in t["rows"])), None)
    if summary_t is None:
        raise VivadoReportError("not a report_power output: no 'Total On-Chip Power' "
                                "summary table")
    raw = {r[0]: r[1] if len(r) > 1 else "" for r in summary_t["rows"]}
    out = {POWER_KEYS[k]: _number(v) for k, v in raw.items() if k in POWER_KEYS}
    out["summary"] = {k: _number(v) for k, v in raw.items()}
    comps = next((t for t in tables if t["header"] and t["header"][:2] == ["On-Chip",
                                                                           "Power (W)"]), None)
    out["components_w"] = ({r[0]: _number(r[1]) for r in comps["rows"] if len(r) > 1}
                           if comps else {})
    return out


def parse_reports(paths: dict) -> dict:
    """Parse whichever of ``utilization``/``timing``/``power`` report files are given."""
    from pathlib import Path
    parsers = {"utilization": parse_utilization, "timing": parse_timing_summary,
               "power": parse_power}
    out = {}
    for kind, path in paths.items():
        if kind not in parsers:
            raise VivadoReportError(f"unknown report kind {kind!r}; known: {list(parsers)}")
        try:
            out[kind] = parsers[kind](Path(path).read_text(errors="replace"))
        except VivadoReportError as exc:
            raise VivadoReportError(f"{path}: {exc}") from None
    return out
