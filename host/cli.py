"""``moevit run`` (stream images through an accelerator backend) and ``moevit regmap``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from moevit.config import preset
from moevit.errors import MoevitError, WeightFileError
from moevit.outputs import atomic_dir, check_output_dir
from moevit.host.backends import BACKENDS


# ---------------------------------------------------------------------------- regmap
def cmd_regmap(args):
    from moevit.regmap import REGMAP
    m = REGMAP
    if args.hwh:
        from moevit.host.hwh import check_map, parse_hwh
        m = parse_hwh(args.hwh, args.kernel)
    if args.format == "json" or args.json:
        print(m.to_json())
    elif args.format == "c":
        print(m.c_header())
    elif args.format == "markdown":
        print(m.markdown())
    else:
        print(m.text())
    if args.hwh:
        res = check_map(m)
        print(("map matches the driver" + (" (with moevit extensions)" if res.extensions else
                                            " (Edge-MoE map, no extensions)")) if res.ok else
              "map does NOT match the driver:\n  " + res.describe(), file=sys.stderr)
        return 0 if res.ok else 2
    return 0


# ---------------------------------------------------------------------------- run
def load_weights(cfg, args):
    """(weights, source text, heads checkpoint or None)."""
    from moevit.golden import weight_io
    if args.weights is not None:
        d = Path(args.weights)
        if not d.is_dir():
            raise WeightFileError(f"--weights {d}: no such folder; pass an Edge-MoE folder "
                                  f"(*.float32.bin) or an onboard folder (*.npy)")
        if (d / "patch_embed_weights.npy").is_file():
            return weight_io.load_onboard(d, cfg, on_wrap=args.on_wrap), f"onboard {d}", None
        return weight_io.load_folder(d, cfg, on_wrap=args.on_wrap), f"folder {d}", None
    if args.checkpoint is not None:
        from moevit.golden.float.checkpoint import load_m3vit_checkpoint, to_weights
        from moevit.golden.float.model import FloatM3ViT
        model = FloatM3ViT(cfg)
        load_m3vit_checkpoint(model, args.checkpoint)
        return to_weights(model, cfg), f"checkpoint {args.checkpoint}", args.checkpoint
    from moevit.golden.weights import seeded_weights
    return seeded_weights(cfg, args.seed), f"seeded_weights(seed={args.seed})", None


def _frames(cfg, args):
    """(iterator of (name, uint8 image), count or None)."""
    from moevit.host import frames
    if args.images is not None:
        files = frames.image_files(args.images)
        first = frames.load_frame(files[0], cfg)        # an image-size error stops here
        rest = ((f.stem, frames.load_frame(f, cfg)) for f in files[1:])
        return _chain((files[0].stem, first), rest), len(files)
    if args.video is not None:
        it = frames.video_frames(args.video, cfg, args.max_frames)
        first = next(it, None)
        if first is None:
            raise MoevitError(f"--video {args.video}: no frames")
        return _chain(first, it), None
    if args.synthetic < 1:
        raise MoevitError(f"--synthetic {args.synthetic}: need at least 1 image")
    return frames.synthetic_frames(cfg, args.synthetic), args.synthetic


def _chain(first, rest):
    yield first
    yield from rest


def _open_device(cfg, args):
    from moevit.host.backends import open_device
    opts = {}
    if args.backend == "pynq":
        opts = dict(bitstream=args.bitstream, hwh=args.hwh, kernel=args.kernel)
    elif args.bitstream or args.hwh:
        raise MoevitError(f"--bitstream/--hwh are for --backend pynq, not {args.backend}")
    dev = open_device(args.backend, cfg, **opts)
    if args.record:
        from moevit.host.record import RecordingDevice
        dev = RecordingDevice(dev, args.record, preset=cfg.name, argv=sys.argv[1:])
    return dev


def cmd_run(args):
    from moevit.golden.tasks import default_tasks, task_index
    cfg = preset(args.preset)
    task = task_index(default_tasks(cfg.num_tasks), args.task)
    if args.batch < 1:
        raise MoevitError(f"--batch {args.batch}: must be at least 1")
    check_output_dir(args.out)                           # bad --out: exit 2 before any work
    if args.stop_at:
        from moevit.host.layout import stage_for_tap
        stage_for_tap(cfg, args.stop_at)                  # unknown stage: exit 2 before work
    if args.backend == "rtl":
        if args.bitstream or args.hwh:
            raise MoevitError("--bitstream/--hwh are for --backend pynq, not rtl")
        from moevit.host.backend_rtl import require_simulator
        require_simulator(args.sim)                       # no Verilator: exit 2 before work
    frames, total = _frames(cfg, args)
    weights, source, ckpt = load_weights(cfg, args)
    if args.backend == "rtl":
        return _run_rtl(cfg, task, frames, total, weights, source, ckpt, args)
    from moevit.host.driver import Accelerator
    dev = _open_device(cfg, args)
    # outputs are staged beside --out and moved in only when the run succeeds
    with dev, atomic_dir(args.out) as out:
        acc = Accelerator(dev, cfg, weights, batch=args.batch)
        summary = _summary(cfg, dev.backend, task, source, acc.packed, args)
        if args.stop_at:
            name, img = next(frames)
            _write_stop(cfg, out, summary, name, acc.run(img, task, stop_at=args.stop_at),
                        dev.backend, args)
            return 0
        heads = _heads(cfg, ckpt, args)
        bar = _bar(total, dev.backend, args)
        t0 = time.perf_counter()
        try:
            results = acc.stream(frames, task)
            _collect(results, dev.backend, dev.clock_hz, task, heads, out, summary, args, t0,
                     bar=bar)
        finally:
            bar.close()
    return 0


def _summary(cfg, backend, task, source, packed, args) -> dict:
    from moevit.golden.tasks import default_tasks
    for line in packed.wrap_lines():
        print(f"warning: weight wrap: {line}", file=sys.stderr)
    return dict(backend=backend, preset=cfg.name, task=default_tasks(cfg.num_tasks)[task][0],
                weights=source, batch=args.batch, weight_wraps=packed.wraps,
                packed_cache=packed.from_cache or "packed now")


def _heads(cfg, ckpt, args):
    if args.no_pictures:
        return None
    from moevit.host.heads import TaskHeads
    return TaskHeads(cfg, checkpoint=ckpt)


def _bar(total, backend, args):
    from tqdm import tqdm
    return tqdm(total=total, unit="image", desc=f"run {backend}", disable=args.quiet)


def _write_stop(cfg, out, summary, name, r, backend, args):
    f = out / f"{args.stop_at}.int32.npy"
    np.save(f, r.tap.astype("<i4"))
    summary.update(stop_at=args.stop_at, image=name, tap_shape=list(r.tap.shape),
                   timings=r.timings)
    (out / "run.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"stopped at {args.stop_at} (debug_id {_debug_id(cfg, args.stop_at)}) on "
          f"{name}: wrote {Path(args.out) / f.name} {list(r.tap.shape)}; backend {backend}")


def _run_rtl(cfg, task, frames, total, weights, source, ckpt, args):
    """``moevit run --backend rtl``: the driver runs inside a cocotb simulation of
    ``moevit_top`` (a subprocess); the job and its results travel as files in a scratch
    folder under build/ (:func:`moevit.host.backend_rtl.run_session`)."""
    from moevit.host.backend_rtl import run_session, scratch_dir
    from moevit.host.packing import pack_weights
    packed = pack_weights(weights, cfg)
    job_dir = scratch_dir(cfg)
    record = Path(args.record).resolve() if args.record else None
    header = dict(preset=cfg.name, argv=sys.argv[1:])
    with atomic_dir(args.out) as out:
        summary = _summary(cfg, "rtl", task, source, packed, args)
        if args.stop_at:
            name, img = next(frames)
            steps = [dict(op="run", images=img, task=task, stop_at=args.stop_at)]
        else:
            fr = list(frames)
            steps = [dict(op="stream", frames=fr, task=task)]
            total = len(fr)
        print(f"simulating moevit_top ({cfg.name}, {args.sim}); job folder {job_dir}",
              file=sys.stderr)
        bar = _bar(1 if args.stop_at else total, "rtl", args)
        t0 = time.perf_counter()
        try:
            results, metrics = run_session(
                cfg, packed, steps, batch=args.batch, record=record, record_header=header,
                sim=args.sim, job_dir=job_dir,
                progress=lambda rec: bar.update(rec["done"] - bar.n))
        finally:
            bar.close()
        summary["simulation"] = {k: metrics.get(k) for k in
                                 ("simulator", "simulator_version", "wall_s", "sim_cycles",
                                  "build_dir", "run_dir", "job_dir")}
        if args.stop_at:
            _write_stop(cfg, out, summary, name, results[0], "rtl", args)
            return 0
        _collect(results[0], "rtl", cfg.clock_hz, task, _heads(cfg, ckpt, args), out, summary,
                 args, t0)
    return 0


def _debug_id(cfg, tap):
    from moevit.host.layout import stage_for_tap
    return stage_for_tap(cfg, tap).debug_id


def _collect(results, backend, clock_hz, task, heads, out, summary, args, t0, bar=None):
    """Consume per-batch :class:`RunResult`s: features, pictures, run.json, summary line.
    ``t0``: when the run started (the wall time excludes the heads)."""
    names, feats, tm, cycles = [], [], {}, []
    t_heads = 0.0
    for r in results:
        for k, v in r.timings.items():
            tm[k] = tm.get(k, 0.0) + v
        cycles.append(r.cycles)
        names += r.names
        feats.append(r.output.astype("<i4"))
        if heads is not None:
            th = time.perf_counter()
            pred = heads.predict(r.output, task)
            for name, p in zip(r.names, pred):
                heads.save(p, task, out / f"{name}.{heads.tasks[task][0]}.png")
            t_heads += time.perf_counter() - th
        if bar is not None:
            bar.update(len(r.names))
    wall = time.perf_counter() - t0 - t_heads
    n = len(names)
    np.save(out / "features.int32.npy", np.concatenate(feats))
    kernel_ms = None
    if all(c is not None for c in cycles):
        kernel_ms = 1e3 * sum(cycles) / clock_hz / n
    summary.update(images=n, names=names, seconds=wall, images_per_s=n / wall,
                   ms_per_image=1e3 * wall / n, kernel_ms_per_image=kernel_ms,
                   kernel_cycles=None if kernel_ms is None else sum(cycles),
                   heads=(None if heads is None else ("checkpoint" if heads.trained else
                                                      "untrained (seeded): pictures are not "
                                                      "meaningful without a checkpoint")),
                   heads_s=t_heads, timings=tm)
    (out / "run.json").write_text(json.dumps(summary, indent=1, default=str))
    kern = (f", kernel {kernel_ms:.3g} ms/image = {sum(cycles) / n:.3g} cycles/image from the "
            f"cycle counter" if kernel_ms is not None
            else "")
    where = ("measured on the host, simulation included" if backend == "rtl" else
             "measured on the host")
    print(f"{n} images, {n / wall:.2f} images/s, {1e3 * wall / n:.2f} ms/image ({where}, "
          f"heads excluded{kern}), backend {backend}")
    final = Path(args.out)  # out is the staging folder, moved there when the run succeeds
    print(f"wrote {final / 'features.int32.npy'}, {final / 'run.json'}"
          + (f" and {n} pictures" if heads is not None else ""))
    if heads is not None and not heads.trained:
        print("note: the task heads are untrained (Edge-MoE ships none); pass --checkpoint for "
              "meaningful maps", file=sys.stderr)


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="stream images through the accelerator (golden, rtl or pynq backend)",
        description="Pack the weights, stream images through an accelerator backend and write "
                    "the encoder outputs (and task-head pictures) to --out.")
    p.add_argument("--backend", choices=BACKENDS, default="golden")
    p.add_argument("--preset", default="edge-moe")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", metavar="DIR",
                   help="Edge-MoE weights folder (*.float32.bin) or onboard folder (*.npy)")
    w.add_argument("--checkpoint", metavar="PATH", help="M³ViT checkpoint (folder of {rank}.pth)")
    w.add_argument("--seed", type=int, metavar="N", help="seeded weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="PATH", help="an image file or a folder of images")
    src.add_argument("--video", metavar="FILE", help="a video/GIF read with imageio")
    src.add_argument("--synthetic", type=int, metavar="N", help="N synthetic images")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop a video after N frames")
    p.add_argument("--task", default="0", help="task id or name (semseg=0, depth=1)")
    p.add_argument("--batch", type=int, default=1, help="images per run (num_images)")
    p.add_argument("--stop-at", metavar="STAGE",
                   help="stop at a stage (golden tap name, e.g. l0.q) for the first image and "
                        "write its tensor")
    p.add_argument("--bitstream", metavar="F.bit", help="pynq: the bitstream (F.hwh beside it)")
    p.add_argument("--hwh", metavar="F.hwh", help="pynq: the .hwh, if not beside the .bit")
    p.add_argument("--kernel", help="the kernel's instance name in the .hwh, if several")
    p.add_argument("--record", metavar="FILE.jsonl", help="record the device session")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                   help="rtl: the simulator (default verilator)")
    p.add_argument("--no-pictures", action="store_true", help="do not run the task heads")
    p.add_argument("--on-wrap", choices=("raise", "wrap"), default="raise",
                   help="weights outside their formats: stop (default) or wrap as the hardware")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_run)

    r = subparsers.add_parser(
        "regmap", help="print the control register map (ours, or parsed from a .hwh)",
        description="Print the accelerator's control register map (spec §10.3 + moevit "
                    "extensions), or the one in a Vivado .hwh, checked against the driver's.")
    r.add_argument("--hwh", metavar="FILE", help="parse this .hwh instead")
    r.add_argument("--kernel", help="the kernel's instance name in the .hwh, if several")
    r.add_argument("--json", action="store_true", help="JSON (same as --format json)")
    r.add_argument("--format", choices=("text", "json", "c", "markdown"), default="text")
    r.set_defaults(func=cmd_regmap)
