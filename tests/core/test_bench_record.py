"""scripts/bench.py: results go to build/bench/; --record copies them into bench/ on purpose."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_main", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_results_default_to_build_and_record_copies(tmp_path):
    bench = _load()
    assert bench.RESULTS == bench.REPO / "build" / "bench"
    for script, args in bench.BENCHMARKS.values():  # every benchmark writes under build/bench
        out = args[args.index("--out") + 1]
        assert Path(out).is_relative_to(bench.RESULTS), (script, out)
    src, dst = tmp_path / "fresh", tmp_path / "recorded"
    src.mkdir()
    (src / "golden.json").write_text('{"seconds_per_image_median": 0.5}')
    (src / "scratch.txt").write_text("not a result")
    (src / "golden.json").write_text('{"seconds_per_image_median": 0.5, '
                                     '"images_per_second_batch": 4.0, "peak_rss_mib": 600}')
    copies = bench.record(src, dst)
    assert [p.name for p in copies] == ["golden.json", "summary.md"]
    assert "0.500 s / image" in (dst / "summary.md").read_text()  # rebuilt from bench/
    assert (dst / "golden.json").read_text() == (src / "golden.json").read_text()
    assert not (dst / "scratch.txt").exists()
    with pytest.raises(SystemExit, match="no results in .*; run `make bench` first"):
        bench.record(tmp_path / "empty", dst)


def test_summary_reads_the_given_folder(tmp_path):
    bench = _load()
    (tmp_path / "golden.json").write_text(
        '{"seconds_per_image_median": 0.25, "images_per_second_batch": 5.0, "peak_rss_mib": 700}')
    text = bench.summary(tmp_path)
    assert "| golden integer model, edge-moe, 12 layers | 0.250 s / image (target ≤ 1.0 s) |" in text
