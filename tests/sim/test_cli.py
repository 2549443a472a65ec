"""`moevit sim UNIT`: JSON summary and exit status."""

import json

import pytest

from moevit.cli import main
from moevit import tools

pytestmark = pytest.mark.rtl


def test_sim_cli_writes_summary(tmp_path):
    tools.require_simulator("verilator")
    out = tmp_path / "delay.json"
    assert main(["sim", "delay", "--vectors", "200", "--seed", "3", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    for key in ("vectors", "mismatches", "latency_cycles", "items_per_cycle", "simulator",
                "simulator_version"):
        assert key in s
    assert s["mismatches"] == 0 and s["simulator"] == "verilator"
    assert s["vectors"] > 200  # corner cases on top of the random vectors


def test_sim_cli_exit_status_on_mismatch(tmp_path, capsys):
    tools.require_simulator("verilator")
    out = tmp_path / "bad.json"
    assert main(["sim", "delay", "--vectors", "50", "--inject-mismatch",
                 "--json", str(out)]) == 1
    s = json.loads(out.read_text())
    assert s["mismatches"] == 1
    assert "FAILED" in capsys.readouterr().err


def test_sim_cli_rejects_unknown_unit(capsys):
    with pytest.raises(SystemExit):
        main(["sim", "nope"])
    assert "invalid choice" in capsys.readouterr().err
