"""`moevit bench compare` and scripts/gpu_bench.py with tiny repetition counts."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moevit.cli import main
from moevit.hw.perf import compare

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--preset", "tiny", "--repeats", "1", "--warmup", "0", "--threads", "1",
         "--batches", "1", "2", "--routing", "uniform", "--batched", "4"]
FILES = ["compare.json", "compare.md", "compare_latency_energy.png", "compare_throughput.png",
         "compare_fpga_stages.png", "compare_roofline.png", "compare_sweep.png"]
METHODS = ("measured", "tool estimate", "model", "assumption", "published", "not measured")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["bench", "compare", "--out", str(out), *QUICK]) == 0
    return out, json.loads((out / "compare.json").read_text())


def test_writes_every_file(report):
    out, doc = report
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    md = (out / "compare.md").read_text()
    assert "| platform |" in md and "FPGA cycle model" in md and "not measured here" in md
    assert "Best CPU path" in md and "Resource estimate of the zcu104 preset" in md
    assert "what-if" in md  # the overlapped batched schedule is labelled as one


def test_every_row_has_a_method_and_derived_columns(report):
    _, doc = report
    assert doc["gop_per_image"] > 0
    for r in doc["rows"]:
        assert r["method"].startswith(METHODS) and r["power_method"].startswith(METHODS), r
        if r["ms_per_image"] is not None:
            assert r["images_per_s"] == pytest.approx(1e3 / r["ms_per_image"])
            assert r["gops"] == pytest.approx(r["gop_per_image"] * r["images_per_s"])
        if r["watts"] is not None and r["ms_per_image"] is not None:
            assert r["j_per_image"] == pytest.approx(r["watts"] * r["ms_per_image"] / 1e3)
    kinds = {r["platform"].split(" ")[0] for r in doc["rows"]}
    assert kinds == {"CPU", "GPU", "FPGA"}
    assert {(r["platform"], r["batch"]) for r in doc["rows"] if r["method"].startswith("model")} \
        == {("FPGA (edge-moe)", 1), ("FPGA (edge-moe)", 4), ("FPGA (zcu104)", 1),
            ("FPGA (zcu104)", 4)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_gpu_rows_say_not_measured_without_cuda(report):
    _, doc = report
    gpu = [r for r in doc["rows"] if r["platform"] == "GPU"]
    assert {(r["precision"], r["batch"]) for r in gpu} == {
        (p, b) for p in ("fp32", "fp16") for b in (1, 8, 64)}
    assert all(r["ms_per_image"] is None and "not measured here" in r["method"] for r in gpu)


def test_row_without_method_is_refused():
    with pytest.raises(ValueError, match="row without a method"):
        compare.finish([dict(platform="CPU", ms_per_image=1.0, watts=None, method="")], 1.0)


def test_gpu_bench_json_is_merged(tmp_path):
    gj = tmp_path / "gpu.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--device", "cpu",
           "--preset", "tiny", "--batches", "1", "--precisions", "fp32", "--repeats", "1",
           "--warmup", "0", "--seconds", "0", "--out", str(gj)]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = compare.gpu_rows(gj)
    assert len(rows) == 1 and rows[0]["method"] == "measured" and rows[0]["ms_per_image"] > 0
    assert rows[0]["watts"] is None and rows[0]["power_method"].startswith("not measured")


def test_missing_gpu_json_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "compare", "--out", str(tmp_path), "--gpu-json",
                 str(tmp_path / "nope.json"), *QUICK]) == 2
    assert "scripts/gpu_bench.py" in capsys.readouterr().err
