"""``moevit golden`` / ``moevit demo`` / ``moevit compare``: every mistake exits 2 with one
line naming the problem and the fix, fails before the model runs, and leaves nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_nothing_left, assert_usage_error, run_cli

TINY = ("--preset", "tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs a user might pass by mistake (and a few good ones)."""
    d = tmp_path_factory.mktemp("inputs")
    rgb = (np.arange(32 * 64 * 3) % 251).astype(np.uint8).reshape(32, 64, 3)
    Image.fromarray(rgb).save(d / "good.png")
    data = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "empty.float32.bin").write_bytes(b"")
    (d / "notes.png").write_text("this is not an image\n")
    (d / "a_file").write_text("x")
    rgba = np.dstack([rgb, np.full((32, 64), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "transparent.png")
    (d / "folder.png").mkdir()
    from moevit.config import preset
    from moevit.golden import weight_io
    from moevit.golden.weights import seeded_weights
    cfg = preset("tiny")
    weight_io.save_folder(seeded_weights(cfg, 0), d / "weights", cfg)
    bad = d / "weights_out_of_range"
    weight_io.save_folder(seeded_weights(cfg, 0), bad, cfg)
    np.full(cfg.mlp_hidden, 100.0, "<f4").tofile(bad / "l0_fc1_bias.float32.bin")  # > 16
    odd = d / "weights_with_a_folder"
    weight_io.save_folder(seeded_weights(cfg, 0), odd, cfg)
    (odd / "l1_htoh4_bias.float32.bin").unlink()
    (odd / "l1_htoh4_bias.float32.bin").mkdir()
    zero = d / "weights_zero_byte"
    weight_io.save_folder(seeded_weights(cfg, 0), zero, cfg)
    (zero / "pos_embed.float32.bin").write_bytes(b"")
    return d


def golden(tmp_path, *args, out="out"):
    argv = ["golden", *TINY, *args]
    if out is not None and "--out" not in args:
        argv += ["--out", tmp_path / out]
    return run_cli(*argv, "--quiet")


# ----------------------------------------------------------------------------- golden
@pytest.mark.parametrize("args, pattern", [
    (("--seed", "-1", "--synthetic"), r"^argument --seed: -1 is below the minimum 0; pass a "
                                      r"whole number >= 0 \(see 'moevit golden --help'\)$"),
    (("--seed", "x", "--synthetic"), r"^argument --seed: 'x' is not a seed"),
    (("--seed", "0", "--synthetic", "--image-seed", "-5"),
     r"^argument --image-seed: -5 is below the minimum 0; pass a whole number >= 0"),
    (("--seed", "0", "--synthetic", "--task", "7"),
     r"^task 7 is out of range: this model has 2 tasks \(valid: 0\.\.1 = \['semseg', 'depth'\]\)$"),
    (("--seed", "0", "--synthetic", "--task", "nosuch"),
     r"^unknown task 'nosuch'; this model has tasks \['semseg', 'depth'\] \(pass a name or an "
     r"id 0\.\.1\)$"),
    (("--seed", "0", "--synthetic", "--preset", "tinny"),
     r"^unknown preset 'tinny' \(did you mean 'tiny'\?\); valid presets: edge-moe, tiny, zcu104$"),
    (("--seed", "0", "--synthetic", "--preset", "vit-s"),
     r"^preset 'vit-s' exists only for the float model"),
    (("--seed", "0", "--synthetic", "--on-wrap", "clip"), r"^argument --on-wrap: invalid choice"),
    (("--synthetic",), r"one of the arguments --weights --seed is required"),
    (("--weights", "", "--synthetic"), r"^--weights '' is empty, expected the folder holding "),
    (("--seed", "0", "--image", ""), r"^--image '' is empty, expected an image file"),
])
def test_golden_option_errors(tmp_path, args, pattern):
    assert_usage_error(golden(tmp_path, *args), pattern, "moevit golden")
    assert_nothing_left(tmp_path, set())


@pytest.mark.parametrize("image, pattern", [
    ("truncated.png", r"truncated\.png: the image is damaged or truncated \(.*\); re-export it "
                      r"or pass another file$"),
    ("empty.png", r"empty\.png is empty \(0 bytes\); pass a PNG/JPEG or a raw float32 \.bin$"),
    ("empty.float32.bin", r"empty\.float32\.bin: 0 bytes, expected 24576 bytes \(float32 "
                          r"\[3\]\[32\]\[64\] for config 'tiny'\)$"),
    ("notes.png", r"notes\.png: not an image pillow can read \(PNG/JPEG/\.\.\.\), nor a raw "
                  r"float32 \.bin; pass an image file or use --synthetic$"),
    ("transparent.png", r"transparent\.png: image mode RGBA has 2048 transparent pixels, and the "
                        r"accelerator has no alpha channel; flatten the image onto a background"),
    ("folder.png", r"^--image '.*folder\.png' is a folder, expected an image file \(PNG/JPEG, or "
                   r"a raw float32 \.bin \[3x32x64\]\); pass such a file, or use --synthetic$"),
    ("missing.png", r"^--image '.*missing\.png' does not exist, expected an image file"),
])
def test_golden_bad_images(tmp_path, files, image, pattern):
    assert_usage_error(golden(tmp_path, "--seed", "0", "--image", files / image), pattern)
    assert_nothing_left(tmp_path, set())


@pytest.mark.parametrize("weights, pattern", [
    ("a_file", r"^--weights '.*a_file' is a file, expected the folder holding the "
               r"\*\.float32\.bin files; pass that folder, or use --seed N$"),
    ("nowhere", r"^--weights '.*nowhere' does not exist, expected the folder"),
    ("weights_zero_byte", r"^.*weights_zero_byte/pos_embed\.float32\.bin: 0 bytes, expected 1152 "
                          r"bytes \(float32 \[9, 32\] for config 'tiny'\); the file is truncated "
                          r"or belongs to a different model size$"),
    ("weights_with_a_folder", r"^weights folder .*weights_with_a_folder lacks 1 of the 29 files "
                              r"config 'tiny' needs: l1_htoh4_bias\.float32\.bin \(a folder, "
                              r"expected a file\)$"),
])
def test_golden_bad_weights_path(tmp_path, files, weights, pattern):
    assert_usage_error(golden(tmp_path, "--weights", files / weights, "--synthetic"), pattern)
    assert_nothing_left(tmp_path, set())


def test_weights_out_of_range_name_the_cli_option(tmp_path, files):
    proc = golden(tmp_path, "--weights", files / "weights_out_of_range", "--synthetic")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("moevit golden: error: weights folder ") and \
        first.endswith(": 1 tensor(s) hold values outside their fixed-point format; pass "
                       "--on-wrap wrap to reproduce the hardware's wrap-around, or rescale the "
                       "weights / widen the format:"), first
    assert "l0_fc1_bias.float32.bin: 64 of 64 values" in proc.stderr
    assert "on_wrap=" not in proc.stderr
    assert_nothing_left(tmp_path, set())


@pytest.mark.parametrize("where, pattern", [
    ("file", r"^--out '.*a_file' is a file, expected a folder \(new or existing\); remove it or "
             r"choose another path$"),
    ("under_file", r"^--out '.*a_file/sub': '.*a_file' is a file, not a folder, so the folder "
                   r"cannot be created under it; choose a path inside a folder$"),
    ("proc", r"^--out '/proc/moevit-test/out': cannot write in '/proc' \(.*\); choose a folder "
             r"path you can write to$"),
    ("sys", r"^--out '/sys/moevit-test': cannot write in '/sys' \(.*\); choose a folder path"),
    ("empty", r"^--out is empty; pass a path \(e\.g\. --out runs/out\)$"),
    ("device", r"^--out '/dev/null' is a special file \(device, socket or pipe\), expected a "
               r"folder"),
])
def test_golden_bad_out_fails_before_the_model_runs(tmp_path, files, where, pattern):
    out = {"file": files / "a_file", "under_file": files / "a_file" / "sub",
           "proc": "/proc/moevit-test/out", "sys": "/sys/moevit-test", "empty": "",
           "device": "/dev/null"}[where]
    before = {p.name for p in files.iterdir()}
    proc = golden(tmp_path, "--seed", "0", "--synthetic", "--out", out)
    assert_usage_error(proc, pattern)
    assert "golden model" not in proc.stdout  # failed before running
    assert (files / "a_file").read_text() == "x"
    assert_nothing_left(files, before)


def test_golden_rerun_replaces_files_and_keeps_others(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    proc = golden(tmp_path, "--seed", "0", "--synthetic")
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {"mine.txt", "output.int32.bin", "output.npy", "layers.json",
                     "experts.json", "timings.json"}
    assert_nothing_left(tmp_path, {"out"})
    # a failing run (bad task) leaves the earlier result untouched
    first = (out / "output.int32.bin").read_bytes()
    assert_usage_error(golden(tmp_path, "--seed", "1", "--synthetic", "--task", "9"), r"task 9")
    assert (out / "output.int32.bin").read_bytes() == first


# ----------------------------------------------------------------------------- demo
@pytest.mark.parametrize("args, pattern", [
    (("--seed", "-1"), r"^argument --seed: -1 is below the minimum 0"),
    (("--out", ""), r"^--out is empty; pass a path"),
    (("--preset", "edge_moe"), r"^unknown preset 'edge_moe' \(did you mean 'edge-moe'\?\)"),
])
def test_demo_errors(tmp_path, args, pattern):
    assert_usage_error(run_cli("demo", *args), pattern, "moevit demo")


def test_demo_out_is_a_file_fails_before_the_run(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    proc = run_cli("demo", *TINY, "--out", f)
    assert_usage_error(proc, r"^--out '.*a_file' is a file, expected a folder")
    assert proc.stdout == "" and f.read_text() == "x"


# ----------------------------------------------------------------------------- compare
@pytest.mark.parametrize("args, pattern", [
    (("--seed", "-3", "--synthetic"), r"^argument --seed: -3 is below the minimum 0"),
    (("--seed", "0", "--synthetic", "--task", "depthh"), r"^unknown task 'depthh'"),
    (("--seed", "0", "--synthetic", "--dtype", "float16"), r"^argument --dtype: invalid choice"),
])
def test_compare_errors(tmp_path, args, pattern):
    proc = run_cli("compare", *TINY, *args, "--out", tmp_path / "c")
    assert_usage_error(proc, pattern, "moevit compare")
    assert_nothing_left(tmp_path, set())


def test_compare_out_under_a_file(tmp_path, files):
    proc = run_cli("compare", *TINY, "--seed", "0", "--synthetic", "--out", files / "a_file" / "c")
    assert_usage_error(proc, r"'.*a_file' is a file, not a folder")


def test_compare_says_weights_were_wrapped(tmp_path, files):
    out = tmp_path / "c"
    proc = run_cli("compare", *TINY, "--weights", files / "weights_out_of_range", "--synthetic",
                   "--on-wrap", "wrap", "--no-plots", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert ("WARNING: 64 weight values in 1 files lie outside their fixed-point formats and "
            "were WRAPPED as the hardware would (--on-wrap wrap): l0_fc1_bias.float32.bin (64)"
            ) in proc.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["weight_wraps"]["total"] == 64
    (w,) = s["weight_wraps"]["files"]
    assert (w["file"], w["tensor"], w["wrapped"], w["count"], w["worst_value"]) == \
        ("l0_fc1_bias.float32.bin", "vit_bias_l1", 64, 64, 100.0)
    md = (out / "report.md").read_text()
    assert "## Warning: weights were wrapped" in md
    assert "| l0_fc1_bias.float32.bin | vit_bias_l1 | `ap_fixed<16,5>` | 64 | 64 | 100 |" in md


def test_compare_without_wraps_says_nothing(tmp_path, files):
    out = tmp_path / "c"
    proc = run_cli("compare", *TINY, "--weights", files / "weights", "--synthetic", "--no-plots",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "WRAPPED" not in proc.stdout
    assert json.loads((out / "summary.json").read_text())["weight_wraps"] == \
        {"total": 0, "files": []}
    assert "weights were wrapped" not in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- top level
def test_unknown_command_is_one_line():
    assert_usage_error(run_cli("gloden"), r"^argument COMMAND: invalid choice: 'gloden'", "moevit")


def test_ignored_image_seed_is_a_warning(tmp_path, files):
    proc = golden(tmp_path, "--seed", "0", "--image", files / "good.png", "--image-seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "moevit golden: warning: --image-seed is ignored with --image (it seeds the " \
           "--synthetic image)" in proc.stderr
