"""Float reference model: gate semantics, task isolation, determinism, balance loss, heads,
and agreement with an independent float64 evaluation of the accelerator's stage order."""

import numpy as np
import pytest
import torch

from moevit.config import preset
from moevit.errors import ConfigError, ShapeError
from moevit.golden.float.checkpoint import model_from_weights
from moevit.golden.float.model import (FloatConfig, FloatM3ViT, Mlp, MoE, cv_squared,
                                       float_preset, taps_to_golden_layout, topk_lower_index)
from moevit.golden.float.stage_order import run_stage_order
from moevit.golden.weights import seeded_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return FloatM3ViT(FloatConfig.from_accel(preset("tiny"))).eval()


# ----------------------------------------------------------------------------- gate semantics
def test_single_expert_top1_equals_dense_mlp():
    c = FloatConfig.from_accel(preset("tiny")).replace(num_experts=1, top_k=1, expert_hidden=48,
                                                        mlp_hidden=48)
    torch.manual_seed(1)
    moe, mlp = MoE(c), Mlp(c)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.3)
        mlp.fc1.weight.copy_(moe.experts.htoh4.weight[0]), mlp.fc1.bias.copy_(moe.experts.htoh4.bias[0])
        mlp.fc2.weight.copy_(moe.experts.h4toh.weight[0]), mlp.fc2.bias.copy_(moe.experts.h4toh.bias[0])
    moe.eval()
    x = torch.randn(3, 7, c.dim)
    out, routing = moe(x, task=0)
    torch.testing.assert_close(out, mlp(x), rtol=0, atol=1e-6)
    assert torch.all(routing["probs"] == 1.0)


def test_combine_weights_are_full_softmax_without_renormalisation():
    c = FloatConfig.from_accel(preset("tiny"))
    torch.manual_seed(2)
    moe = MoE(c).eval()
    x = torch.randn(50, c.dim)
    logits, experts, probs = moe.route(x, task=1)
    full = torch.softmax(x @ moe.gate[1].w_gate, dim=-1)
    torch.testing.assert_close(probs, full.gather(1, experts))
    assert torch.all(probs.sum(-1) < 1.0)
    assert torch.all(probs[:, 0] >= probs[:, 1])


def test_topk_ties_go_to_lower_index():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 5.0]])
    assert topk_lower_index(logits, 2).tolist() == [[1, 2], [0, 1], [3, 1]]


def test_moe_gathers_tokens_per_expert_like_a_dense_masked_evaluation():
    c = FloatConfig.from_accel(preset("tiny"))
    torch.manual_seed(3)
    moe = MoE(c).eval()
    with torch.no_grad():
        for p in moe.experts.parameters():
            p.normal_(0, 0.2)
    x = torch.randn(2, 9, c.dim)
    out, routing = moe(x, task=0)
    # dense reference: every expert on every token, masked by the routing
    w1, b1 = moe.experts.htoh4.weight, moe.experts.htoh4.bias
    w2, b2 = moe.experts.h4toh.weight, moe.experts.h4toh.bias
    h = torch.nn.functional.gelu(torch.einsum("ntd,ehd->nteh", x, w1) + b1)
    y = torch.einsum("nteh,edh->nted", h, w2) + b2                    # [N,T,E,D]
    mask = torch.zeros(2, 9, c.num_experts).scatter(-1, routing["experts"], routing["probs"])
    torch.testing.assert_close(out, (y * mask[..., None]).sum(2), rtol=0, atol=1e-6)
    assert routing["tokens_per_expert"].sum(-1).tolist() == [9 * c.top_k] * 2


# ----------------------------------------------------------------------------- tasks, determinism
def test_other_tasks_router_and_head_do_not_change_a_task(tiny_model, random_image):
    img = torch.from_numpy(random_image(tiny_model.cfg))
    with torch.no_grad():
        before = tiny_model(img, task=0)
        saved = [b.mlp.gate[1].w_gate.clone() for b in tiny_model.backbone.blocks if b.is_moe]
        for b in tiny_model.backbone.blocks:
            if b.is_moe:
                b.mlp.gate[1].w_gate.normal_(0, 1.0)
        tiny_model.decoders["depth"].cls.weight.add_(1.0)
        after = tiny_model(img, task=0)
        changed = tiny_model(img, task=1)
        # restore
        for b, s in zip([b for b in tiny_model.backbone.blocks if b.is_moe], saved):
            b.mlp.gate[1].w_gate.copy_(s)
        tiny_model.decoders["depth"].cls.weight.sub_(1.0)
        back = tiny_model(img, task=1)
    assert torch.equal(before.features, after.features)
    assert torch.equal(before.prediction, after.prediction)
    assert not torch.equal(changed.features, back.features)  # the router does matter for task 1


def test_eval_is_deterministic_and_balance_loss_zero(tiny_model, random_image):
    img = torch.from_numpy(random_image(tiny_model.cfg, 5))
    with torch.no_grad():
        a = tiny_model(img, task=1, taps=True)
        b = tiny_model(img, task=1, taps=True)
    assert torch.equal(a.features, b.features) and torch.equal(a.prediction, b.prediction)
    assert all(torch.equal(a.taps[k], b.taps[k]) for k in a.taps)
    assert float(a.balance_loss) == 0.0


def test_all_tasks_mode_and_task_names(tiny_model, random_image):
    img = torch.from_numpy(random_image(tiny_model.cfg))
    with torch.no_grad():
        res = tiny_model(img[None].repeat(2, 1, 1, 1), task="all")
        one = tiny_model(img, task="depth")
    assert set(res) == {0, 1}
    assert res[0].prediction.shape == (2, 7, 32, 64) and res[1].prediction.shape == (2, 1, 32, 64)
    torch.testing.assert_close(res[1].features[0], one.features[0])
    with pytest.raises(ConfigError, match="unknown task 'normals'"):
        tiny_model(img, task="normals")
    with pytest.raises(ShapeError, match=r"expected \[N, 3, 32, 64\]"):
        tiny_model(torch.zeros(3, 16, 16))


def test_balance_loss_matches_cv2_formula_and_only_importance_has_gradient():
    c = FloatConfig.from_accel(preset("tiny"))
    torch.manual_seed(4)
    moe = MoE(c).train()
    x = torch.randn(4, 9, c.dim)
    _, routing = moe(x, task=0)
    gates = np.zeros((36, c.num_experts))
    np.put_along_axis(gates, routing["experts"].reshape(36, -1).numpy(),
                      routing["probs"].detach().reshape(36, -1).numpy(), axis=1)
    imp, load = gates.sum(0), (gates > 0).sum(0).astype(float)
    cv2 = lambda v: v.var(ddof=1) / (v.mean() ** 2 + 1e-10)  # noqa: E731
    assert float(moe.balance_loss.detach()) == pytest.approx(cv2(imp) + cv2(load), rel=1e-5)
    moe.balance_loss.backward()
    assert moe.gate[0].w_gate.grad is not None and moe.gate[0].w_gate.grad.abs().sum() > 0
    assert moe.gate[1].w_gate.grad is None
    assert float(cv_squared(torch.tensor([3.0]))) == 0.0


def test_model_balance_loss_sums_moe_layers_in_training():
    c = FloatConfig.from_accel(preset("tiny")).replace(depth=4, moe_layers=(1, 3))
    torch.manual_seed(5)
    m = FloatM3ViT(c).train()
    res = m(torch.rand(2, 3, 32, 64), task=0, head=False)
    expect = sum(float(b.mlp.balance_loss.detach()) for b in m.backbone.blocks if b.is_moe)
    assert float(res.balance_loss.detach()) == pytest.approx(expect) and expect > 0


# ----------------------------------------------------------------------------- configs
def test_vit_s_config_and_forward_with_head_dim_32():
    c = FloatConfig.vit_s()
    assert (c.dim, c.heads, c.head_dim, c.top_k, c.expert_hidden, c.num_experts) == (384, 12, 32, 4, 384, 16)
    assert c.tokens == 30 * 40 + 1 and float_preset("vit-s") == c
    small = c.replace(image_height=32, image_width=48, depth=2, moe_layers=(1,), head_channels=16)
    torch.manual_seed(6)
    m = FloatM3ViT(small).eval()
    with torch.no_grad():
        r = m(torch.rand(1, 3, 32, 48), task="semseg", taps={"l0.scores", "l1.gate_logits"})
    assert set(r.taps) == {"l0.scores", "l1.gate_logits"}
    assert r.taps["l0.scores"].shape == (1, 7, 7, 12) and r.prediction.shape == (1, 40, 32, 48)
    assert r.routing[1]["experts"].shape == (1, 7, 4)


def test_float_config_errors():
    with pytest.raises(ConfigError, match="not divisible by heads"):
        FloatConfig(dim=100, heads=3)
    with pytest.raises(ConfigError, match="top_k 5"):
        FloatConfig(num_experts=4, top_k=5)


# ----------------------------------------------------------------------------- stage order
@pytest.mark.parametrize("name", ["tiny", "edge-moe"])
def test_float_model_matches_float64_stage_order(name, random_image):
    """The PyTorch model (natural attention/softmax, dense-order ops) against an independent
    float64 walk of the accelerator's stage order (per-block scale, cyclic online softmax,
    E[x²]-E[x]² LayerNorm, insertion top-k, expert queues)."""
    cfg = preset(name)
    w = seeded_weights(cfg, 11)
    img = random_image(cfg, 3)
    model = model_from_weights(w, cfg, dtype=torch.float64, heads=False)
    for task in (range(cfg.num_tasks) if name == "tiny" else (1,)):
        with torch.no_grad():
            res = model(torch.from_numpy(img), task=task, taps=True)
        ref_out, ref_taps, ref_routing = run_stage_order(w, cfg, img, task)
        got = taps_to_golden_layout(res.taps)
        assert set(ref_taps) <= set(got)
        for k, v in ref_taps.items():
            np.testing.assert_allclose(got[k][0], v, rtol=0, atol=1e-5, err_msg=k)
        np.testing.assert_allclose(res.features[0].numpy(), ref_out, rtol=0, atol=1e-5)
        for layer, r in ref_routing.items():
            assert np.array_equal(res.routing[layer]["experts"][0].numpy(), r["experts"])
            np.testing.assert_allclose(res.routing[layer]["probs"][0].numpy(), r["probs"], atol=1e-12)


def test_float32_model_close_to_float64(random_image):
    cfg = preset("tiny")
    w = seeded_weights(cfg, 2)
    img = torch.from_numpy(random_image(cfg))
    with torch.no_grad():
        a = model_from_weights(w, cfg, heads=False)(img).features.double()
        b = model_from_weights(w, cfg, dtype=torch.float64, heads=False)(img).features
    assert float((a - b).abs().max()) < 1e-4


# ----------------------------------------------------------------------------- FLOPs (spec §2.1, §5.4.5)
def test_macs_match_spec_numbers():
    from moevit.golden.float.model import macs
    e = macs(float_preset("edge-moe"), 0)
    assert e["backbone"] / 1e9 == pytest.approx(0.78, abs=0.005)
    assert e["head"] / 1e9 == pytest.approx(6.41, abs=0.005)
    pascal = FloatConfig.vit_s(512, 512, tasks=(("semseg", 21),))
    assert macs(pascal, 0)["backbone"] / 1e9 == pytest.approx(31.8, abs=0.05)
    assert macs(pascal, 0)["total"] / 1e9 == pytest.approx(83.8, abs=0.05)
    assert macs(FloatConfig.vit_s(), "semseg")["total"] / 1e9 == pytest.approx(100.5, abs=0.05)
    # MoE with k*Dh = dense hidden costs the dense ViT plus the gate's T*D*E per MoE layer
    c = float_preset("edge-moe")
    dense = macs(c.replace(moe_layers=()), None)["backbone"]
    assert e["backbone"] - dense == len(c.moe_layers) * c.tokens * c.dim * c.num_experts


def test_macs_match_torch_flop_counter():
    """Independent count: torch's FlopCounterMode over a real forward (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode
    from moevit.golden.float.model import macs
    c = FloatConfig.from_accel(preset("tiny")).replace(depth=4, moe_layers=(1, 3))
    torch.manual_seed(0)
    m = FloatM3ViT(c).eval()
    for head in (False, True):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m(torch.rand(1, 3, 32, 64), task=1, head=head, taps=True)  # explicit attention matmuls
        assert fc.get_total_flops() == 2 * macs(c, 1, head=head)["total"]


def test_score_buffer_and_softmax_info_taps_use_the_accelerator_layout(random_image):
    from moevit.golden.attention import score_buffer_rows, score_buffer_valid
    from moevit.golden.report.compare import float_score_buffer
    cfg = preset("tiny")
    m = model_from_weights(seeded_weights(cfg, 1), cfg, dtype=torch.float64, heads=False)
    with torch.no_grad():
        r = m(torch.from_numpy(random_image(cfg)), taps=True)
    buf = r.taps["l0.score_buffer"][0].numpy()
    assert buf.shape == (cfg.query_blocks, cfg.tokens, cfg.attn_parallel, cfg.head_lanes)
    ref, valid = float_score_buffer(r.taps["l0.scores"][0].numpy(), cfg)
    np.testing.assert_array_equal(buf, ref)
    assert np.all(buf[~score_buffer_valid(cfg)] == 0)
    rows, ok = score_buffer_rows(cfg)  # every valid (row, key) appears; e.g. lane 1 of block 1
    assert np.array_equal(buf[1, 0, 1, :cfg.heads], r.taps["l0.scores"][0, rows[1, 0, 1], 0].numpy())
    info = r.taps["l0.softmax_info"][0].numpy()
    assert info.shape == (cfg.tokens, cfg.softmax_info_width) and np.all(info[:, 2 * cfg.heads:] == 0)
    s = r.taps["l0.scores"][0].numpy()
    np.testing.assert_allclose(info[:, 1], s[:, :, 0].max(1))
    np.testing.assert_allclose(info[:, 0], 1 / np.exp(s[:, :, 0] - s[:, :, 0].max(1, keepdims=True)).sum(1))
    from moevit.golden.model import tap_names
    assert set(r.taps) == set(tap_names(cfg))


def test_training_steps_reduce_multitask_loss():
    """Spec §5.3 smoke test: both tasks' losses + 0.01 x balance loss decrease under SGD."""
    from moevit.golden.float.model import BALANCE_LOSS_WEIGHT
    c = FloatConfig.from_accel(preset("tiny")).replace(head_channels=16)
    torch.manual_seed(0)
    m = FloatM3ViT(c).train()
    x = torch.rand(2, 3, 32, 64)
    seg = (x[:, 0] > 0.5).long() + (x[:, 1] > 0.5).long()   # 3 classes, learnable from pixels
    depth = x.mean(1, keepdim=True)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        res = m(x, task="all")
        loss = torch.nn.functional.cross_entropy(res[0].prediction, seg, ignore_index=255) \
            + (res[1].prediction - depth).abs().mean() \
            + BALANCE_LOSS_WEIGHT * (res[0].balance_loss + res[1].balance_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    g0 = m.backbone.blocks[1].mlp.gate[0].w_gate
    g1 = m.backbone.blocks[1].mlp.gate[1].w_gate
    assert not torch.equal(g0, g1)  # each task trains its own router


def test_fused_attention_path_equals_tapped_path(random_image):
    cfg = preset("tiny")
    m = model_from_weights(seeded_weights(cfg, 8), cfg, dtype=torch.float64)
    img = torch.from_numpy(random_image(cfg, 2))
    with torch.no_grad():
        plain, tapped = m(img, task=1), m(img, task=1, taps=True)
    torch.testing.assert_close(plain.features, tapped.features, rtol=0, atol=1e-12)
    torch.testing.assert_close(plain.prediction, tapped.prediction, rtol=0, atol=1e-10)
