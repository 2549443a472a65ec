"""Plots of the comparison (matplotlib, Agg): latency and energy per image, images/s against
batch, the FPGA's modelled per-stage breakdown, and a roofline of the ZCU104."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moevit.config import preset  # noqa: E402
from moevit.hw.perf import cycle_model  # noqa: E402
from moevit.hw.perf.cycle_model import KINDS  # noqa: E402
from moevit.hw.perf.dram import DramModel  # noqa: E402
from moevit.hw.perf.resources import PARTS  # noqa: E402

HATCH = {"measured": "", "model": "///", "published": "..", "assumption": "xx"}
COLOR = {"CPU": "tab:blue", "GPU": "tab:green", "FPGA": "tab:red"}
DPI = 80


def _method(r: dict) -> str:
    return r["method"].split(" ")[0]


def _label(r: dict) -> str:
    v = r.get("variant", "")
    short = {"eager, no_grad": "eager", "eager, inference_mode + channels_last": "inf.mode",
             "torch.compile, inference_mode": "compile"}.get(v, "")
    if r["platform"].startswith("FPGA ("):
        what_if = " what-if" if v.startswith("what-if") else ""
        return f"{r['platform'][6:-1]} b{r['batch']}{what_if}"
    if "golden" in v:
        return "golden"
    if r["platform"] == "CPU":
        return f"{r.get('threads')}t b{r['batch']} {short}"
    if r["platform"] == "GPU":
        return f"{r['precision']} b{r['batch']}"
    return r["platform"].split(" (")[0] + " paper"


def latency_energy(rows: list[dict], out: Path) -> Path:
    rows = [r for r in rows if r["ms_per_image"] is not None]
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5))
    for ax, key, ylabel in ((axes[0], "ms_per_image", "ms / image"),
                            (axes[1], "j_per_image", "J / image")):
        xs = list(range(len(rows)))
        for x, r in zip(xs, rows):
            v = r[key]
            if v is None:
                ax.text(x, 0.02, "not measured", ha="center", va="bottom", fontsize=6,
                        rotation=90, transform=ax.get_xaxis_transform())
                continue
            m = _method(r) if key == "ms_per_image" else (
                "measured" if r["power_method"].startswith("measured") else
                "published" if r["power_method"] == "published" else "assumption")
            ax.bar(x, v, color=COLOR[r["platform"].split(" ")[0]], hatch=HATCH.get(m, ""),
                   edgecolor="black", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_xticks(xs, [_label(r) for r in rows], rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=p) for p, c in COLOR.items()]
    handles += [plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch=h,
                              label=m) for m, h in HATCH.items()]
    axes[0].legend(handles=handles, fontsize=7, ncol=7, loc="upper right")
    axes[0].set_title("Latency and energy per image (hatching: how the figure was obtained; "
                      "energy bars only where power is known)", fontsize=9)
    fig.tight_layout()
    path = out / "compare_latency_energy.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def throughput_vs_batch(rows: list[dict], out: Path, batches=(1, 2, 4, 8, 16, 32, 64),
                        routing="golden") -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("edge-moe", "r--"), ("zcu104", "r-")):
        cfg = preset(name)
        runs = [cycle_model.run(cfg, b, routing) for b in batches]
        ax.plot(batches, [r.images_per_s for r in runs], style, marker="o",
                label=f"FPGA {name} (model, §6.2 schedule)")
        if name == "zcu104":
            ov = [b * cfg.clock_hz / cycle_model.overlapped_cycles(r, runs[0])
                  for b, r in zip(batches, runs)]
            ax.plot(batches, ov, "m:", marker="^",
                    label=f"FPGA {name} (model, what-if: units overlapped)")
    for plat, color in (("CPU", "tab:blue"), ("GPU", "tab:green")):
        groups: dict = {}
        for r in rows:
            if r["platform"] != plat or r["ms_per_image"] is None:
                continue
            if plat == "CPU" and "golden" in r.get("variant", ""):
                continue
            key = (f"{r.get('threads')} thread(s), {r.get('variant')}" if plat == "CPU"
                   else r["precision"])
            groups.setdefault(key, []).append((r["batch"], r["images_per_s"]))
        for key, pts in groups.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker="s",
                    alpha=0.7, label=f"{plat} {key} (measured)")
    ax.axhline(100, color="gray", ls=":", label="zcu104 target 100 images/s")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch")
    ax.set_ylabel("images / s")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("Throughput against batch size", fontsize=9)
    fig.tight_layout()
    path = out / "compare_throughput.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def stage_breakdown(results: dict, out: Path) -> Path:
    keys = [k for k in results if k[1] == 1] + [k for k in results if k[1] != 1]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    kinds = list(KINDS)
    cmap = plt.get_cmap("tab10")
    for i, k in enumerate(keys):
        r = results[k]
        bk = r.by_kind()
        bottom = 0.0
        clk = r.clock_hz / 1e3 * r.batch  # cycles per ms of one image's share
        for j, kind in enumerate(kinds):
            if kind not in bk:
                continue
            c, m = bk[kind]["compute"] / clk, bk[kind]["memory"] / clk
            ax.bar(i, c, bottom=bottom, color=cmap(j), edgecolor="black", linewidth=0.3,
                   label=kind if i == 0 else None)
            bottom += c
            if m > 0:
                ax.bar(i, m, bottom=bottom, color=cmap(j), hatch="xxx", edgecolor="black",
                       linewidth=0.3, alpha=0.6)
                bottom += m
    ax.bar(0, 0, color="white", hatch="xxx", edgecolor="black", label="memory-bound excess")
    ax.axhline(10, color="gray", ls=":", label="zcu104 target 10 ms")
    ax.set_xticks(range(len(keys)), [f"{k[0]}\nbatch {k[1]}" for k in keys])
    ax.set_ylabel("modelled ms / image at 300 MHz")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("FPGA per-stage time (model): solid = compute, hatched = DRAM beyond compute",
                 fontsize=9)
    fig.tight_layout()
    path = out / "compare_fpga_stages.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def roofline(results: dict, out: Path) -> Path:
    cfg = preset("zcu104")
    dev = PARTS[cfg.fpga_part]
    dram = DramModel.from_config(cfg)
    f = cfg.clock_hz
    dsp_peak = dev["DSP48E2"] / 2 * 2 * f / 1e9  # GOPS: 32x16 MAC = 2 DSP, 2 ops per MAC
    lin_peak = cfg.linear_tile_in * cfg.linear_tile_out * 2 * f / 1e9
    bw = dram.sustained_gbs
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [10 ** (e / 10) for e in range(0, 41)]
    ax.plot(xs, [min(dsp_peak, x * bw) for x in xs], "k-",
            label=f"ZCU104 DSP ceiling {dsp_peak:.0f} GOPS / DRAM {bw:.1f} GB/s")
    ax.plot(xs, [min(lin_peak, x * bw) for x in xs], "k--",
            label=f"zcu104 linear engine {cfg.linear_tile_in}x{cfg.linear_tile_out} "
            f"{lin_peak:.0f} GOPS")
    cmap = plt.get_cmap("tab10")
    for key, marker in (((cfg.name, 1), "o"), ((cfg.name, max(b for _, b in results)), "^")):
        if key not in results:
            continue
        for j, (kind, d) in enumerate(results[key].by_kind().items()):
            if d["macs"] == 0 or d["dram_bytes"] == 0:
                continue
            t = (d["compute"] + d["memory"]) / f
            ax.plot(2 * d["macs"] / d["dram_bytes"], 2 * d["macs"] / t / 1e9, marker,
                    color=cmap(list(KINDS).index(kind)),
                    label=f"{kind} (batch {key[1]})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ops per DRAM byte")
    ax.set_ylabel("GOPS")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("Roofline of the zcu104 preset (model): stages by kind", fontsize=9)
    fig.tight_layout()
    path = out / "compare_roofline.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sweep_plot(rows: list[dict], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["DSP"], r["ms_batch1"], c="tab:green" if r["fits"] else "tab:gray",
                   marker="o" if r["fits"] else "x", s=18)
    fastest = sorted((r for r in rows if r["fits"]), key=lambda r: r["ms_batch1"])[:3]
    for i, r in enumerate(fastest):
        ax.annotate(f"{r['tile_in']}x{r['tile_out']} P{r['P']}: {r['ms_batch1']:.2f} ms",
                    (r["DSP"], r["ms_batch1"]), fontsize=6, xytext=(-150, 18 - 10 * i),
                    textcoords="offset points", arrowprops=dict(arrowstyle="-", lw=0.3))
    ax.axvline(PARTS["xczu7ev-ffvc1156-2-e"]["DSP48E2"], color="red", ls=":",
               label="1,728 DSP48E2")
    ax.axhline(10, color="gray", ls=":", label="10 ms target")
    ax.set_xlabel("DSP48E2 (estimate)")
    ax.set_ylabel("modelled ms / image, batch 1")
    ax.legend(fontsize=7)
    ax.set_title("zcu104 design space: linear tile x P (green: fits the limits)", fontsize=9)
    fig.tight_layout()
    path = out / "compare_sweep.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def all_plots(doc: dict, results: dict, out: Path) -> list[Path]:
    out = Path(out)
    paths = [latency_energy(doc["rows"], out),
             throughput_vs_batch(doc["rows"], out, routing=doc["fpga"]["routing"]),
             stage_breakdown(results, out), roofline(results, out)]
    if doc.get("sweep"):
        paths.append(sweep_plot(doc["sweep"], out))
    return paths
