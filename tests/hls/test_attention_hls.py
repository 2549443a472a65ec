"""HLS C++ attention (hw/hls/attention.cpp), compiled with g++ against hls4ml's ap_fixed
headers, bit-exact with the golden model."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.golden import attention as ga
from moevit.golden.exp import TABLES, hls_exp
from moevit.hw.hls_config import config_defines, exp_tables, write_config_header

pytestmark = pytest.mark.hls


def test_generated_exp_tables_equal_independent_decimal_tables():
    # hls_config evaluates the closed forms at 80 digits with a boundary-margin check;
    # golden/exp.py does it separately at 60 digits
    t = exp_tables()
    for name, ref in TABLES.items():
        assert np.array_equal(np.array(t[name], dtype=np.uint64), ref), name
    assert t["T1"][0] == 1 << 27 and t["T4h"][3] == 9 and t["TL"][15] == 225  # e^0, k^2


def test_config_header_carries_the_config(tmp_path):
    cfg = preset("zcu104").replace(attn_parallel=8)
    d = write_config_header(cfg, tmp_path)
    text = (d / "moevit_config.h").read_text()
    for line in ("#define NUM_TOKENS 129", "#define ATTN_PARALLEL 8", "#define QUERY_BLOCKS 17",
                 "#define ATTN_SCALE_SHIFT 3", "#define FM_W 32", "#define FM_I 10",
                 '#define MOEVIT_FPGA_PART "xczu7ev-ffvc1156-2-e"', "#define MOEVIT_CLOCK_MHZ 300"):
        assert line in text
    assert config_defines(preset("tiny"))[4] == "#define NUM_TOKENS 9"


def test_cxx_exp_matches_golden_exp():
    from moevit.hw.hls_attention import hls_exp_cxx
    rng = np.random.default_rng(7)
    grid = np.arange(-(16 << 22) - 4096, 7 << 22, 61)  # every region incl. both saturations
    # saturation/overflow edges with neighbours: +16, 15.94239 (range check), ln 512, -16
    edges = np.concatenate([e + np.arange(-2, 3) for e in (
        16 << 22, (15 << 22) + 0x78A014 // 2, int(np.ceil(9 * np.log(2) * (1 << 22))),
        -(16 << 22), 0)])
    x = np.concatenate([grid, rng.integers(-(1 << 31), 1 << 31, 500_000), edges,
                        [0, -1, 1, -(1 << 31), (1 << 31) - 1, -(16 << 22), -(16 << 22) - 1]])
    got = hls_exp_cxx(x, preset("tiny"))
    want = hls_exp(x)
    assert np.array_equal(got, want), f"{(got != want).sum()} mismatches of {x.size}"
    assert got[np.where(x == 0)[0][0]] == 1 << 22
    sat = (1 << 31) - 1
    for e in (16 << 22, (16 << 22) - 1, (15 << 22) + 0x78A014 // 2):  # saturated, not wrapped
        assert got[np.where(x == e)[0][0]] == sat, e


@pytest.mark.slow
def test_cxx_exp_exhaustive_over_the_datapath_range():
    """Every fm_t input in [-16 - 2^-22, 1] (71.3 M values), in chunks."""
    from moevit.hw.hls_attention import hls_exp_cxx
    cfg = preset("tiny")
    lo, hi, step = -(16 << 22) - 1, (1 << 22) + 1, 1 << 22
    bad = 0
    for a in range(lo, hi, step):
        x = np.arange(a, min(a + step, hi), dtype=np.int64)
        bad += int((hls_exp_cxx(x, cfg) != hls_exp(x)).sum())
    assert bad == 0


@pytest.mark.parametrize("P", [1, 2, 4, 8])
def test_hls_attention_tiny_random_bit_exact(P):
    from moevit.hw.hls_attention import run_attention
    cfg = preset("tiny").replace(attn_parallel=P)
    rng = np.random.default_rng(100 + P)
    T, D = cfg.tokens, cfg.dim
    q, k, v = (rng.integers(-3 << 22, 3 << 22, size=(T, D)) for _ in range(3))
    res = run_attention(q, k, v, cfg)
    sb, info, av = ga.attention_buffers(q, k, v, cfg)
    # junk slots are zeroed by the kernel, so the whole buffer compares
    assert np.array_equal(res.score_buffer, sb)
    assert np.array_equal(res.softmax_info, info)
    assert np.array_equal(res.av, av)


@pytest.fixture(scope="module")
def edge_taps():
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    cfg = preset("edge-moe")
    names = [f"l{L}.{n}" for L in (0, 1) for n in ("q", "k", "v", "score_buffer",
                                                    "softmax_info", "av")]
    r = GoldenModel(cfg, seeded_weights(cfg, 0)).run(synthetic_image(cfg, 0), taps=set(names))
    return cfg, {n: r.taps[n][0] for n in names}


@pytest.mark.parametrize("layer", [0, 1])
def test_hls_attention_edge_moe_layer_matches_golden_taps(edge_taps, layer):
    from moevit.hw.hls_attention import run_attention
    cfg, taps = edge_taps
    t = {n.split(".")[1]: a for n, a in taps.items() if n.startswith(f"l{layer}.")}
    res = run_attention(t["q"], t["k"], t["v"], cfg)
    valid = ga.score_buffer_valid(cfg)
    assert np.array_equal(res.score_buffer[valid], t["score_buffer"][valid])
    assert np.array_equal(res.softmax_info, t["softmax_info"])
    assert np.array_equal(res.av, t["av"])


def test_hls_sources_use_no_vendor_exp():
    from moevit.hw.hls_config import HLS_DIR
    for f in list(HLS_DIR.glob("*.cpp")) + list(HLS_DIR.glob("*.h")):
        text = f.read_text()
        assert "hls::exp(" not in text and "hls_math.h" not in text, f.name


def test_vitis_tcl_targets_the_config_part_and_clock(tmp_path):
    from moevit.hw.hls_config import write_hls_project
    tcl = write_hls_project(preset("zcu104"), tmp_path).read_text()
    assert "set_part {xczu7ev-ffvc1156-2-e}" in tcl
    assert "create_clock -period 3.3333" in tcl  # 300 MHz
    assert "set_top moevit_attention" in tcl and "attention.cpp" in tcl
    assert (tmp_path / "moevit_config.h").exists() and (tmp_path / "moevit_exp_tables.h").exists()
