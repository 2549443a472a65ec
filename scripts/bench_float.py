#!/usr/bin/env python
"""Time the float M³ViT model per image (batch 1, one task), CPU and, when present, CUDA.

Reports the median of ``--repeats`` timed runs (after warm-up) for the backbone alone (what
the accelerator computes) and for backbone + the task's PUP head, and writes
``build/bench/float.json`` with the machine description.

    python scripts/bench_float.py [--preset edge-moe] [--device cpu|cuda|all] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from moevit.machine import describe
from moevit.golden.float.model import FloatM3ViT, float_preset


def machine(torch_threads: int) -> dict:
    d = describe(torch=torch.__version__, torch_threads=torch_threads)
    if torch.cuda.is_available():
        d["cuda_device"] = torch.cuda.get_device_name(0)
        d["cuda"] = torch.version.cuda
    return d


def time_model(model, x, task: int, head: bool, repeats: int, warmup: int, device: str) -> list[float]:
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x, task=task, head=head)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times


def build(preset: str, device: str, dtype=torch.float32):
    """(model, one random image) for ``preset`` on ``device``; seeded, so identical every call."""
    fcfg = float_preset(preset)
    torch.manual_seed(0)
    model = FloatM3ViT(fcfg).to(device=device, dtype=dtype).eval()
    x = torch.rand(1, fcfg.image_channels, fcfg.image_height, fcfg.image_width,
                   device=device, dtype=dtype)
    return model, x


def bench(model, x, preset: str, device: str, repeats: int, warmup: int, dtype=torch.float32,
          task: int = 0) -> dict:
    """Median/min/max of ``repeats`` timed runs (after ``warmup``) of the backbone and of
    backbone + head, at the current torch thread count."""
    out = dict(preset=preset, device=device, dtype=str(dtype).replace("torch.", ""), task=task,
               batch=1, repeats=repeats, warmup=warmup)
    for key, head in (("backbone", False), ("backbone_plus_head", True)):
        t = time_model(model, x, task, head, repeats, warmup, device)
        out[key] = dict(median_ms=1e3 * statistics.median(t), min_ms=1e3 * min(t),
                        max_ms=1e3 * max(t), runs_ms=[1e3 * v for v in t])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--preset", default="edge-moe", help="edge-moe, tiny, zcu104 or vit-s")
    p.add_argument("--device", default="all", choices=("cpu", "cuda", "all"),
                   help="'all' = CPU plus CUDA when a GPU is visible (default)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median reported; >= 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="build/bench/float.json",
                   help="result JSON (default build/bench/float.json; `make bench-record` copies it)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch CPU thread counts to time (default: 1 and torch's default)")
    a = p.parse_args(argv)
    if a.repeats < 3:
        p.error("--repeats must be at least 3 (the median of >= 3 runs is reported)")
    default_threads = torch.get_num_threads()
    threads = a.threads or sorted({1, default_threads})
    devices = ["cpu"] if a.device == "cpu" else ["cuda"] if a.device == "cuda" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        print("bench_float: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    results = []
    for d in devices:
        model, x = build(a.preset, d)
        for n in (threads if d == "cpu" else [default_threads]):
            torch.set_num_threads(n)
            results.append(dict(bench(model, x, a.preset, d, a.repeats, a.warmup), threads=n))
    torch.set_num_threads(default_threads)
    doc = dict(machine=machine(default_threads), results=results,
               note="float32, batch 1, one task; 'backbone' is what the accelerator computes")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    for r in results:
        print(f"float {r['preset']} on {r['device']} ({r['threads']} threads): backbone {r['backbone']['median_ms']:.1f} ms/image, "
              f"backbone+head {r['backbone_plus_head']['median_ms']:.1f} ms/image "
              f"(median of {r['repeats']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
