"""Weight conversion: float model <-> Weights <-> Edge-MoE folder, M³ViT sharded checkpoints,
range checks.  Every file is written by the test itself under tmp_path."""

import numpy as np
import pytest
import torch

from moevit.config import preset
from moevit.errors import ConfigError, FormatRangeError, WeightFileError
from moevit.golden.float import checkpoint as ck
from moevit.golden.float.model import FloatConfig, FloatM3ViT
from moevit.golden.weights import seeded_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cfg():
    return preset("tiny")


def _trained_like(cfg, seed=0):
    """A float model with nonzero cls token and non-trivial experts (as after training)."""
    torch.manual_seed(seed)
    m = FloatM3ViT(cfg).eval()
    with torch.no_grad():
        m.backbone.cls_token.normal_(0, 0.3)
        for b in m.backbone.blocks:
            if b.is_moe:
                b.mlp.experts.htoh4.weight.normal_(0, 0.2)
                b.mlp.experts.h4toh.weight.normal_(0, 0.2)
    return m


def test_weights_to_model_to_weights_is_exact(cfg):
    w = seeded_weights(cfg, 4)
    w2 = ck.to_weights(ck.model_from_weights(w, cfg), cfg)
    for name, a in w.items():
        assert np.array_equal(a, getattr(w2, name)), name


def test_export_folds_cls_and_keeps_function(cfg, random_image):
    m = _trained_like(cfg)
    w = ck.to_weights(m, cfg)
    bb = m.backbone
    np.testing.assert_array_equal(w.pos_embed[0], (bb.pos_embed[0, 0] + bb.cls_token[0, 0]).detach().numpy())
    np.testing.assert_array_equal(w.pos_embed[1:], bb.pos_embed[0, 1:].detach().numpy())
    # gates transposed, qkv split
    assert np.array_equal(w.moe_w_gate_per_task[1, 0], bb.blocks[1].mlp.gate[1].w_gate.detach().numpy().T)
    assert np.array_equal(w.attn_weights[0, 1], bb.blocks[0].attn.qkv.weight[cfg.dim:2 * cfg.dim].detach().numpy())
    m2 = ck.model_from_weights(w, cfg)
    img = torch.from_numpy(random_image(cfg))
    with torch.no_grad():
        for t in (0, 1):
            torch.testing.assert_close(m2(img, task=t, head=False).features,
                                       m(img, task=t, head=False).features, rtol=0, atol=1e-5)


def test_incompatible_config_is_named():
    m = FloatM3ViT(FloatConfig.from_accel(preset("tiny")).replace(dim=48, heads=3, mlp_hidden=96))
    with pytest.raises(ConfigError, match=r"dim: float model 48 vs tiny 32"):
        ck.to_weights(m, preset("tiny"))


def test_range_check_names_tensor_count_and_worst_value(cfg):
    w = seeded_weights(cfg, 0)
    w.attn_bias[1, 2, 5] = 70.0      # wt_attn_bias is ap_fixed<16,7>: [-64, 64)
    w.moe_weights_l1[0, 3, 1, 2] = -2.5
    w.moe_weights_l1[0, 3, 1, 3] = 2.1
    with pytest.raises(FormatRangeError) as exc:
        ck.check_ranges(w, cfg)
    msg = str(exc.value)
    assert "2 tensors" in msg
    assert "attn_bias: 1 of" in msg and "worst 70 at index (1, 2, 5)" in msg
    assert "moe_weights_l1: 2 of" in msg and "worst -2.5" in msg
    assert ck.range_problems(seeded_weights(cfg, 0), cfg) == []


def test_range_check_boundary_follows_floor_quantisation(cfg):
    w = seeded_weights(cfg, 0)
    fmt = cfg.formats.wt_linear
    w.attn_weights[0, 0, 0, 0] = fmt.max + 0.5 * fmt.ulp  # floors onto raw_max: fits
    assert ck.range_problems(w, cfg) == []
    w.attn_weights[0, 0, 0, 0] = fmt.max + fmt.ulp       # floors to raw_max+1: wraps
    assert len(ck.range_problems(w, cfg)) == 1


# ----------------------------------------------------------------------------- M³ViT checkpoints
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_sharded_checkpoint_round_trip(cfg, tmp_path, world_size):
    m = _trained_like(cfg, 1)
    files = ck.save_m3vit_checkpoint(m, tmp_path / "ckpt", world_size)
    assert [f.name for f in files] == [f"{r}.pth" for r in range(world_size)]
    raw = torch.load(files[-1], weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    if world_size > 1:  # other ranks hold only their expert slice
        assert all(".mlp.experts." in k for k in raw)
        assert raw["module.backbone.blocks.1.mlp.experts.htoh4.weight"].shape[0] == cfg.num_experts // world_size
    fresh = FloatM3ViT(cfg)
    rep = ck.load_m3vit_checkpoint(fresh, tmp_path / "ckpt")
    assert rep.missing == [] and rep.unexpected == [] and rep.shards == world_size
    for k, v in m.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_single_gate_backbone_checkpoint_copies_gate_and_drops_classifier(cfg, tmp_path):
    m = _trained_like(cfg, 2)
    d = tmp_path / "pre"
    ck.save_m3vit_checkpoint(m, d, 2, single_gate=True)
    # turn it into a bare ImageNet backbone: no 'backbone.' prefix, classifier head + final norm
    for f in sorted(d.iterdir()):
        sd = torch.load(f, weights_only=True)
        sd = {k.replace("module.backbone.", "module."): v for k, v in sd.items()
              if not k.startswith("module.decoders.")}
        if f.name == "0.pth":
            sd["module.head.weight"] = torch.zeros(1000, cfg.dim)
            sd["module.norm.weight"] = torch.ones(cfg.dim)
        torch.save({"state_dict": sd, "epoch": 3}, f)
    fresh = FloatM3ViT(cfg)
    rep = ck.load_m3vit_checkpoint(fresh, d)
    assert sorted(rep.dropped) == ["module.head.weight", "module.norm.weight"]
    assert all(k.startswith("decoders.") for k in rep.missing) and rep.unexpected == []
    g = m.backbone.blocks[1].mlp.gate[0].w_gate
    for t in range(cfg.num_tasks):
        assert torch.equal(fresh.backbone.blocks[1].mlp.gate[t].w_gate, g)
    assert torch.equal(fresh.backbone.blocks[1].mlp.experts.h4toh.weight,
                       m.backbone.blocks[1].mlp.experts.h4toh.weight)


def test_missing_rank_file_is_reported(cfg, tmp_path):
    ck.save_m3vit_checkpoint(_trained_like(cfg), tmp_path / "c", 2)
    (tmp_path / "c" / "1.pth").unlink()
    with pytest.raises(WeightFileError, match=r"htoh4.weight: checkpoint \(2, 32, 32\) vs model \(4, 32, 32\)"):
        ck.load_m3vit_checkpoint(FloatM3ViT(cfg), tmp_path / "c")
    with pytest.raises(WeightFileError, match="no per-rank files"):
        ck.load_m3vit_checkpoint(FloatM3ViT(cfg), tmp_path)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="cannot read checkpoint shard"):
        ck.load_m3vit_checkpoint(FloatM3ViT(cfg), tmp_path / "bad.pth")


# ----------------------------------------------------------------------------- Edge-MoE folders
def test_folder_round_trip_float_model(cfg, tmp_path, random_image):
    m = _trained_like(cfg, 3)
    w = ck.export_folder(m, tmp_path / "w", cfg)
    names = {p.name for p in (tmp_path / "w").iterdir()}
    assert "pos_embed.float32.bin" in names and "l1_w_gate_T_task1.float32.bin" in names
    m2 = ck.import_folder(tmp_path / "w", cfg)
    w2 = ck.to_weights(m2, cfg)
    for name, a in w.items():
        assert np.array_equal(a, getattr(w2, name)), name
    img = torch.from_numpy(random_image(cfg, 1))
    with torch.no_grad():
        torch.testing.assert_close(m2(img, task=1, head=False).features,
                                   m(img, task=1, head=False).features, rtol=0, atol=1e-5)


def test_export_refuses_out_of_range_before_writing(cfg, tmp_path):
    m = _trained_like(cfg)
    with torch.no_grad():
        m.backbone.blocks[0].norm2.weight[3] = 20.0
    with pytest.raises(FormatRangeError, match=r"norm_weights: 1 of .* worst 20 at index \(0, 1, 3\)"):
        ck.export_folder(m, tmp_path / "w", cfg)
    assert not (tmp_path / "w").exists()
