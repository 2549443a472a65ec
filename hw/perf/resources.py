"""Resource estimate of the whole accelerator for a config: LUT, FF, DSP48E2, BRAM36, URAM.

Sum of parts, each with its source (``source`` column).  For a config whose RTL units were
synthesised (``make synth-estimate``: ``bench/units.json`` entries carry the config digest;
``make synth-core``: ``bench/top_core.json``, the sequencer, control block and AXI masters)
the parts are those Yosys ``synth_xilinx -family xcup`` figures.  Otherwise (the design
sweep's other tile shapes and P) each part falls back to Yosys figures of its pieces
(``bench/attention.json`` per P; GELU, softmax, divide, rsqrt) or an *estimate* from the
datapath's arithmetic: a 32 x 16-bit product takes two DSP48E2 (27 x 18; the gate's one DSP
plus LUTs, :mod:`moevit.hw.units.dsp_mul`), a 32 x 32 one four; a w-bit adder about w LUTs;
256-bit on-chip buffers in BRAM36 (512 x 72) or URAM (4096 x 72).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError

#: device resources (AMD data sheets DS891; DESIGN.md for the xczu7ev)
PARTS = {
    "xczu7ev-ffvc1156-2-e": dict(LUT=230_400, FF=460_800, DSP48E2=1_728, BRAM36=312, URAM=96),
    "xczu9eg-ffvb1156-2-e": dict(LUT=274_080, FF=548_160, DSP48E2=2_520, BRAM36=912, URAM=0),
}
#: issue 11's limits (fraction of the device) for the zcu104 preset
LIMITS = dict(DSP48E2=1.00, LUT=0.80, memory=0.90)
KEYS = ("LUT", "FF", "DSP48E2", "BRAM36", "URAM")
BENCH = Path(__file__).resolve().parents[2] / "bench"
#: AXI4 master (256-bit, bursts, several outstanding reads) + width converter, per port;
#: the sequencer and AXI-Lite control block — assumptions (typical HLS/SmartConnect-free
#: masters), to be replaced by the top's Yosys figures (issue 11)
AXI_MASTER = dict(LUT=3_000, FF=4_000)
SEQUENCER = dict(LUT=5_000, FF=5_000)
URAM_BITS, URAM_WIDTH, URAM_DEPTH = 288 * 1024, 72, 4096
BRAM_WIDTH, BRAM_DEPTH = 72, 512


@lru_cache(maxsize=4)
def _bench(name: str) -> dict:
    path = BENCH / name
    if not path.exists():
        raise ConfigError(f"{path} is missing: run `make synth-estimate` / scripts/bench_attention.py")
    return json.loads(path.read_text())


def unit_estimate(name: str) -> dict:
    """Yosys figures of one arithmetic unit from bench/units.json."""
    for u in _bench("units.json")["units"]:
        if u["unit"] == name:
            return {k: u[k] for k in KEYS}
    raise ConfigError(f"unit {name!r} has no entry in bench/units.json")


def unit_yosys(name: str, cfg: AcceleratorConfig) -> dict | None:
    """Yosys figures of RTL unit ``name`` synthesised for exactly ``cfg`` (matched by config
    digest in bench/units.json, edge-moe entry or a per-preset entry), or None."""
    for u in _bench("units.json")["units"]:
        if u["unit"] != name:
            continue
        for entry in [u] + [v for v in u.values() if isinstance(v, dict) and "DSP48E2" in v]:
            if entry.get("config_digest") == cfg.digest:
                return {k: entry[k] for k in KEYS}
    return None


def core_yosys(cfg: AcceleratorConfig) -> dict | None:
    """Yosys figures of the top around its units for ``cfg`` (bench/top_core.json) or None."""
    path = BENCH / "top_core.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text()).get("presets", {}).values():
        if row.get("config_digest") == cfg.digest:
            return {k: row[k] for k in KEYS}
    return None


def attention_estimate(cfg: AcceleratorConfig) -> dict:
    per_p = _bench("attention.json")["per_P"]
    key = str(cfg.attn_parallel)
    if key not in per_p or "yosys_zcu104" not in per_p[key]:
        raise ConfigError(f"no Yosys estimate of the attention unit for P={cfg.attn_parallel} "
                          f"in bench/attention.json (have P in {sorted(per_p, key=int)})")
    y = per_p[key]["yosys_zcu104"]
    return {k: y[k] for k in KEYS}


def _part(n: dict, source: str, **kw) -> dict:
    d = {k: 0 for k in KEYS}
    d.update({k: v for k, v in n.items() if k in KEYS})
    d.update(kw)
    d["source"] = source
    return d


def _scaled(unit: str, times: int) -> dict:
    return {k: v * times for k, v in unit_estimate(unit).items()}


def _wide_buffer(width_bits: int, depth: int, kind: str) -> int:
    """Blocks of a ``width_bits`` x ``depth`` memory read one word per clock."""
    w, d = (BRAM_WIDTH, BRAM_DEPTH) if kind == "BRAM36" else (URAM_WIDTH, URAM_DEPTH)
    return math.ceil(width_bits / w) * math.ceil(depth / d)


def activation_buffers(cfg: AcceleratorConfig) -> dict:
    """Bytes of one image's on-chip tensors: x, tmp1..3, hidden, score buffer, softmax info."""
    fm = cfg.formats.fm.width // 8
    act = cfg.tokens * cfg.dim * fm
    return dict(x=act, tmp1=act, tmp2=act, tmp3=act,
                hidden=cfg.tokens * max(cfg.mlp_hidden, cfg.expert_hidden) * fm,
                scores=cfg.query_blocks * cfg.tokens * cfg.attn_parallel * cfg.head_lanes * fm,
                softmax_info=cfg.tokens * cfg.softmax_info_width * fm)


def parts(cfg: AcceleratorConfig) -> list[dict]:
    """Every part of the accelerator with its estimate and source."""
    tin, tout, fb = cfg.linear_tile_in, cfg.linear_tile_out, cfg.feature_block
    wbits = cfg.formats.wt_linear.width
    acc = cfg.formats.fm.width
    out = []
    # linear engine: tin x tout products fm x wt (2 DSP each), tout adder trees of tin inputs,
    # tout accumulators, tout GELU lanes, the FC2 score multiply on 8-wide output blocks
    # (fm x fm, 4 DSP each), ping/pong tile buffers holding the largest matrix
    mine = "yosys (bench/units.json, this config)"
    lin = unit_yosys("linear", cfg)
    if lin is not None:
        out.append(_part(lin, mine, name=f"linear engine {tin}x{tout} (+ patch embedding)"))
    else:
        gelu = unit_estimate("gelu")
        max_w = max(cfg.mlp_hidden, cfg.expert_hidden,
                    cfg.image_channels * cfg.patch_size ** 2) * cfg.dim
        depth = max_w // (tin * tout)
        out.append(_part(dict(DSP48E2=2 * tin * tout + 4 * fb,
                              LUT=tout * (tin - 1) * acc + tout * acc + 2 * fb * acc,
                              FF=tin * tout * (acc + wbits) // 2 + tout * acc),
                         "estimate: 2 DSP per 32x16 product, adder trees, FC2 score multiply "
                         "8 x 4 DSP", name="linear engine"))
        out.append(_part({k: v * tout for k, v in gelu.items()},
                          "yosys (bench/units.json) x lanes", name=f"GELU x {tout}"))
        # ping, pong and the patch embedding's kept bank, one memory deep
        out.append(_part(dict(BRAM36=_wide_buffer(tin * tout * wbits, 3 * depth, "BRAM36")),
                         f"estimate: {tin * tout * wbits}-bit x 3 x {depth} (512 x 72 blocks)",
                         name="weight banks"))
    att = unit_yosys("attention", cfg)
    out.append(_part(att, mine, name=f"attention P={cfg.attn_parallel}") if att is not None
               else _part(attention_estimate(cfg), "yosys (bench/attention.json)",
                          name=f"attention P={cfg.attn_parallel}"))
    ln = unit_yosys("layernorm", cfg)
    if ln is not None:
        out.append(_part(ln, mine, name="layernorm"))
    else:
        # 8 lanes of x*c (32x16), x*t, x*r (32x32), x*g (32x16), mean^2; rsqrt unit
        out.append(_part(dict(DSP48E2=fb * (2 + 4 + 4 + 2) + 4, LUT=fb * 6 * acc,
                              FF=fb * 8 * acc),
                         "estimate: 8 lanes, 4 products each", name="layernorm datapath"))
        out.append(_part(unit_estimate("rsqrt"), "yosys (bench/units.json)",
                         name="layernorm rsqrt"))
    gate = unit_yosys("moe_gate", cfg)
    E = cfg.num_experts
    if gate is not None:
        out.append(_part(gate, mine, name="moe gate"))
    else:
        # one 8-wide block per clock against all E experts (8E products, 32x16: one DSP +
        # ~140 LUT each), online softmax + exp over the experts, the trunc0 divide
        out.append(_part(dict(DSP48E2=fb * E, LUT=E * fb * 140 + E * acc, FF=E * fb * 100),
                         "estimate: 8 x E products per clock", name="gate logits"))
        for u in ("softmax", "div"):
            out.append(_part(unit_estimate(u), "yosys (bench/units.json)", name=f"gate {u}"))
    gather = next((u for u in _bench("units.json")["units"] if u["unit"] == "patch_gather"),
                  None)
    if gather is not None:
        out.append(_part({k: gather[k] for k in KEYS}, "yosys (bench/units.json)",
                         name="patch gather (im2col)"))
    res = unit_yosys("residual", cfg)
    out.append(_part(res, mine, name="residual") if res is not None else
               _part(dict(LUT=fb * acc, FF=fb * acc), "estimate: 8 x 32-bit adders",
                     name="residual add"))
    core = core_yosys(cfg)
    if core is not None:
        out.append(_part(core, "yosys (bench/top_core.json, this config)",
                         name=f"sequencer + control + AXI masters x {cfg.mem_ports} + K/V "
                              "replay"))
    else:
        # the K/V replay buffer: tokens x feature blocks beats of axi_width bits, in URAM
        beats = cfg.tokens * cfg.feature_blocks
        out.append(_part(dict(URAM=_wide_buffer(cfg.axi_width, beats, "URAM"), LUT=650, FF=50),
                         "estimate: one axi_width x tokens*feature_blocks buffer in URAM "
                         "(Yosys, edge-moe: 4 URAM, 624 LUT)", name="K/V replay"))
        out.append(_part({k: v * cfg.mem_ports for k, v in AXI_MASTER.items()},
                         "assumption per AXI master", name=f"AXI masters x {cfg.mem_ports}"))
        out.append(_part(SEQUENCER, "assumption", name="sequencer + control"))
    if cfg.activations_on_chip:
        beat = cfg.axi_width
        uram = sum(_wide_buffer(beat, -(-b * 8 // beat), "URAM")
                   for b in activation_buffers(cfg).values())
        out.append(_part(dict(URAM=uram), "estimate: 256-bit buffers in URAM (4096 x 72)",
                         name="activations on chip"))
    dev = PARTS.get(cfg.fpga_part)
    if dev is not None and dev["URAM"] == 0:      # e.g. the ZCU102: no URAM to map to
        for p in out:
            if p["URAM"]:
                p["BRAM36"] += 8 * p["URAM"]       # 288 Kb = 8 x 36 Kb
                p["URAM"] = 0
                p["source"] += " (URAM counted as 8 BRAM36 each: none on this part)"
    return out


def estimate(cfg: AcceleratorConfig) -> dict:
    """Totals, device utilisation and whether issue 11's limits hold (on cfg.fpga_part)."""
    rows = parts(cfg)
    total = {k: sum(r[k] for r in rows) for k in KEYS}
    dev = PARTS.get(cfg.fpga_part)
    res = dict(total=total, parts=rows, part=cfg.fpga_part)
    if dev is None:
        return res
    util = {k: total[k] / dev[k] if dev[k] else (0.0 if total[k] == 0 else math.inf)
            for k in KEYS}
    mem_cap = dev["BRAM36"] * 36 + dev["URAM"] * 288  # kbit
    mem_used = total["BRAM36"] * 36 + total["URAM"] * 288
    util["memory"] = mem_used / mem_cap
    fits = dict(DSP48E2=util["DSP48E2"] <= LIMITS["DSP48E2"], LUT=util["LUT"] <= LIMITS["LUT"],
                memory=util["memory"] <= LIMITS["memory"] and util["BRAM36"] <= 1
                and util["URAM"] <= 1)
    res.update(device=dev, utilisation={k: round(v, 4) for k, v in util.items()}, fits=fits,
               fits_all=all(fits.values()))
    return res
