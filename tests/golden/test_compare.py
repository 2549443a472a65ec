"""``moevit compare`` and the float <-> fixed bridge: statistics, routing agreement, the full
report on seeded weights, and an exported folder loaded into both models."""

import json

import numpy as np
import pytest
import torch

from moevit.config import preset
from moevit.golden.report import compare as cmp
from moevit.golden import weight_io as wio
from moevit.golden.fixed import to_float
from moevit.golden.weights import seeded_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stage_stats_properties():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 7))
    s = cmp.stage_stats(ref, ref)
    assert s["max_abs"] == 0 and s["rms"] == 0 and s["cosine"] == pytest.approx(1.0)
    test = ref.copy()
    test[3, 4] += 0.5
    test[1, 1] -= 0.25
    s = cmp.stage_stats(ref, test)
    assert s["worst_index"] == [3, 4] and s["max_abs"] == pytest.approx(0.5)
    assert s["mean_abs"] == pytest.approx(0.75 / 35) and s["rms"] == pytest.approx(np.sqrt(0.3125 / 35))
    assert s["fixed_at_worst"] - s["float_at_worst"] == pytest.approx(0.5)
    assert cmp.stage_stats(ref, -ref)["cosine"] == pytest.approx(-1.0)
    mask = np.ones_like(ref, dtype=bool)
    mask[3, 4] = False  # masked-out junk is ignored
    s = cmp.stage_stats(ref, test, mask)
    assert s["worst_index"] == [1, 1] and s["count"] == 34


def test_routing_agreement_counts():
    f = {1: {"experts": np.array([[[0, 1], [2, 3], [1, 0], [3, 2]]])}}
    x = {1: {"experts": np.array([[[0, 1], [2, 1], [0, 1], [3, 2]]])}}
    (r,) = cmp.routing_agreement(f, x, 4)
    assert r["topk_set_agreement"] == 0.75 and r["topk_order_agreement"] == 0.5
    assert r["top1_agreement"] == 0.75 and r["disagreeing_tokens"] == [1]
    assert r["top1_disagreeing_tokens"] == [2]  # token 2: same set, other expert first
    assert r["tokens_per_expert_float"] == [2, 2, 2, 2] and r["tokens_per_expert_fixed"] == [2, 3, 2, 1]


def test_compare_tiny_writes_report(tmp_path, random_image):
    cfg = preset("tiny")
    s = cmp.compare(cfg, seeded_weights(cfg, 0), random_image(cfg), 1, tmp_path, source="seed 0")
    for name in ("stages.json", "routing.json", "summary.json", "report.md",
                 "error_per_layer.png", "histograms.png", "routing.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    stages = json.loads((tmp_path / "stages.json").read_text())
    from moevit.golden.model import tap_names
    assert {r["stage"] for r in stages} == set(tap_names(cfg)) | {"output"}
    order = [r["stage"] for r in stages]
    assert order[0] == "patch_embed" and order[-1] == "output"  # pipeline order
    md = (tmp_path / "report.md").read_text()
    table = md[md.index("## Every stage"):]
    rows = [ln.split("|")[1].strip() for ln in table.splitlines()
            if ln.startswith("| ") and not ln.startswith("| stage")]
    assert rows == order
    assert md.count("ULP: one unit in the last place") == 1
    assert "tokens whose top-1 differs" in md
    f = s["final_output"]
    assert f["cosine"] > 0.999 and f["max_abs"] < 0.1
    # with the weight flooring removed, only datapath rounding is left: much smaller
    assert s["final_output_vs_quantised_weights"]["max_abs"] < f["max_abs"] / 3
    routing = json.loads((tmp_path / "routing.json").read_text())
    assert [r["layer"] for r in routing] == list(cfg.moe_layers)
    assert sum(routing[0]["tokens_per_expert_fixed"]) == cfg.tokens * cfg.top_k
    md = (tmp_path / "report.md").read_text()
    assert "![routing](routing.png)" in md and "| l1.gate_logits |" in md
    assert png_is_image(tmp_path / "routing.png")


def png_is_image(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_rejects_bad_task(tmp_path, random_image):
    from moevit.errors import ConfigError
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match=r"^task 2 is out of range: this model has 2 tasks "
                                          r"\(valid: 0\.\.1 = \['semseg', 'depth'\]\)$"):
        cmp.compare(cfg, seeded_weights(cfg, 0), random_image(cfg), 2, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_compare_seeded_synthetic(tmp_path, capsys):
    from moevit.cli import main
    rc = main(["compare", "--preset", "tiny", "--seed", "3", "--synthetic", "--task", "depth",
               "--out", str(tmp_path / "r"), "--no-plots"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "final output vs float" in out and "layer 1: top-k agreement" in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["task"] == 1 and s["weights"] == "seeded_weights(seed=3)"


@pytest.mark.parametrize("name", ["tiny", "edge-moe"])
def test_exported_folder_loads_into_both_models(name, tmp_path, random_image):
    """Float model -> exporter -> folder -> (float model, golden model): no hand edits; the
    routing decisions are compared and reported, and must mostly agree."""
    from moevit.golden.float.checkpoint import export_folder, import_folder, model_from_weights
    from moevit.golden.model import GoldenModel
    cfg = preset(name)
    src = model_from_weights(seeded_weights(cfg, 7), cfg)
    with torch.no_grad():
        src.backbone.cls_token.normal_(0, 0.2)  # a real cls token, folded by the exporter
    export_folder(src, tmp_path / "w", cfg)
    if name == "edge-moe":  # byte sizes of the Edge-MoE inventory (m3vit spec §4.2)
        sizes = {p.name.replace(".float32.bin", ""): p.stat().st_size for p in (tmp_path / "w").iterdir()}
        assert sizes["l1_htoh4_weight"] == sizes["l11_h4toh_weight"] == 4_718_592
        assert sizes["l0_qkv_weight"] == 442_368 and sizes["pos_embed"] == 99_072
        assert sizes["l3_w_gate_T_task1"] == 12_288 and sizes["l0_fc1_bias"] == 3_072
        counts = {n: sum(v == n for v in sizes.values()) for n in (768, 589_824, 12_288)}
        assert counts == {768: 67, 589_824: 13, 12_288: 18}
    w = wio.load_folder(tmp_path / "w", cfg)
    img = cmp.prepare_image(random_image(cfg, 4), cfg)
    with torch.no_grad():
        fres = import_folder(tmp_path / "w", cfg, dtype=torch.float64)(torch.from_numpy(img), task=0,
                                                                       head=False)
        sres = src.double()(torch.from_numpy(img), task=0, head=False)
    torch.testing.assert_close(fres.features, sres.features, rtol=0, atol=1e-4)
    gres = GoldenModel(cfg, w).run(img, task=0)
    f_routing = {k: {kk: vv.numpy() for kk, vv in v.items()} for k, v in fres.routing.items()}
    agree = cmp.routing_agreement(f_routing, gres.routing, cfg.num_experts)
    print(f"{name}: float vs fixed top-k agreement per MoE layer:",
          {r["layer"]: r["topk_set_agreement"] for r in agree})
    assert all(r["topk_set_agreement"] >= 0.95 for r in agree)
    out = to_float(gres.output[0], cfg.formats.fm)
    assert np.mean((out - fres.features[0].numpy()) ** 2) < 0.1  # the Edge-MoE acceptance bound


def test_cli_compare_weights_folder_and_png(tmp_path):
    from PIL import Image
    from moevit.cli import main
    cfg = preset("tiny")
    wio.save_folder(seeded_weights(cfg, 5), tmp_path / "w", cfg)
    rgb = (np.random.default_rng(0).integers(0, 256, (cfg.image_height, cfg.image_width, 3))).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    rc = main(["compare", "--preset", "tiny", "--weights", str(tmp_path / "w"), "--image",
               str(tmp_path / "img.png"), "--task", "0", "--out", str(tmp_path / "r")])
    assert rc == 0 and (tmp_path / "r" / "histograms.png").exists()
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["weights"] == f"folder {tmp_path / 'w'}" and s["final_output"]["cosine"] > 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
def test_float_model_cuda_matches_cpu(random_image):
    from moevit.golden.float.checkpoint import model_from_weights
    cfg = preset("edge-moe")
    w = seeded_weights(cfg, 0)
    img = torch.from_numpy(cmp.prepare_image(random_image(cfg), cfg))
    with torch.no_grad():
        cpu = model_from_weights(w, cfg, dtype=torch.float64)(img, task=1)
        gpu = model_from_weights(w, cfg, dtype=torch.float64, device="cuda")(img, task=1)
    torch.testing.assert_close(gpu.features.cpu(), cpu.features, rtol=0, atol=1e-9)
    for layer, r in cpu.routing.items():
        assert torch.equal(gpu.routing[layer]["experts"].cpu(), r["experts"])
