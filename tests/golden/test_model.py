"""The whole golden model: fast path == numpy reference, taps, batch, wraps, errors."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError, ShapeError
from moevit.golden import attention as att
from moevit.golden.fixed import wrap32
from moevit.golden.model import GoldenModel, tap_names
from moevit.golden.weights import seeded_weights


def _images(cfg, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, cfg.image_channels, cfg.image_height,
                                 cfg.image_width)).astype(np.uint8)


def _assert_fast_equals_reference(cfg, w, imgs, fast=None):
    """Run the numpy reference (and the fast path unless ``fast`` is given) with every tap:
    the same tap names (all of ``tap_names(cfg)``), every tap and the output bit-identical.
    Returns the fast result."""
    if fast is None:
        fast = GoldenModel(cfg, w).run(imgs, taps=True)
    ref = GoldenModel(cfg, w, fast=False).run(imgs, taps=True)
    assert set(fast.taps) == set(ref.taps) == set(tap_names(cfg))
    for name in tap_names(cfg):
        assert np.array_equal(fast.taps[name], ref.taps[name]), name
    assert np.array_equal(fast.output, ref.output)
    return fast


@pytest.fixture(scope="module")
def tiny_run():
    cfg = preset("tiny")
    w = seeded_weights(cfg, 3)
    imgs = _images(cfg, 3)
    fast = GoldenModel(cfg, w).run(imgs, taps=True)
    return cfg, w, imgs, fast


def test_fast_equals_reference_all_taps_tiny(tiny_run):
    cfg, w, imgs, fast = tiny_run
    _assert_fast_equals_reference(cfg, w, imgs, fast)


def test_tap_shapes_and_consistency(tiny_run):
    cfg, w, imgs, r = tiny_run
    N, T, D, H = len(imgs), cfg.tokens, cfg.dim, cfg.heads
    tp = r.taps
    assert tp["patch_embed"].shape == (N, T, D)
    assert tp["l0.scores"].shape == (N, T, T, H)
    assert tp["l0.score_buffer"].shape == (N, cfg.query_blocks, T, cfg.attn_parallel,
                                           cfg.head_lanes)
    assert tp["l0.softmax_info"].shape == (N, T, cfg.softmax_info_width)
    assert tp["l0.hidden"].shape == (N, T, cfg.mlp_hidden)
    assert tp["l1.gate_logits"].shape == (N, T, cfg.num_experts)
    assert "l1.hidden" not in tp and "l0.gate_logits" not in tp
    for L in range(cfg.depth):
        prev = tp["patch_embed"] if L == 0 else tp[f"l{L - 1}.out"]
        assert np.array_equal(tp[f"l{L}.resid1"], wrap32(prev + tp[f"l{L}.proj"]))
        assert np.array_equal(tp[f"l{L}.out"], wrap32(tp[f"l{L}.resid1"] + tp[f"l{L}.mlp_out"]))
    assert np.array_equal(tp[f"l{cfg.depth - 1}.out"], r.output)
    for n in range(N):
        assert np.array_equal(tp["l0.score_buffer"][n], att.score_buffer(tp["l0.scores"][n], cfg))


def test_layer_taps_follow_from_their_inputs_and_weights(tiny_run):
    """Each layer's wiring, checked stage by stage with the numpy stage functions: LN1 of
    the layer input with norm 0, Q/K/V of LN1 with attention weights 0/1/2, proj of AV
    with weights 3, LN2 of resid1 with norm 1 (the fast-vs-reference comparison cannot see
    a stage fed the wrong operand: both paths share the wiring)."""
    from moevit.golden.layernorm import layernorm
    from moevit.golden.linear import linear_ref
    cfg, w, imgs, r = tiny_run
    gm = GoldenModel(cfg, w)
    qw, tp = gm.w, r.taps
    for n in range(len(imgs)):
        for L in range(cfg.depth):
            p = f"l{L}."
            prev = tp["patch_embed"][n] if L == 0 else tp[f"l{L - 1}.out"][n]
            assert np.array_equal(tp[p + "ln1"][n], layernorm(
                prev, qw.norm_weights[L, 0], qw.norm_bias[L, 0], cfg)), p + "ln1"
            for j, name in enumerate("qkv"):
                assert np.array_equal(tp[p + name][n], linear_ref(
                    tp[p + "ln1"][n], qw.attn_weights[L, j], qw.attn_bias[L, j],
                    w_frac=gm.w_frac, bias_frac=gm.attn_bias_frac)), p + name
            assert np.array_equal(tp[p + "proj"][n], linear_ref(
                tp[p + "av"][n], qw.attn_weights[L, 3], qw.attn_bias[L, 3], w_frac=gm.w_frac,
                bias_frac=gm.attn_bias_frac)), p + "proj"
            assert np.array_equal(tp[p + "ln2"][n], layernorm(
                tp[p + "resid1"][n], qw.norm_weights[L, 1], qw.norm_bias[L, 1], cfg)), p + "ln2"


def test_routing_info(tiny_run):
    cfg, w, imgs, r = tiny_run
    assert set(r.routing) == set(cfg.moe_layers)
    ro = r.routing[1]
    N = len(imgs)
    assert ro["experts"].shape == ro["probs"].shape == (N, cfg.tokens, cfg.top_k)
    assert np.all(ro["tokens_per_expert"].sum(1) == cfg.tokens * cfg.top_k)


def test_batch_equals_per_image(tiny_run):
    cfg, w, imgs, r = tiny_run
    m = GoldenModel(cfg, w)
    for n in range(len(imgs)):
        one = m.run(imgs[n], taps={"l1.gate_logits"})
        assert np.array_equal(one.output[0], r.output[n])
        assert list(one.taps) == ["l1.gate_logits"]
        assert np.array_equal(one.taps["l1.gate_logits"][0], r.taps["l1.gate_logits"][n])


def test_float_images_floor_to_pixels(tiny_cfg):
    cfg = tiny_cfg
    m = GoldenModel(cfg, seeded_weights(cfg, 0))
    raw = _images(cfg, 1)[0]
    f = raw.astype(np.float32) / 256
    assert np.array_equal(m.pixels(f)[0], raw)
    assert m.pixels(np.ones((cfg.image_channels, cfg.image_height, cfg.image_width)))[0].max() == 0
    assert np.array_equal(m.run(f).output, m.run(raw).output)


def test_task_selects_gate(tiny_run):
    cfg, w, imgs, r = tiny_run
    m = GoldenModel(cfg, w)
    r1 = m.run(imgs[0], task=1, taps={"l0.out", "l1.gate_logits"})
    assert np.array_equal(r1.taps["l0.out"][0], r.taps["l0.out"][0])  # gate comes after
    assert not np.array_equal(r1.taps["l1.gate_logits"][0], r.taps["l1.gate_logits"][0])


def test_residual_wraps_mod_2_32(tiny_cfg):
    cfg = tiny_cfg
    w = seeded_weights(cfg, 0)
    w = w.replace(pos_embed=np.full_like(w.pos_embed, 500.0),
                  attn_bias=np.full_like(w.attn_bias, 60.0))
    r = GoldenModel(cfg, w).run(_images(cfg, 1), taps={"patch_embed", "l0.proj", "l0.resid1"})
    pe, proj, res = (r.taps[n][0] for n in ("patch_embed", "l0.proj", "l0.resid1"))
    exact = pe + proj
    assert np.any(exact >= 2**31)  # the sum leaves fm_t's range ...
    assert np.array_equal(res, wrap32(exact))  # ... and wraps, no saturation
    assert np.any(res < 0)


def test_errors(tiny_cfg):
    cfg = tiny_cfg
    m = GoldenModel(cfg, seeded_weights(cfg, 0))
    img = _images(cfg, 1)
    with pytest.raises(ConfigError, match=r"^task 2 is out of range: this model has 2 tasks"):
        m.run(img, task=2)
    with pytest.raises(ShapeError, match="expected"):
        m.run(np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="unknown tap names"):
        m.run(img, taps={"l0.nope"})
    with pytest.raises(ShapeError):
        GoldenModel(preset("edge-moe"), seeded_weights(cfg, 0))


def test_edge_moe_full_image_fast_equals_reference():
    """All 12 layers of the edge-moe preset, every tap, numba path vs numpy reference."""
    cfg = preset("edge-moe")
    w = seeded_weights(cfg, 0)
    img = _images(cfg, 1, seed=5)
    fast = _assert_fast_equals_reference(cfg, w, img)
    assert fast.output.shape == (1, 129, 192)


def test_threaded_batch_equals_serial(tiny_run):
    cfg, w, imgs, r = tiny_run
    r2 = GoldenModel(cfg, w).run(imgs, taps={"l1.gate_logits"}, workers=2)
    assert np.array_equal(r2.output, r.output)
    assert np.array_equal(r2.taps["l1.gate_logits"], r.taps["l1.gate_logits"])


@pytest.mark.parametrize("changes", [
    dict(attn_parallel=2, top_k=3),
    dict(dim=64, heads=4, mlp_hidden=128, expert_hidden=64, attn_parallel=8, top_k=1,
         moe_layers=(0, 1)),
])
def test_other_configs_fast_equals_reference(changes):
    cfg = preset("tiny").replace(name="variant", **changes)
    w = seeded_weights(cfg, 1)
    img = _images(cfg, 1, seed=2)
    fast = _assert_fast_equals_reference(cfg, w, img)
    assert fast.routing[1]["experts"].shape[-1] == cfg.top_k
