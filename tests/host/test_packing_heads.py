"""Weight packing (spec §7 layouts, content-hash cache, wrap reports), estimates, task heads."""
import numpy as np
import pytest

from moevit.golden.fixed import quantize
from moevit.host import packing
from moevit.host.estimate import backbone_macs, default_timeout
from moevit.host.layout import buffer_layout


def test_layouts_follow_spec_7(edge_cfg):
    lay = buffer_layout(edge_cfg, batch=1)
    expect = {  # spec §7 table (edge-moe), typed in: (shape, bytes per element)
        "images": ((1, 3, 128, 256), 1), "x": ((1, 129, 192), 4), "tmp1": ((129, 192), 4),
        "attn": ((33, 129, 4, 4), 4), "attn_softmax_info": ((129, 8), 4),
        "patch_embed_weights": ((192, 3, 16, 16), 2), "patch_embed_bias": ((192,), 2),
        "pos_embed": ((129, 192), 4), "attn_weights": ((12, 4, 192, 192), 2),
        "attn_bias": ((12, 4, 192), 2), "moe_w_gate": ((6, 16, 192), 2),
        "moe_weights_l1": ((6, 16, 384, 192), 2), "moe_weights_l2": ((6, 16, 192, 384), 2),
        "moe_bias_l1": ((6, 16, 384), 2), "moe_bias_l2": ((6, 16, 192), 2),
        "vit_weights_l1": ((6, 768, 192), 2), "vit_weights_l2": ((6, 192, 768), 2),
        "vit_bias_l1": ((6, 768), 2), "vit_bias_l2": ((6, 192), 2),
        "norm_weights": ((12, 2, 192), 2), "norm_bias": ((12, 2, 192), 2)}
    for name, (shape, size) in expect.items():
        assert (lay[name][0], lay[name][1].itemsize) == (shape, size), name
    # spec §6.3 footprints
    nbytes = lambda n: int(np.prod(lay[n][0])) * lay[n][1].itemsize  # noqa: E731
    assert nbytes("x") == 99072 and nbytes("attn") == 272448 and nbytes("tmp_hidden") == 396288
    assert nbytes("attn_softmax_info") == 4128 and nbytes("images") == 98304


def test_pack_equals_floor_quantisation_and_caches(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path))
    packing.clear_memory_cache()
    cfg, w, _ = tiny
    p = packing.pack_weights(w, cfg)
    assert p.from_cache == ""
    raw, _ = quantize(w.attn_weights, cfg.formats.wt_linear)
    assert p.arrays["attn_weights"].dtype == np.dtype("<i2")
    np.testing.assert_array_equal(p.arrays["attn_weights"], raw)
    np.testing.assert_array_equal(p.gates[1], quantize(w.moe_w_gate_per_task[1], cfg.formats.wt_linear)[0])
    assert p.arrays["pos_embed"].dtype == np.dtype("<i4")
    assert packing.pack_weights(w, cfg).from_cache == "memory"
    packing.clear_memory_cache()
    q = packing.pack_weights(w, cfg)
    assert q.from_cache == "disk" and q.key == p.key
    for n in p.arrays:
        np.testing.assert_array_equal(q.arrays[n], p.arrays[n])
    w2 = w.replace(attn_bias=w.attn_bias + np.float32(2 ** -9))
    assert packing.pack_weights(w2, cfg).key != p.key


def test_wraps_reported_as_golden(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path))
    cfg, w, _ = tiny
    big = w.norm_weights.copy()
    big[0, 0, :3] = 100.0           # wt_norm is ap_fixed<16,5>: |x| < 16
    p = packing.pack_weights(w.replace(norm_weights=big), cfg, cache=False)
    assert list(p.wraps) == ["norm_weights"] and "3 of" in p.wraps["norm_weights"]


def test_backbone_macs_equal_float_model(tiny_cfg, edge_cfg):
    from moevit.golden.float.model import FloatConfig, macs
    for cfg in (tiny_cfg, edge_cfg):
        assert backbone_macs(cfg) == macs(FloatConfig.from_accel(cfg), None, head=False)["backbone"]
    assert default_timeout(edge_cfg, "pynq", 1) >= 5.0
    # rtl counts simulated time: the tiny default is ~1 M kernel cycles, not 60 s of them
    assert 3e5 <= default_timeout(tiny_cfg, "rtl", 1) * tiny_cfg.clock_hz <= 1e7


def test_heads_pictures(tiny, reference):
    pytest.importorskip("torch")
    from moevit.host.heads import TaskHeads
    cfg, _, _ = tiny
    heads = TaskHeads(cfg)
    assert not heads.trained
    seg = heads.predict(reference[0].output, 0)
    dep = heads.predict(reference[1].output, 1)
    assert seg.shape == (3, 7, cfg.image_height, cfg.image_width)
    assert dep.shape == (3, 1, cfg.image_height, cfg.image_width)
    pic = heads.picture(seg[0], 0)
    assert pic.shape == (cfg.image_height, cfg.image_width, 3) and pic.dtype == np.uint8
    g = heads.picture(dep[0], 1)
    assert g.shape == (cfg.image_height, cfg.image_width) and g.min() == 0 and g.max() == 255
