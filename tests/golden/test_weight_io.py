"""Weight folders (spec §8.1), the onboard .npy packing (§8.3) and image files."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from moevit.config import preset
from moevit.errors import FormatRangeError, WeightFileError
from moevit.golden import weight_io as wio
from moevit.golden.weights import expected_shapes, seeded_weights


@pytest.fixture(scope="module")
def tiny():
    return preset("tiny")


@pytest.fixture(scope="module")
def tiny_w(tiny):
    return seeded_weights(tiny, seed=3)


def _bin(folder, name):
    return folder / f"{name}.float32.bin"


def _same(a, b):
    for name, x in a.items():
        y = getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


# ----------------------------------------------------------------------------- layout
def test_edge_moe_folder_layout_names_and_count():
    cfg = preset("edge-moe")
    specs = wio.folder_layout(cfg)
    names = {s.name for s in specs}
    # 3 globals + 12 x (qkv w/b, proj w/b, norm1 w/b, norm2 w/b) + 6 x 4 dense + 6 x (4 + 2 gates)
    assert len(specs) == 3 + 12 * 8 + 6 * 4 + 6 * 6 == 159
    for n in ["patch_embed_weight", "patch_embed_bias", "pos_embed", "l0_qkv_weight", "l11_attn_proj_bias",
              "l4_norm2_weight", "l10_fc2_bias", "l1_htoh4_weight", "l11_h4toh_bias",
              "l1_w_gate_T_task0", "l11_w_gate_T_task1"]:
        assert n in names
    assert "l1_fc1_weight" not in names and "l0_htoh4_weight" not in names
    by = {s.name: s for s in specs}
    assert by["l0_qkv_weight"].shape == (576, 192) and by["l1_htoh4_weight"].shape == (16, 384, 192)
    assert by["l3_h4toh_weight"].shape == (16, 192, 384) and by["l3_w_gate_T_task1"].shape == (16, 192)
    assert by["patch_embed_weight"].nbytes == 192 * 3 * 16 * 16 * 4


# ----------------------------------------------------------------------------- folder round trips
def test_folder_round_trip_and_file_contents(tiny, tiny_w, tmp_path):
    written = wio.save_folder(tiny_w, tmp_path, tiny)
    assert len(written) == len(wio.folder_layout(tiny))
    assert not list(tmp_path.glob(".*.tmp"))
    back = wio.load_folder(tmp_path, tiny)
    _same(tiny_w, back)
    D = tiny.dim
    qkv = np.fromfile(_bin(tmp_path, "l0_qkv_weight"), dtype="<f4").reshape(3 * D, D)
    assert np.array_equal(qkv[D:2 * D], tiny_w.attn_weights[0, 1])          # rows D..2D-1 = K
    qb = np.fromfile(_bin(tmp_path, "l1_qkv_bias"), dtype="<f4")
    assert np.array_equal(qb[2 * D:], tiny_w.attn_bias[1, 2])               # V bias
    m = tiny.moe_index(tiny.moe_layers[0])
    gate = np.fromfile(_bin(tmp_path, f"l{tiny.moe_layers[0]}_w_gate_T_task1"), dtype="<f4")
    assert np.array_equal(gate.reshape(tiny.num_experts, D), tiny_w.moe_w_gate_per_task[1, m])
    pos = np.fromfile(_bin(tmp_path, "pos_embed"), dtype="<f4").reshape(tiny.tokens, D)
    assert np.array_equal(pos[0], tiny_w.pos_embed[0])                      # cls already folded in


def test_edge_moe_round_trip(tmp_path):
    cfg = preset("edge-moe")
    w = seeded_weights(cfg, seed=1)
    wio.save_folder(w, tmp_path / "f", cfg)
    _same(w, wio.load_folder(tmp_path / "f", cfg))
    wio.save_onboard(w, tmp_path / "o", cfg)
    back = wio.load_onboard(tmp_path / "o", cfg)
    _same(w, back)
    assert np.load(tmp_path / "o" / "moe_w_gate_per_task.npy").shape == (2, 6, 16, 192)


def test_raw_weights_are_written_as_their_exact_values(tiny, tiny_w, tmp_path):
    raw, _ = tiny_w.quantize(tiny)
    wio.save_folder(raw, tmp_path, tiny)
    raw2, _ = wio.load_folder(tmp_path, tiny).quantize(tiny)
    _same(raw, raw2)


def test_folder_to_onboard_agree(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path / "f", tiny)
    wio.save_onboard(wio.load_folder(tmp_path / "f", tiny), tmp_path / "o", tiny)
    shapes = expected_shapes(tiny)
    for name, shape in shapes.items():
        a = np.load(tmp_path / "o" / f"{name}.npy")
        assert a.dtype == np.float32 and a.shape == shape
        assert np.array_equal(a, getattr(tiny_w, name))


# ----------------------------------------------------------------------------- folder errors
def test_missing_folder(tiny, tmp_path):
    with pytest.raises(WeightFileError, match=r"weights folder .*nope does not exist"):
        wio.load_folder(tmp_path / "nope", tiny)


def test_missing_file_is_named_with_folder(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path, tiny)
    _bin(tmp_path, "l1_w_gate_T_task1").unlink()
    with pytest.raises(WeightFileError,
                       match=rf"weights folder {re.escape(str(tmp_path))} lacks 1 of the \d+ files "
                             r"config 'tiny' needs: l1_w_gate_T_task1\.float32\.bin"):
        wio.load_folder(tmp_path, tiny)


def test_wrong_size_names_bytes_and_shape(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path, tiny)
    f = _bin(tmp_path, "l0_fc1_weight")
    f.write_bytes(f.read_bytes()[:-12])
    H, D = tiny.mlp_hidden, tiny.dim
    want = H * D * 4
    with pytest.raises(WeightFileError,
                       match=rf"l0_fc1_weight\.float32\.bin: {want - 12} bytes, expected {want} bytes "
                             rf"\(float32 \[{H}, {D}\]"):
        wio.load_folder(tmp_path, tiny)


def test_nan_inf_named_with_count(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path, tiny)
    f = _bin(tmp_path, "l1_norm2_bias")
    a = np.fromfile(f, dtype="<f4")
    a[[3, 5]] = [np.nan, np.inf]
    a.tofile(f)
    with pytest.raises(WeightFileError, match=r"l1_norm2_bias\.float32\.bin: 2 NaN/Inf values .*index \(3,\)"):
        wio.load_folder(tmp_path, tiny)


def test_values_outside_format(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path, tiny)
    f = _bin(tmp_path, "l0_qkv_weight")
    a = np.fromfile(f, dtype="<f4")
    a[[0, 7, 9]] = [2.5, -3.75, 2.0]      # ap_fixed<16,2> holds [-2, 2)
    a.tofile(f)
    with pytest.raises(FormatRangeError,
                       match=r"(?s)1 tensor\(s\).*l0_qkv_weight\.float32\.bin: 3 of \d+ values lie outside "
                             r"ap_fixed<16,2> .*worst -3\.75"):
        wio.load_folder(tmp_path, tiny)
    w = wio.load_folder(tmp_path, tiny, on_wrap="wrap")         # the hardware would wrap
    raw, rep = w.quantize(tiny)
    assert rep["attn_weights"].wrapped == 3
    assert raw.attn_weights[0, 0, 0, 0] == -(3 << 13)            # 2.5 -> -1.5


# ----------------------------------------------------------------------------- onboard errors
def test_onboard_errors(tiny, tiny_w, tmp_path):
    with pytest.raises(WeightFileError, match="onboard folder .* does not exist"):
        wio.load_onboard(tmp_path / "x", tiny)
    wio.save_onboard(tiny_w, tmp_path, tiny)
    g = tmp_path / "moe_w_gate_per_task.npy"
    good = np.load(g)
    np.save(g, good[:1])
    with pytest.raises(WeightFileError, match=r"moe_w_gate_per_task\.npy: shape \[1, 1, 4, 32\], expected \[2, 1, 4, 32\]"):
        wio.load_onboard(tmp_path, tiny)
    np.save(g, good.astype(np.int16))
    with pytest.raises(WeightFileError, match=r"moe_w_gate_per_task\.npy: dtype int16, expected float32"):
        wio.load_onboard(tmp_path, tiny)
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    np.save(g, bad)
    with pytest.raises(WeightFileError, match=r"moe_w_gate_per_task\.npy: 1 NaN/Inf"):
        wio.load_onboard(tmp_path, tiny)
    bad = good.copy()
    bad[1, 0, 2, 3] = 7.0
    np.save(g, bad)
    with pytest.raises(FormatRangeError, match=r"moe_w_gate_per_task\.npy: 1 of \d+ values .*worst 7"):
        wio.load_onboard(tmp_path, tiny)
    (tmp_path / "pos_embed.npy").unlink()
    with pytest.raises(WeightFileError, match=r"lacks 1 file\(s\) config 'tiny' needs: pos_embed\.npy"):
        wio.load_onboard(tmp_path, tiny)


# ----------------------------------------------------------------------------- atomic writes
def test_failed_save_loses_nothing(tiny, tiny_w, tmp_path, monkeypatch):
    wio.save_folder(tiny_w, tmp_path, tiny)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = seeded_weights(tiny, seed=99)
    bad = other.replace(vit_bias_l2=other.vit_bias_l2.copy())
    bad.vit_bias_l2[0, 0] = np.nan
    with pytest.raises(WeightFileError, match=r"weights\.vit_bias_l2: 1 NaN/Inf"):
        wio.save_folder(bad, tmp_path, tiny)
    # a failure in the middle of writing (disk full, ...) leaves the old files and no temporaries
    orig = wio._write_all

    def write_all_failing(folder, files):
        files = dict(files)

        def boom(tmp):
            tmp.write_bytes(b"partial")
            raise OSError("disk full")
        files[list(files)[4]] = boom
        return orig(folder, files)
    monkeypatch.setattr(wio, "_write_all", write_all_failing)
    with pytest.raises(OSError, match="disk full"):
        wio.save_folder(other, tmp_path, tiny)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


# ----------------------------------------------------------------------------- images
def test_png_exact_size_is_pixel_over_256(tiny, tmp_path):
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, (tiny.image_height, tiny.image_width, 3), dtype=np.uint8)
    pix[0, 0] = 255
    Image.fromarray(pix, "RGB").save(tmp_path / "a.png")
    img = wio.load_image(tmp_path / "a.png", tiny)
    assert img.dtype == np.float32 and img.shape == (3, tiny.image_height, tiny.image_width)
    assert np.array_equal(img * 256, pix.transpose(2, 0, 1).astype(np.float32))
    assert img.max() == 255 / 256                                   # never 1.0


def test_jpeg_is_resized_to_config(tiny, tmp_path):
    Image.new("RGB", (300, 123), (10, 200, 255)).save(tmp_path / "b.jpg")
    img = wio.load_image(tmp_path / "b.jpg", tiny)
    assert img.shape == (3, tiny.image_height, tiny.image_width)
    assert np.array_equal(img * 256, np.floor(img * 256))          # on the k/256 grid
    assert abs(img[0].mean() * 256 - 10) < 3 and abs(img[2].mean() * 256 - 255) < 3


def test_bin_image_round_trip_size_and_wrap_warning(tiny, tmp_path):
    img = wio.synthetic_image(tiny, seed=4)
    img.tofile(tmp_path / "image.float32.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(wio.load_image(tmp_path / "image.float32.bin", tiny), img)
    img[0, 0, :3] = 1.0
    img.tofile(tmp_path / "one.bin")
    with pytest.warns(wio.ImageWrapWarning, match=r"3 of \d+ values lie outside ap_ufixed<8,0>.*"
                                                  r"3 values are exactly 1\.0, which wraps to 0"):
        wio.load_image(tmp_path / "one.bin", tiny)
    img[:, :, :].tofile(tmp_path / "short.bin")
    (tmp_path / "short.bin").write_bytes((tmp_path / "short.bin").read_bytes()[:-4])
    n = 3 * tiny.image_height * tiny.image_width * 4
    with pytest.raises(WeightFileError, match=rf"short\.bin: {n - 4} bytes, expected {n} bytes "
                                              rf"\(float32 \[3\]\[{tiny.image_height}\]\[{tiny.image_width}\]"):
        wio.load_image(tmp_path / "short.bin", tiny)
    with pytest.raises(WeightFileError, match="does not exist"):
        wio.load_image(tmp_path / "missing.png", tiny)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(WeightFileError, match="not an image pillow can read"):
        wio.load_image(tmp_path / "junk.png", tiny)


def test_synthetic_image(tiny):
    a = wio.synthetic_image(tiny, seed=0)
    assert a.shape == (3, tiny.image_height, tiny.image_width) and a.dtype == np.float32
    k = a * 256
    assert np.array_equal(k, np.round(k)) and k.min() >= 0 and k.max() <= 255
    assert np.array_equal(a, wio.synthetic_image(tiny, seed=0))
    assert not np.array_equal(a, wio.synthetic_image(tiny, seed=1))
    assert len(np.unique(k)) > 100                                   # not flat
    edge = preset("edge-moe")
    assert wio.synthetic_image(edge, 0).shape == (3, 128, 256)


def test_missing_expert_files_get_a_hint(tiny, tiny_w, tmp_path):
    wio.save_folder(tiny_w, tmp_path, tiny)
    for f in tmp_path.glob("l1_h*_weight.float32.bin"):
        f.unlink()
    with pytest.raises(WeightFileError, match=r"lacks 2 of .*only expert weights are missing"):
        wio.load_folder(tmp_path, tiny)


def test_raw_values_float32_cannot_hold_are_refused(tiny, tiny_w, tmp_path):
    raw, _ = tiny_w.quantize(tiny)
    pos = raw.pos_embed.copy()
    pos[0, 0] = (1 << 30) + 1                       # 256 + 2^-22 needs 31 significant bits
    with pytest.raises(WeightFileError, match=r"weights\.pos_embed: 1 raw values need more than float32"):
        wio.save_folder(raw.replace(pos_embed=pos), tmp_path, tiny)
    assert not list(tmp_path.iterdir())


def test_reference_output(tiny, tmp_path):
    assert wio.reference_output_name(preset("edge-moe")) == "l11_x_post_moe"
    ref = np.random.default_rng(0).normal(size=(tiny.tokens, tiny.dim)).astype(np.float32)
    ref.tofile(tmp_path / "l1_x_post_moe.float32.bin")
    assert np.array_equal(wio.load_reference_output(tmp_path, tiny), ref)
    (tmp_path / "l1_x_post_moe.float32.bin").write_bytes(b"1234")
    with pytest.raises(WeightFileError, match=r"4 bytes, expected"):
        wio.load_reference_output(tmp_path, tiny)
