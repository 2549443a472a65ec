"""Vivado report parsers on small hand-made reports in Vivado's text formats."""

from pathlib import Path

import pytest

from moevit.hw.top.vivado_reports import (VivadoReportError, parse_power, parse_tables,
                                          parse_timing_summary, parse_utilization)

FIX = Path(__file__).parent / "fixtures"


def _read(name):
    return (FIX / name).read_text()


def test_utilization():
    u = parse_utilization(_read("utilization.rpt"))
    s = u["summary"]
    assert s["LUT"] == {"used": 20361, "available": 230400, "util_pct": 8.84}
    assert s["FF"]["used"] == 28321 and s["FF"]["available"] == 460800
    assert s["BRAM36"] == {"used": 39.5, "available": 312, "util_pct": 12.66}
    assert s["URAM"]["used"] == 8 and s["DSP"]["used"] == 12 and s["DSP"]["available"] == 1728
    assert s["LUTRAM"]["used"] == 1749
    assert u["design"] == "moevit_wrapper" and u["device"] == "xczu7evffvc1156-2"
    assert [r["Site Type"] for r in u["sections"]["ARITHMETIC"]] == ["DSPs", "DSP48E2 only"]


def test_timing_summary():
    t = parse_timing_summary(_read("timing.rpt"))
    assert t["wns_ns"] == -0.124 and t["tns_ns"] == -3.051
    assert t["tns_failing_endpoints"] == 57 and t["tns_total_endpoints"] == 73162
    assert t["whs_ns"] == 0.010 and t["wpws_ns"] == 0.791 and t["tpws_total_endpoints"] == 31279
    assert t["met"] is False
    assert t["clocks"] == [{"name": "clk_pl_0", "period_ns": 3.334, "frequency_mhz": 299.97}]
    met = _read("timing.rpt").replace("Timing constraints are not met.",
                                      "All user specified timing constraints are met.")
    assert parse_timing_summary(met)["met"] is True


def test_power():
    p = parse_power(_read("power.rpt"))
    assert p["total_w"] == 4.012 and p["dynamic_w"] == 3.291 and p["static_w"] == 0.721
    assert p["junction_c"] == 29.0 and p["confidence"] == "Medium"
    assert p["activity_file"] == "moevit.saif"
    assert p["components_w"]["PS8"] == 2.810 and p["components_w"]["Total"] == 4.012
    assert p["components_w"]["DSPs"] == 0.007


def test_multiline_header_is_joined():
    text = ("1. T\n----\n\n+------+-------+\n| Site | Util% |\n| Type |       |\n"
            "+------+-------+\n| A    |   1.5 |\n+------+-------+\n")
    (t,) = parse_tables(text)
    assert t["section"] == "T" and t["header"] == ["Site Type", "Util%"]
    assert t["rows"] == [["A", "1.5"]]


@pytest.mark.parametrize("parser,name,msg", [
    (parse_utilization, "power.rpt", "not a report_utilization"),
    (parse_timing_summary, "utilization.rpt", "not a report_timing_summary"),
    (parse_power, "timing.rpt", "not a report_power"),
])
def test_wrong_report_is_named(parser, name, msg):
    with pytest.raises(VivadoReportError, match=msg):
        parser(_read(name))


def test_utilization_missing_rows():
    text = _read("utilization.rpt").replace("| DSPs ", "| Dspz ")
    with pytest.raises(VivadoReportError, match="DSP"):
        parse_utilization(text)
