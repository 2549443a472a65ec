#!/usr/bin/env python
"""Measure the float M³ViT backbone on a CUDA GPU: latency and energy per image.

Run on a machine with an NVIDIA GPU (torch with CUDA, ``pip install nvidia-ml-py``):

    python scripts/gpu_bench.py --out bench/gpu.json        # then: make compare

For float32 and float16, batch 1, 8 and 64: the median latency of ``--repeats`` timed runs
after warm-up, with ``torch.cuda.synchronize()`` around each; then the model runs back to back
for at least ``--seconds`` while NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ) is read before and after, giving J/image and
the average board power.  Idle power (``nvmlDeviceGetPowerUsage`` sampled for 2 s with
nothing running) is reported separately; J/image is the whole board's energy, idle included.
``make compare`` merges the JSON into bench/compare.{json,md}.  ``--device cpu`` exercises
the same code path without a GPU (energy then "not measured"); it is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from moevit.golden.float.model import FloatM3ViT, float_preset
from moevit.machine import describe

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class Nvml:
    """NVML energy/power counters of one device, or ``None`` fields where unavailable."""

    def __init__(self, index: int | None):
        """``index`` None: no NVML (the CPU test path)."""
        self.handle = None
        self.error = "no NVML on the CPU path" if index is None else None
        if index is None:
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # no library, no driver, no device
            self.error = f"{type(exc).__name__}: {exc}"

    def energy_j(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3
        except Exception as exc:  # pre-Volta GPUs have no energy counter
            self.error = f"{type(exc).__name__}: {exc}"
            return None

    def power_w(self) -> float | None:
        if self.handle is None:
            return None
        try:
            return self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1e3
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def idle_power(nvml: Nvml, seconds: float = 2.0) -> float | None:
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        p = nvml.power_w()
        if p is None:
            return None
        samples.append(p)
        time.sleep(0.05)
    return statistics.median(samples)


def measure(model, x, device: str, repeats: int, warmup: int, seconds: float,
            nvml: Nvml) -> dict:
    """Median latency per batch, then energy over a run of >= ``seconds``."""
    batch = x.shape[0]
    with torch.inference_mode():
        for _ in range(warmup):
            model(x, task=0, head=False)
        sync(device)
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model(x, task=0, head=False)
            sync(device)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        iters = max(1, int(seconds / max(med, 1e-6)) + 1)
        sync(device)
        e0, t0 = nvml.energy_j(), time.perf_counter()
        for _ in range(iters):
            model(x, task=0, head=False)
        sync(device)
        e1, t1 = nvml.energy_j(), time.perf_counter()
    row = dict(batch=batch, repeats=repeats, warmup=warmup,
               ms_per_batch=1e3 * med, ms_per_image=1e3 * med / batch,
               images_per_s=batch / med, runs_ms=[1e3 * t for t in times],
               energy_run_s=t1 - t0, energy_run_images=iters * batch)
    if e0 is not None and e1 is not None and e1 > e0:
        joules = e1 - e0
        row.update(watts=joules / (t1 - t0), j_per_image=joules / (iters * batch),
                   energy_method="measured (NVML total-energy counter)")
    else:
        row.update(watts=None, j_per_image=None,
                   energy_method=f"not measured ({nvml.error or 'no energy counter'})")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--preset", default="edge-moe")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--precisions", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0,
                   help="length of each energy run (NVML's counter needs >= a few seconds)")
    p.add_argument("--gpu-index", type=int, default=0)
    p.add_argument("--out", default="bench/gpu.json")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: torch sees no CUDA device (use --device cpu to test the script)",
              file=sys.stderr)
        return 2
    nvml = Nvml(a.gpu_index if a.device == "cuda" else None)
    fcfg = float_preset(a.preset)
    idle = idle_power(nvml) if a.device == "cuda" else None
    rows = []
    for prec in a.precisions:
        torch.manual_seed(0)
        model = FloatM3ViT(fcfg).to(device=a.device, dtype=DTYPES[prec]).eval()
        for b in a.batches:
            x = torch.rand(b, fcfg.image_channels, fcfg.image_height, fcfg.image_width,
                           device=a.device, dtype=DTYPES[prec])
            r = measure(model, x, a.device, a.repeats, a.warmup, a.seconds, nvml)
            r.update(precision=prec)
            rows.append(r)
            w = f"{r['watts']:.1f} W" if r["watts"] else "energy not measured"
            print(f"{prec} batch {b}: {r['ms_per_image']:.3f} ms/image, "
                  f"{r['images_per_s']:.1f} images/s, {w}")
    device_name = torch.cuda.get_device_name(a.gpu_index) if a.device == "cuda" else "cpu"
    doc = dict(device=device_name, device_kind=a.device, preset=a.preset,
               idle_watts=idle, idle_method="measured (NVML power, median over 2 s)"
               if idle is not None else "not measured",
               machine=describe(torch=torch.__version__,
                                cuda=str(torch.version.cuda), device=device_name),
               note="float M³ViT backbone (encoder only), task 0, torch.inference_mode; "
                    "J/image = board energy over the run / images (idle included)",
               results=rows)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
