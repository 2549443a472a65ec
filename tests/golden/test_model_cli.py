"""``moevit golden`` and ``moevit demo`` on the tiny preset."""

import json

import numpy as np
import pytest

from moevit.cli import main
from moevit.config import preset
from moevit.golden.model import GoldenModel, tap_names
from moevit.golden.weights import seeded_weights

weight_io = pytest.importorskip("moevit.golden.weight_io")


def test_golden_writes_outputs(tmp_path, capsys):
    """Task by name (depth = task 1), every output file, taps equal to a direct run."""
    out = tmp_path / "run"
    rc = main(["golden", "--preset", "tiny", "--seed", "4", "--synthetic", "--task", "depth",
               "--out", str(out), "--taps", "--quiet"])
    assert rc == 0
    cfg = preset("tiny")
    ref = GoldenModel(cfg, seeded_weights(cfg, 4)).run(weight_io.synthetic_image(cfg, 0), task=1)
    raw = np.fromfile(out / "output.int32.bin", dtype="<i4").reshape(cfg.tokens, cfg.dim)
    assert np.array_equal(raw, ref.output[0])
    assert np.allclose(np.load(out / "output.npy"), raw / 2**22)
    layers = json.loads((out / "layers.json").read_text())["layers"]
    assert [r["layer"] for r in layers] == list(range(cfg.depth))
    assert layers[1]["experts_used"] >= 1
    experts = json.loads((out / "experts.json").read_text())
    assert sum(experts["l1"]["tokens_per_expert"]) == cfg.tokens * cfg.top_k
    assert "run_s" in json.loads((out / "timings.json").read_text())
    taps = np.load(out / "taps.npz")
    assert set(taps.files) == set(tap_names(cfg))
    assert "experts used" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope", "--seed", "0", "--synthetic"], "unknown preset 'nope'"),
    (["--preset", "tiny", "--seed", "0", "--synthetic", "--task", "5"], "task 5 is out of range"),
    (["--preset", "tiny", "--seed", "0", "--synthetic", "--task", "segm"], "unknown task 'segm'"),
    (["--preset", "tiny", "--seed", "0", "--image", "/no/such.png"], "does not exist"),
    (["--preset", "tiny", "--weights", "/no/such/dir", "--synthetic"], "does not exist"),
])
def test_golden_errors_are_clear(tmp_path, capsys, argv, message):
    rc = main(["golden", *argv, "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_demo_tiny(capsys):
    assert main(["demo", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "silent wraps" in out and "warm run" in out


def test_golden_reads_weight_folder_and_image_file(tmp_path):
    cfg = preset("tiny")
    weight_io.save_folder(seeded_weights(cfg, 2), tmp_path / "w", cfg)
    img = weight_io.synthetic_image(cfg, 3)
    img.astype("<f4").tofile(tmp_path / "image.float32.bin")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["golden", "--preset", "tiny", "--weights", str(tmp_path / "w"), "--image",
                 str(tmp_path / "image.float32.bin"), "--out", str(a), "--quiet"]) == 0
    assert main(["golden", "--preset", "tiny", "--seed", "2", "--synthetic", "--image-seed", "3",
                 "--out", str(b), "--quiet"]) == 0
    assert (a / "output.int32.bin").read_bytes() == (b / "output.int32.bin").read_bytes()
