"""``moevit bench compare``: CPU measured, GPU measured or merged, FPGA modelled (issue 13)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moevit.errors import ConfigError


def _compare(args) -> int:
    from moevit.hw.perf.compare import build
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: need at least 1 timed run")
    gpu = Path(args.gpu_json) if args.gpu_json else None
    if gpu is not None and not gpu.exists():
        raise ConfigError(f"--gpu-json {gpu} does not exist (write it with scripts/gpu_bench.py "
                          f"on a GPU machine)")
    doc = build(Path(args.out), preset_name=args.preset, repeats=args.repeats,
                warmup=args.warmup, batches=tuple(args.batches), threads=args.threads,
                use_compile=args.compile, golden=not args.no_golden, gpu_json=gpu,
                batched=args.batched, routing=args.routing, sweep=not args.no_sweep,
                plots=not args.no_plots, command="moevit bench compare " + " ".join(sys.argv[3:]))
    for r in doc["rows"]:
        ms = "not measured" if r["ms_per_image"] is None else f"{r['ms_per_image']:.3f} ms"
        print(f"{r['platform']:<22} {r['precision']:<17} b={r['batch']:<3} {ms:>14}  "
              f"[{r['method'].split(' (')[0]}]")
    print(f"wrote {args.out}/compare.json, compare.md and {len(doc['plots'])} plots")
    return 0


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks and comparisons")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    p = bsub.add_parser("compare", help="latency/energy: CPU and GPU measured, FPGA modelled",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="bench", help="folder for compare.json/.md and plots")
    p.add_argument("--preset", default="edge-moe", help="model the CPU/GPU runs use")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per CPU figure (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="CPU thread counts (default: 1 and all cores)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (several minutes of compiling on 2 cores)")
    p.add_argument("--no-golden", action="store_true", help="skip the golden-model row")
    p.add_argument("--gpu-json", default=None,
                   help="merge scripts/gpu_bench.py's JSON (default: bench/gpu.json if present, "
                        "or run it when CUDA is visible)")
    p.add_argument("--batched", type=int, default=16, help="batch of the FPGA batched schedule")
    p.add_argument("--routing", default="golden", choices=("golden", "uniform"),
                   help="expert token counts for the FPGA model")
    p.add_argument("--no-sweep", action="store_true", help="skip the zcu104 design-space sweep")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_compare)
