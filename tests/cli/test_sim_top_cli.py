"""``moevit sim top``: every mistake exits 2 with one line naming it and the fix (nothing is
built); one tiny run through the RTL."""

import json

import numpy as np
import pytest

from cli_helpers import assert_usage_error, run_cli

TOP = ("sim", "top", "--preset", "tiny")


@pytest.mark.parametrize("args, pattern", [
    (("--seed", "1", "--synthetic", "--task", "nosuch"),
     r"^unknown task 'nosuch'; this model has tasks .*pass a name or an id 0\.\.1"),
    (("--seed", "1", "--synthetic", "--task", "7"), r"task"),
    (("--weights", "/nonexistent/w", "--synthetic"),
     r"^--weights '/nonexistent/w' .*expected the folder holding the \*\.float32\.bin files; "
     r"pass that folder, or use --seed N"),
    (("--seed", "1", "--synthetic", "--debug-id", "13"),
     r"^--debug-id 13 is no stage of preset 'tiny'; pass 0 \(whole run\) or one of 256 "),
    (("--seed", "1", "--synthetic", "--debug-id", "-1"), r"^argument --debug-id: -1 is below"),
    (("--seed", "1", "--synthetic", "--num-images", "0"), r"^argument --num-images: 0 is below"),
    (("--seed", "1", "--synthetic", "--stall", "300"),
     r"^--stall 300 is out of range; pass 0\.\.255"),
    (("--seed", "1", "--synthetic", "--protocol", "--stall", "5"),
     r"^--stall/--latency/--sample-every apply to the fast harness; drop them with --protocol"),
    (("--seed", "1", "--synthetic", "--sim", "icarus"), r"^Icarus is refused for a wrapped top"),
    (("--seed", "1",), r"one of the arguments --image --synthetic is required"),
    (("--seed", "1", "--weights", "w", "--synthetic"), r"argument --weights: not allowed with"),
    (("--seed", "1", "--image", "/nonexistent.png"),
     r"^--image '/nonexistent\.png' .*pass such a file, or use --synthetic"),
])
def test_sim_top_mistakes_exit_2(args, pattern):
    proc = run_cli(*TOP, *args)
    assert_usage_error(proc, pattern)
    assert proc.stdout == ""


def test_sim_top_bad_image_size(tmp_path):
    from moevit.config import preset
    cfg = preset("tiny")
    bad = tmp_path / "image.float32.bin"
    np.zeros(cfg.image_channels * cfg.image_height * (cfg.image_width - 1),
             np.float32).tofile(bad)
    c, h, w = cfg.image_channels, cfg.image_height, cfg.image_width
    assert_usage_error(run_cli(*TOP, "--seed", "1", "--image", bad),
                       rf"image\.float32\.bin: {c * h * (w - 1) * 4} bytes, expected "
                       rf"{c * h * w * 4} bytes \(float32 \[{c}\]\[{h}\]\[{w}\]")


def test_sim_top_simulator_missing(monkeypatch, capsys):
    """No Verilator on the machine: exit 2, one line naming the tool."""
    from moevit import tools
    from moevit.cli import main
    monkeypatch.setattr(tools, "_which", lambda exe: None)
    assert main(["sim", "top", "--preset", "tiny", "--seed", "1", "--synthetic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("moevit sim: error: ") and "verilator" in err[0]


def test_sim_units_unchanged_by_the_top_parser():
    assert_usage_error(run_cli("sim", "nosuch"), r"^argument UNIT: invalid choice: 'nosuch'",
                       "moevit sim")
    assert_usage_error(run_cli("sim", "exp", "--debug-id", "4"),
                       r"unrecognized arguments: --debug-id 4", "moevit")


@pytest.mark.rtl
def test_sim_top_tiny_run(tmp_path):
    from moevit import tools
    tools.require_simulator("verilator")
    js = tmp_path / "top.json"
    proc = run_cli(*TOP, "--seed", "2", "--synthetic", "1", "--task", "depth", "--json", js)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "x: bit-exact" in out and "ms modelled at 300 MHz" in out
    assert "l1.out" in out and "preload" in out          # per-stage cycles
    s = json.loads(js.read_text())
    assert s["bit_exact"] and s["task"] == 1 and s["cycles"] > 0
    assert sum(st["cycles"] for st in s["stage_cycles"]) == s["cycles"]


@pytest.mark.rtl
def test_sim_top_protocol_harness_stop(tmp_path):
    """--protocol: the cocotbext-axi harness with the CLI's weights and image, a stop on task 1."""
    from moevit import tools
    tools.require_simulator("verilator")
    js = tmp_path / "top.json"
    proc = run_cli(*TOP, "--seed", "2", "--synthetic", "--task", "1", "--debug-id", "4",
                   "--protocol", "--json", js)
    assert proc.returncode == 0, proc.stderr
    assert "taps: bit-exact" in proc.stdout and "protocol" in proc.stdout
    s = json.loads(js.read_text())
    assert s["bit_exact"] and s["axi_violations"] == 0 and s["cycles"] > 0
