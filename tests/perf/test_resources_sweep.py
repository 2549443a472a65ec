"""Resource estimate and the design sweep that chose the zcu104 preset."""
import json
from pathlib import Path

import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.perf import resources, sweep

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_attention_part_is_the_recorded_yosys_figure():
    cfg = preset("zcu104")
    rec = json.loads((BENCH / "attention.json").read_text())["per_P"]["8"]["yosys_zcu104"]
    part = next(p for p in resources.parts(cfg) if p["name"].startswith("attention"))
    assert part["DSP48E2"] == rec["DSP48E2"] and part["LUT"] == rec["LUT"]


def test_linear_engine_dsp_is_two_per_product():
    for tin, tout in ((16, 16), (32, 16)):
        cfg = preset("zcu104").replace(linear_tile_in=tin, linear_tile_out=tout)
        eng = next(p for p in resources.parts(cfg) if p["name"] == "linear engine")
        assert eng["DSP48E2"] == 2 * tin * tout + 4 * cfg.feature_block


def test_unsupported_p_is_refused_before_any_estimate():
    with pytest.raises(ConfigError, match="attn_parallel 16 is not supported"):
        resources.estimate(preset("zcu104").replace(attn_parallel=16))


def test_zcu104_preset_fits_and_is_the_sweeps_fastest_fitting_design():
    cfg = preset("zcu104")
    est = resources.estimate(cfg)
    assert est["fits_all"], est["utilisation"]
    rows = sweep.sweep(cfg, batch=4)
    best = sweep.best(rows)
    fastest = best["ms_batch1"]
    mine = next(r for r in rows if (r["tile_in"], r["tile_out"], r["P"]) ==
                (cfg.linear_tile_in, cfg.linear_tile_out, cfg.attn_parallel))
    # the preset is within 0.1 % of the fastest fitting design (ties differ by a tail cycle)
    assert mine["fits"] and mine["ms_batch1"] <= fastest * 1.001
    # everything faster than the preset does not fit
    assert all(not r["fits"] for r in rows if r["ms_batch1"] < fastest)
