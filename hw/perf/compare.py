"""Latency and energy per image: CPU (measured), GPU (measured where CUDA is visible or from
``scripts/gpu_bench.py``'s JSON), FPGA (cycle model + power assumption), published anchors.

Every row carries how its latency and its power were obtained (``method``: measured / tool
estimate / model / assumption / published), never a figure without one.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from moevit.config import preset
from moevit.hw.perf import cycle_model

#: Edge-MoE's reported board power and the secondary table (spec §11) [secondary]
EDGE_MOE_BOARD_W = 14.54
PUBLISHED = [
    dict(platform="CPU (Edge-MoE paper)", device="CPU of the Edge-MoE paper", precision="fp32",
         batch=1, ms_per_image=169.72, watts=14.53),
    dict(platform="GPU (Edge-MoE paper)", device="NVIDIA A6000", precision="fp32", batch=1,
         ms_per_image=13.73, watts=82.24),
    dict(platform="FPGA (Edge-MoE paper)", device="ZCU102, 300 MHz", precision="fixed",
         batch=1, ms_per_image=34.64, watts=14.54),
]
PUBLISHED_SOURCE = ("Edge-MoE (ICCAD 2023) results via a secondary survey note, spec §11 "
                    "[secondary]; consistent with the abstract's 2.24x / 4.90x")
GPU_NOT_MEASURED = "not measured here (no CUDA device visible; run scripts/gpu_bench.py)"


def rapl_readable() -> Path | None:
    """The package energy counter if this container exposes one (it usually does not)."""
    for p in sorted(Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj")):
        try:
            int(p.read_text())
            return p
        except (OSError, ValueError):
            continue
    return None


# ------------------------------------------------------------------------------ CPU
def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _energy_j(rapl: Path | None, fn, repeats: int) -> float | None:
    if rapl is None:
        return None
    e0 = int(rapl.read_text())
    for _ in range(repeats):
        fn()
    e1 = int(rapl.read_text())
    return (e1 - e0) / 1e6 / repeats if e1 > e0 else None


def cpu_rows(preset_name: str, batches=(1, 8), threads=None, repeats: int = 5,
             warmup: int = 1, use_compile: bool = False) -> list[dict]:
    """The float backbone on the CPU: eager under ``no_grad`` (baseline) and under
    ``inference_mode`` (+ channels-last input; the best path that needs no compiler), and
    ``torch.compile`` with ``use_compile`` (minutes to compile here)."""
    import torch

    from moevit.golden.float.model import FloatM3ViT, float_preset
    fcfg = float_preset(preset_name)
    default_threads = torch.get_num_threads()
    threads = threads or sorted({1, os.cpu_count() or 1})
    torch.manual_seed(0)
    model = FloatM3ViT(fcfg).eval()
    compiled = torch.compile(model) if use_compile else None
    rapl = rapl_readable()
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for b in batches:
            x = torch.rand(b, fcfg.image_channels, fcfg.image_height, fcfg.image_width)
            xcl = x.contiguous(memory_format=torch.channels_last)
            variants = [("eager, no_grad", torch.no_grad, model, x),
                        ("eager, inference_mode + channels_last", torch.inference_mode, model,
                         xcl)]
            if compiled is not None:
                variants.append(("torch.compile, inference_mode", torch.inference_mode,
                                 compiled, x))
            for name, ctx, m, inp in variants:
                def call(m=m, inp=inp, ctx=ctx):
                    with ctx():
                        m(inp, task=0, head=False)
                t = _time(call, repeats, warmup)
                med = statistics.median(t)
                e = _energy_j(rapl, call, repeats)
                rows.append(dict(platform="CPU", device=f"{_cpu_name()}, {n} thread(s)",
                                 precision="fp32", batch=b, variant=name, threads=n,
                                 ms_per_image=1e3 * med / b,
                                 watts=None if e is None else e / med,
                                 method="measured",
                                 power_method="measured (RAPL)" if e is not None else
                                 "not measured (no RAPL/hwmon energy counter readable)",
                                 runs_ms=[round(1e3 * v, 3) for v in t]))
    torch.set_num_threads(default_threads)
    return rows


def _cpu_name() -> str:
    from moevit.machine import cpu_model
    return cpu_model()


def golden_row(preset_name: str, repeats: int = 3, warmup: int = 1) -> dict:
    """The bit-exact fixed-point golden model (numpy + numba), one image — for reference."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights
    cfg = preset(preset_name)
    gm = GoldenModel(cfg, seeded_weights(cfg, 0))
    img = synthetic_image(cfg, 0)
    t = _time(lambda: gm.run(img, task=0), repeats, warmup)
    return dict(platform="CPU", device=f"{_cpu_name()}, golden model", precision="fixed (bit-exact)",
                batch=1, variant="golden fixed-point model (reference, not a deployment path)",
                ms_per_image=1e3 * statistics.median(t), watts=None, method="measured",
                power_method="not measured (no RAPL/hwmon energy counter readable)",
                runs_ms=[round(1e3 * v, 3) for v in t])


# ------------------------------------------------------------------------------ GPU
def run_gpu_bench(out: Path, script: Path, quick: bool) -> Path | None:
    """Run scripts/gpu_bench.py when torch sees CUDA; returns the JSON path or None."""
    import torch
    if not torch.cuda.is_available():
        return None
    cmd = [sys.executable, str(script), "--out", str(out)]
    if quick:
        cmd += ["--repeats", "3", "--warmup", "1", "--seconds", "1"]
    subprocess.run(cmd, check=True)
    return out


def gpu_rows(gpu_json: Path | None) -> list[dict]:
    if gpu_json is None or not Path(gpu_json).exists():
        return [dict(platform="GPU", device="-", precision=p, batch=b, variant="-",
                     ms_per_image=None, watts=None, method=GPU_NOT_MEASURED,
                     power_method=GPU_NOT_MEASURED)
                for p in ("fp32", "fp16") for b in (1, 8, 64)]
    doc = json.loads(Path(gpu_json).read_text())
    where = f"{doc['device']} ({doc['machine'].get('date', '?')})"
    rows = []
    for r in doc["results"]:
        rows.append(dict(platform="GPU", device=where, precision=r["precision"],
                         batch=r["batch"], variant="eager, inference_mode",
                         ms_per_image=r["ms_per_image"], watts=r["watts"],
                         method="measured", power_method=r["energy_method"],
                         idle_watts=doc.get("idle_watts")))
    return rows


# ------------------------------------------------------------------------------ FPGA
def fpga_rows(presets=("edge-moe", "zcu104"), batched: int = 16, routing="golden") -> tuple[
        list[dict], dict]:
    """Modelled rows (batch 1 and ``batched``) and the model results by (preset, batch)."""
    rows, results = [], {}
    for name in presets:
        cfg = preset(name)
        for b in (1, batched):
            r = cycle_model.run(cfg, b, routing)
            results[(name, b)] = r
            s = r.summary()
            if b > 1:
                rows.append(_overlap_row(cfg, results[(name, 1)], r))
            rows.append(dict(
                gop_per_image=cycle_model.encoder_gop(cfg),
                platform=f"FPGA ({name})", device=f"{cfg.board.upper()} {cfg.fpga_part}, "
                f"{cfg.clock_mhz:.0f} MHz", precision="fixed (bit-exact)", batch=b,
                variant=("batched schedule" if b > 1 else "per image") +
                f"; tile {cfg.linear_tile_in}x{cfg.linear_tile_out}, P={cfg.attn_parallel}, "
                f"activations {'on chip' if cfg.activations_on_chip else 'in DRAM'}",
                ms_per_image=r.ms_per_image, watts=EDGE_MOE_BOARD_W,
                method="model (cycle model: attention and linear engine RTL-checked, "
                       "LN/residual/gate at their RTL rates; "
                       f"DRAM {s['dram']['sustained_gbs']} GB/s = {cfg.dram_efficiency:.0%} of "
                f"{cfg.dram_peak_gbs} GB/s)",
                power_method=f"assumption: Edge-MoE's reported {EDGE_MOE_BOARD_W} W board "
                "power (ZCU102) [secondary]; no Vivado report_power or PMBus run recorded"))
    return rows, results


def _overlap_row(cfg, single, batched) -> dict:
    """The what-if row: units kept busy on different images of the batch."""
    ms = 1e3 * cycle_model.overlapped_cycles(batched, single) / cfg.clock_hz / batched.batch
    return dict(gop_per_image=cycle_model.encoder_gop(cfg), platform=f"FPGA ({cfg.name})",
                device=f"{cfg.board.upper()} {cfg.fpga_part}, {cfg.clock_mhz:.0f} MHz",
                precision="fixed (bit-exact)", batch=batched.batch,
                variant="what-if: batched, units overlapped across images (not the §6.2 "
                        "sequencer)", ms_per_image=ms, watts=EDGE_MOE_BOARD_W,
                method="model (what-if bound: busiest unit or DRAM over the batch + one "
                       "image's fill; cycle_model.overlapped_cycles)",
                power_method=f"assumption: Edge-MoE's reported {EDGE_MOE_BOARD_W} W board "
                             "power (ZCU102) [secondary]")


def published_rows() -> list[dict]:
    gop = cycle_model.encoder_gop(preset("edge-moe"))  # the paper's model
    return [dict(p, variant="published", method=f"published ({PUBLISHED_SOURCE})",
                 power_method="published", gop_per_image=gop) for p in PUBLISHED]


# ------------------------------------------------------------------------------ table
def finish(rows: list[dict], gop: float) -> list[dict]:
    """Fill images/s, J/image, GOP/image (``gop`` unless the row has its own), GOPS,
    GOPS/W from ms/image and W."""
    for r in rows:
        ms, w = r.get("ms_per_image"), r.get("watts")
        r.setdefault("gop_per_image", gop)
        r["images_per_s"] = None if ms is None else 1e3 / ms
        r["j_per_image"] = None if ms is None or w is None else w * ms / 1e3
        r["gops"] = None if ms is None else r["gop_per_image"] / (ms / 1e3)
        r["gops_per_w"] = None if r["gops"] is None or w is None else r["gops"] / w
        if not r.get("method"):
            raise ValueError(f"row without a method: {r}")
    return rows


def _fmt(v, nd=3):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Latency and energy per image: CPU, GPU, FPGA",
        "",
        f"Generated by `make compare` ({doc['command']}). GOP/image = {doc['gop_per_image']:.4f}"
        f" for the measured `{doc['preset']}` model (encoder, top-{doc['top_k']} routing, "
        "computed from the config; FPGA and published rows: the edge-moe model).",
        f"Machine: {m['cpu']}, {m['cores']} cores, load {m['load_average']}, {m['platform']}, "
        f"Python {m['python']}, torch {m.get('torch')}, numpy {m.get('numpy')}, {m['date']}.",
        "",
        "**Methods.** *measured*: timed here (median after warm-up). *model*: the cycle model "
        "of `moevit.hw.perf` (the schedule model: weights prefetched, activations on chip "
        "where the config says so, the batched schedule) — FPGA latencies are modelled, not "
        "measured on a board; its units' rates are the RTL-checked ones (docs/compare.md). "
        "The RTL top as built, one stage at a time with every tensor through DRAM, has its "
        "own cycle model, equal to the RTL (bench/top_model.md). *assumption*: FPGA power is Edge-MoE's reported board power. "
        "*published*: Edge-MoE's table [secondary]. CPU energy: "
        f"{doc['cpu_energy']}.",
        "",
        "| platform | device | variant | precision | batch | ms/image | images/s | W | "
        "J/image | GOP/image | GOPS | GOPS/W | method (latency) | method (power) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append("| " + " | ".join([
            r["platform"], r["device"], r.get("variant", "-"), r["precision"], str(r["batch"]),
            _fmt(r["ms_per_image"]), _fmt(r["images_per_s"]), _fmt(r["watts"]),
            _fmt(r["j_per_image"]), _fmt(r["gop_per_image"], 4), _fmt(r["gops"]),
            _fmt(r["gops_per_w"]), r["method"], r["power_method"]]) + " |")
    f = doc["fpga"]
    lines += ["", "## FPGA cycle model", "",
              "| preset | batch | ms/image | images/s | DRAM MB/image | memory-bound stages | "
              "target |", "|---|---|---|---|---|---|---|"]
    for s in f["summaries"]:
        tgt = ""
        if s["preset"] == "zcu104":
            tgt = ("<= 10 ms: " + ("met" if s["ms_per_image"] <= 10 else "NOT met")
                   if s["batch"] == 1 else
                   ">= 100 images/s: " + ("met" if s["images_per_s"] >= 100 else "NOT met"))
        lines.append(f"| {s['preset']} | {s['batch']} | {s['ms_per_image']:.2f} | "
                     f"{s['images_per_s']:.1f} | {s['dram_mb_per_image']:.1f} | "
                     f"{s['stages_memory_bound']} of "
                     f"{s['stages_memory_bound'] + s['stages_compute_bound']} | {tgt} |")
    for r in doc["rows"]:
        if r.get("variant", "").startswith("what-if"):
            lines.append(f"| {r['platform'][6:-1]} (what-if: units overlapped) | {r['batch']} | "
                         f"{r['ms_per_image']:.2f} | {r['images_per_s']:.1f} | | | |")
    d = f["summaries"][0]["dram"]
    lines += ["", f"DRAM model: {d['ports']} HP ports x {d['port_bits']} bit at the kernel "
              f"clock, PS DDR4 {d['peak_gbs']} GB/s peak x {d['efficiency']:.0%} efficiency "
              f"(assumed) = {d['sustained_gbs']} GB/s sustained ({d['limit']} limits). "
              f"Expert routing: {f['routing']}.", ""]
    best = best_cpu_paths(doc["rows"])
    if best:
        lines += ["## Best CPU path (measured here)", "",
                  "| threads | batch | fastest variant | ms/image | vs eager no_grad |",
                  "|---|---|---|---|---|"]
        lines += [f"| {b['threads']} | {b['batch']} | {b['variant']} | {b['ms']:.1f} | "
                  f"{b['speedup']:.2f}x |" for b in best]
        lines += ["", "torch.compile is off by default: on this machine its first call took "
                  "~420 s and later calls were slower than eager (the expert token counts change "
                  "with the data and trigger recompiles); `--compile` times it.", ""]
    if doc.get("resources"):
        r = doc["resources"]
        lines += [f"## Resource estimate of the zcu104 preset ({r['part']})", "",
                  "| part | LUT | FF | DSP48E2 | BRAM36 | URAM | source |",
                  "|---|---|---|---|---|---|---|"]
        for p in r["parts"]:
            lines.append(f"| {p['name']} | {p['LUT']} | {p['FF']} | {p['DSP48E2']} | "
                         f"{p['BRAM36']} | {p['URAM']} | {p['source']} |")
        t, u = r["total"], r["utilisation"]
        lines += [f"| **total** | {t['LUT']} ({u['LUT']:.0%}) | {t['FF']} ({u['FF']:.0%}) | "
                  f"{t['DSP48E2']} ({u['DSP48E2']:.0%}) | {t['BRAM36']} ({u['BRAM36']:.0%}) | "
                  f"{t['URAM']} ({u['URAM']:.0%}) | limits: DSP 100 %, LUT 80 %, "
                  f"BRAM+URAM 90 % ({u['memory']:.0%}) |", ""]
    if doc.get("sweep_markdown"):
        lines += ["## Design space (zcu104)", "", doc["sweep_markdown"]]
    lines += ["## Plots", ""] + [f"![{p}]({Path(p).name})" for p in doc["plots"]] + [""]
    return "\n".join(lines)


def best_cpu_paths(rows: list[dict]) -> list[dict]:
    """The fastest measured float variant per (threads, batch), with its speed-up."""
    groups: dict = {}
    for r in rows:
        if r["platform"] == "CPU" and r.get("threads") and r["ms_per_image"] is not None:
            groups.setdefault((r["threads"], r["batch"]), []).append(r)
    out = []
    for (n, b), rs in sorted(groups.items()):
        base = next((r for r in rs if r["variant"] == "eager, no_grad"), rs[0])
        fast = min(rs, key=lambda r: r["ms_per_image"])
        out.append(dict(threads=n, batch=b, variant=fast["variant"], ms=fast["ms_per_image"],
                        speedup=base["ms_per_image"] / fast["ms_per_image"]))
    return out


def build(out_dir: Path, *, preset_name: str = "edge-moe", repeats: int = 5, warmup: int = 1,
          batches=(1, 8), threads=None, use_compile: bool = False, golden: bool = True,
          gpu_json: Path | None = None, batched: int = 16, routing: str = "golden",
          sweep: bool = True, plots: bool = True, command: str = "") -> dict:
    """Measure, model, and write compare.json / compare.md / compare_*.png in ``out_dir``."""
    import numpy
    import torch

    from moevit.hw.perf import sweep as sweep_mod
    from moevit.machine import describe
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = preset(preset_name)
    gop = cycle_model.encoder_gop(cfg)
    rows = cpu_rows(preset_name, batches, threads, repeats, warmup, use_compile)
    if golden:
        rows.append(golden_row(preset_name, max(1, min(repeats, 3)), warmup))
    gpu_path = gpu_json
    if gpu_path is None:
        gpu_path = run_gpu_bench(out_dir / "gpu.json",
                                 Path(__file__).resolve().parents[2] / "scripts" / "gpu_bench.py",
                                 quick=repeats < 5)
    if gpu_path is None and (out_dir / "gpu.json").exists():
        gpu_path = out_dir / "gpu.json"  # recorded on a GPU machine earlier
    rows += gpu_rows(gpu_path)
    frows, results = fpga_rows(batched=batched, routing=routing)
    rows += frows + published_rows()
    finish(rows, gop)
    rapl = rapl_readable()
    doc = dict(command=command or "moevit bench compare", preset=preset_name,
               gop_per_image=gop, top_k=cfg.top_k,
               machine=describe(torch=torch.__version__, numpy=numpy.__version__),
               cpu_energy=("measured with RAPL" if rapl else
                           "not measured — no RAPL/hwmon energy counter is readable here"),
               rows=rows,
               fpga=dict(routing=routing, batched=batched,
                         summaries=[r.summary() for r in results.values()],
                         by_kind={f"{k[0]} b={k[1]}": r.by_kind() for k, r in results.items()},
                         stages={f"{k[0]} b={k[1]}": r.stage_rows()
                                 for k, r in results.items() if k[1] == 1}),
               plots=[])
    from moevit.hw.perf import resources
    est = resources.estimate(preset("zcu104"))
    doc["resources"] = dict(part=est["part"], parts=est["parts"], total=est["total"],
                            utilisation=est["utilisation"], fits=est["fits"])
    if sweep:
        srows = sweep_mod.sweep(preset("zcu104"), batch=batched)
        doc["sweep"] = srows
        doc["sweep_best"] = sweep_mod.best(srows)
        doc["sweep_markdown"] = sweep_mod.markdown(srows[:15], preset("zcu104"))
    if plots:
        from moevit.hw.perf import compare_plots
        doc["plots"] = [str(p) for p in compare_plots.all_plots(doc, results, out_dir)]
    (out_dir / "compare.json").write_text(json.dumps(doc, indent=1, default=str))
    (out_dir / "compare.md").write_text(markdown(doc))
    return doc
