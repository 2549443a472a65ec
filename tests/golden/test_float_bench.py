"""scripts/bench_float.py: runs, takes the median of >= 3 runs, writes the JSON with the machine."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_float.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_float", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_float_tiny(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "float.json"
    assert bench.main(["--preset", "tiny", "--device", "cpu", "--repeats", "3", "--threads", "1",
                       "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {"cpu", "cores", "torch", "platform", "load_average"} <= set(doc["machine"])
    (r,) = doc["results"]
    assert r["threads"] == 1
    runs = r["backbone"]["runs_ms"]
    assert len(runs) == 3 and r["backbone"]["median_ms"] == sorted(runs)[1]
    assert "ms/image" in capsys.readouterr().out


def test_bench_float_needs_three_repeats():
    with pytest.raises(SystemExit):
        _load().main(["--repeats", "2"])
