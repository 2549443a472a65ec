"""``moevit sim`` and ``python -m moevit.hw.hls_config``: bad options exit 2 before anything
is built (no simulator needed), with one line naming the option, the value and the range."""

from __future__ import annotations

import pytest

from cli_helpers import assert_nothing_left, assert_usage_error, run_cli

from moevit.errors import ConfigError
from moevit.sim.units import SIM_OPTIONS, UNITS, check_options


@pytest.mark.parametrize("args, pattern", [
    (("delay", "--p-valid", "0"), r"^argument --p-valid: 0\.0 is out of range; pass a number in "
                                  r"\(0, 1\] \(see 'moevit sim --help'\)$"),
    (("delay", "--p-valid", "1.5"), r"^argument --p-valid: 1\.5 is out of range"),
    (("delay", "--p-ready", "-2"), r"^argument --p-ready: -2\.0 is out of range; pass a number "
                                   r"in \(0, 1\]"),
    (("delay", "--p-ready", "nan"), r"^argument --p-ready: nan is not a finite number"),
    (("exp", "--seed", "-1"), r"^argument --seed: -1 is out of range; pass a whole number >= 0"),
    (("softmax", "--rows", "-3"), r"^argument --rows: -3 is out of range; pass a whole number in "
                                  r"\[1, 1024\]"),
    (("softmax", "--rows", "0"), r"^argument --rows: 0 is out of range"),
    (("gelu", "--vectors", "-5"), r"^argument --vectors: -5 is out of range; pass a whole number "
                                  r"in \[1, 5000000\]"),
    (("gelu", "--vectors", "0"), r"^argument --vectors: 0 is out of range"),
    (("gelu", "--vectors", "10000000000"), r"^argument --vectors: 10000000000 is out of range"),
    (("gelu", "--vectors", "1e3"), r"^argument --vectors: '1e3' is not a whole number"),
    (("exp", "--rows", "8"), r"^--rows applies to softmax only; unit 'exp' has no such option "
                             r"\(it reads --vectors, --seed, --p-valid, --p-ready\); drop --rows$"),
    (("exp", "--layers", "2"), r"^--layers applies to attention only; unit 'exp' has no such"),
    (("attention", "--rows", "8"), r"^--rows applies to softmax only; unit 'attention'"),
    (("attention", "--layers", "0"), r"^argument --layers: 0 is out of range"),
    (("nosuch",), r"^argument UNIT: invalid choice: 'nosuch'"),
    (("exp", "--preset", "tiyn"), r"^unknown preset 'tiyn' \(did you mean 'tiny'\?\)"),
    (("exp", "--sim", "modelsim"), r"^argument --sim: invalid choice: 'modelsim'"),
])
def test_sim_bad_options_exit_2_before_building(args, pattern):
    proc = run_cli("sim", *args)
    assert_usage_error(proc, pattern, "moevit sim")
    assert "FAILED" not in proc.stderr


@pytest.mark.parametrize("where, pattern", [
    ("folder", r"^--json '.*' is a folder, expected a file name; e\.g\. --json '.*summary\.json'$"),
    ("under_file", r"^--json '.*a_file/s\.json': '.*a_file' is a file, not a folder, so the file "
                   r"cannot be created under it; choose a path inside a folder$"),
    ("empty", r"^--json is empty; pass a path"),
])
def test_sim_bad_json_path(tmp_path, where, pattern):
    (tmp_path / "a_file").write_text("x")
    path = {"folder": tmp_path, "under_file": tmp_path / "a_file" / "s.json", "empty": ""}[where]
    assert_usage_error(run_cli("sim", "delay", "--json", path), pattern)
    assert_nothing_left(tmp_path, {"a_file"})


def test_every_unit_declares_known_options():
    for name, spec in UNITS.items():
        assert spec.options and set(spec.options) <= set(SIM_OPTIONS), name
        assert {"seed", "p_valid", "p_ready"} <= set(spec.options), name


def test_ignored_general_option_is_a_warning():
    assert check_options("attention", {"vectors": 50, "seed": 3}) == [
        "--vectors is ignored by unit 'attention' (its testbench reads --seed, --p-valid, "
        "--p-ready, --layers)"]
    assert check_options("softmax", {"rows": 16, "vectors": 10}) == []
    with pytest.raises(ConfigError, match=r"^--p-valid 0\.0 is out of range; pass a number in "
                                          r"\(0, 1\]$"):
        check_options("exp", {"p_valid": 0})
    with pytest.raises(ConfigError, match=r"^--vectors 2\.5 is not a whole number"):
        check_options("exp", {"vectors": 2.5})


def test_run_unit_checks_before_building():
    from moevit.config import preset
    from moevit.sim.units import run_unit
    with pytest.raises(ConfigError, match=r"^--vectors -5 is out of range"):
        run_unit("delay", preset("tiny"), vectors=-5)
    with pytest.raises(ConfigError, match=r"^--p-ready 0\.0 is out of range"):
        run_unit("delay", preset("tiny"), p_ready=0)


# ----------------------------------------------------------------------------- hls_config
HLS = "moevit.hw.hls_config"
HLS_PROG = "python -m moevit.hw.hls_config"


@pytest.mark.parametrize("args, pattern", [
    (("--attn-parallel", "0"), r"^argument --attn-parallel: invalid choice: 0 \(choose from 1, "
                               r"2, 4, 8\)"),
    (("--attn-parallel", "3"), r"^argument --attn-parallel: invalid choice: 3"),
    (("--attn-parallel", "16"), r"^argument --attn-parallel: invalid choice: 16"),
    (("--attn-parallel", "four"), r"^argument --attn-parallel: invalid int value: 'four'"),
    (("--preset", "zcu014"), r"^unknown preset 'zcu014' \(did you mean 'zcu104'\?\)"),
    (("--out", ""), r"^--out is empty"),
])
def test_hls_config_errors(args, pattern):
    assert_usage_error(run_cli(*args, module=HLS), pattern, HLS_PROG)


def test_hls_config_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert_usage_error(run_cli("--out", tmp_path / "f", module=HLS),
                       r"^--out '.*f' is a file, expected a folder", HLS_PROG)
    assert (tmp_path / "f").read_text() == "x"


def test_hls_config_writes_the_requested_lanes(tmp_path):
    out = tmp_path / "hls"
    proc = run_cli("--preset", "tiny", "--attn-parallel", "2", "--out", out, module=HLS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "run_hls.tcl")
    assert "#define ATTN_PARALLEL 2" in (out / "moevit_config.h").read_text()
    tcl = (out / "run_hls.tcl").read_text()
    assert f"-I{out.resolve()} " in tcl  # the final folder, not the staging one
    assert {p.name for p in out.iterdir()} == {"moevit_config.h", "moevit_exp_tables.h",
                                               "run_hls.tcl"}
    assert_nothing_left(tmp_path, {"hls"})


@pytest.mark.rtl
def test_sim_exit_1_only_on_a_mismatch_and_waves_are_reported(tmp_path):
    from pathlib import Path
    import json
    from moevit import tools
    tools.require_simulator("verilator")
    js = tmp_path / "s.json"
    proc = run_cli("sim", "delay", "--preset", "tiny", "--vectors", "50", "--inject-mismatch",
                   "--json", js)
    assert proc.returncode == 1, proc.stderr
    assert "moevit sim delay: FAILED: the hardware disagreed with the golden model" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(js.read_text())["mismatches"] == 1
    assert_nothing_left(tmp_path, {"s.json"})
    proc = run_cli("sim", "delay", "--preset", "tiny", "--vectors", "50", "--waves")
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("waveform: ")]
    wave = Path(line.split()[1])
    assert wave.stat().st_size > 0 and wave.parent.parent.name == "runs"
    assert "gtkwave" in line and "surfer" in line
