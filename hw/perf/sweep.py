"""Design-space sweep for a part: linear tile (in x out) x attention lanes P -> modelled
ms/image at batch 1, images/s batched, DSP/LUT/memory estimate, and which targets hold.

Issue 11's targets for the ``zcu104`` preset: <= 10 ms/image at batch 1, >= 100 images/s
batched, DSP <= 100 %, LUT <= 80 %, BRAM + URAM <= 90 % of the xczu7ev.
"""

from __future__ import annotations

import itertools

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.units import linear_schedule as LS
from moevit.hw.perf import cycle_model, resources

TARGET_MS = 10.0
TARGET_IPS = 100.0
TILES = (8, 16, 24, 32, 48, 64)
PS = (1, 2, 4, 8)


def candidates(cfg: AcceleratorConfig, tiles=TILES, ps=PS):
    """Every valid (tile_in, tile_out, P) variant of ``cfg`` that the linear engine (with its
    pixel mode for the patch embedding) can be built with (tiles are whole 256-bit weight
    beats)."""
    for tin, tout, p in itertools.product(tiles, tiles, ps):
        try:
            c = cfg.replace(linear_tile_in=tin, linear_tile_out=tout, attn_parallel=p)
            LS.geometry(c)
        except ConfigError:
            continue
        yield c


def evaluate(cfg: AcceleratorConfig, batch: int = 16, routing="uniform") -> dict:
    one = cycle_model.run(cfg, 1, routing)
    many = cycle_model.run(cfg, batch, routing)
    est = resources.estimate(cfg)
    util = est.get("utilisation", {})
    row = dict(tile_in=cfg.linear_tile_in, tile_out=cfg.linear_tile_out, P=cfg.attn_parallel,
               ms_batch1=round(one.ms_per_image, 3), batch=batch,
               images_per_s_batched=round(many.images_per_s, 1),
               DSP=est["total"]["DSP48E2"], LUT=est["total"]["LUT"],
               BRAM36=est["total"]["BRAM36"], URAM=est["total"]["URAM"],
               dsp_util=util.get("DSP48E2"), lut_util=util.get("LUT"),
               mem_util=util.get("memory"), fits=est.get("fits_all"))
    row["meets_latency"] = row["ms_batch1"] <= TARGET_MS
    row["meets_throughput"] = row["images_per_s_batched"] >= TARGET_IPS
    row["meets_all"] = bool(row["fits"] and row["meets_latency"] and row["meets_throughput"])
    return row


def sweep(cfg: AcceleratorConfig, batch: int = 16, tiles=TILES, ps=PS) -> list[dict]:
    rows = []
    for c in candidates(cfg, tiles, ps):
        try:
            rows.append(evaluate(c, batch))
        except ConfigError:  # no resource figure for this P
            continue
    return sorted(rows, key=lambda r: (not r["fits"], r["ms_batch1"]))


def best(rows: list[dict]) -> dict:
    """The fastest design (batch 1) within the resource limits."""
    fitting = [r for r in rows if r["fits"]]
    if not fitting:
        raise ConfigError("no design in the sweep fits the part's resource limits")
    return min(fitting, key=lambda r: (r["ms_batch1"], r["DSP"]))


def markdown(rows: list[dict], cfg: AcceleratorConfig) -> str:
    head = ("| tile in x out | P | ms/image (b=1) | images/s (b={b}) | DSP | DSP % | LUT % | "
            "BRAM+URAM % | fits | targets |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        tg = ("both" if r["meets_latency"] and r["meets_throughput"] else
              "latency" if r["meets_latency"] else "throughput" if r["meets_throughput"]
              else "none")
        lines.append(f"| {r['tile_in']} x {r['tile_out']} | {r['P']} | {r['ms_batch1']:.2f} | "
                     f"{r['images_per_s_batched']:.1f} | {r['DSP']} | {100 * r['dsp_util']:.0f} | "
                     f"{100 * r['lut_util']:.0f} | {100 * r['mem_util']:.0f} | "
                     f"{'yes' if r['fits'] else 'no'} | {tg} |")
    b = rows[0]["batch"] if rows else "?"
    return (f"Design space on {cfg.fpga_part} at {cfg.clock_mhz:.0f} MHz (model + estimate; "
            f"targets <= {TARGET_MS} ms and >= {TARGET_IPS} images/s)\n\n"
            + head.format(b=b) + "\n".join(lines) + "\n")
