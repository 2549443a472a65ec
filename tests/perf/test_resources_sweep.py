"""Resource estimate and the design sweep that chose the zcu104 preset."""
import json
from pathlib import Path

import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.perf import resources, sweep

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_preset_parts_are_its_own_units_yosys_figures():
    """The zcu104 preset's linear engine, attention, LayerNorm and gate parts are the Yosys
    figures of those RTL units built for exactly this config (bench/units.json)."""
    cfg = preset("zcu104")
    units = {u["unit"]: u for u in json.loads((BENCH / "units.json").read_text())["units"]}
    names = {"linear": "linear engine", "attention": "attention", "layernorm": "layernorm",
             "moe_gate": "moe gate"}
    got = {p["name"]: p for p in resources.parts(cfg)}
    for unit, part in names.items():
        rec = units[unit]["zcu104"]
        assert rec["config_digest"] == cfg.digest
        (row,) = [r for n, r in got.items() if n.startswith(part)]
        assert row["DSP48E2"] == rec["DSP48E2"] and row["LUT"] == rec["LUT"], unit
        assert row["source"].startswith("yosys")


def test_other_designs_fall_back_to_recorded_pieces_and_estimates():
    """A design without its own synthesis: attention from bench/attention.json per P, the
    linear engine from the arithmetic (two DSP48E2 per 32 x 16 product)."""
    cfg = preset("zcu104").replace(attn_parallel=4)
    rec = json.loads((BENCH / "attention.json").read_text())["per_P"]["4"]["yosys_zcu104"]
    part = next(p for p in resources.parts(cfg) if p["name"].startswith("attention"))
    assert part["DSP48E2"] == rec["DSP48E2"] and part["LUT"] == rec["LUT"]
    for tin, tout in ((16, 16), (32, 32)):
        c = preset("zcu104").replace(linear_tile_in=tin, linear_tile_out=tout)
        eng = next(p for p in resources.parts(c) if p["name"] == "linear engine")
        assert eng["DSP48E2"] == 2 * tin * tout + 4 * c.feature_block


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
