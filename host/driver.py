"""The host driver: one class over any :class:`moevit.host.device.Device`.

:class:`Accelerator` packs the weights (spec §7, cached by content), allocates every buffer once,
writes the pointers, and runs batches: :meth:`Accelerator.run` (a batch, optionally stopped at
a stage), :meth:`Accelerator.stream` (an iterable of frames, double-buffered: the next batch is
packed into the other image buffer while the current one runs) and
:meth:`Accelerator.throughput_test`.  Registers are written only when their value changes, so a
task switch writes only the gate pointer (M³ViT's zero-overhead task switch).  Every wait times
out (default: a multiple of the run's estimate, :mod:`moevit.host.estimate`) with an error
naming the stage register, the cycles elapsed and the likely causes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, ShapeError
from moevit.golden.fixed import quantize
from moevit.host.device import Device
from moevit.host.errors import DeviceTimeout
from moevit.host.estimate import default_timeout, estimate_seconds
from moevit.host.hwh import require_map
from moevit.host.layout import GATE_POINTER, activation_layout, describe_stage, stage_for_tap
from moevit.host.packing import PackedWeights, pack_weights
from moevit.regmap import CTRL_BITS, REGMAP

#: image buffers for double buffering
IMAGE_SLOTS = 2
#: what a wait timeout most likely means, per backend (quoted in the error)
LIKELY_CAUSES = {
    "pynq": ("the bitstream is not loaded or its clock is stopped; a pointer outside the "
             "allocated buffers (the AXI masters stall); the .hwh does not belong to the .bit; "
             "ap_start written while the kernel was busy; or a timeout too short for this "
             "backend (pass timeout_s=...)"),
    "rtl": ("the core's sequencer is stuck in or after the stage above (ap_done never "
            "raised); an AXI master waits on memory (a pointer outside the allocated buffers, "
            "or the RAM model's channels paused); ap_start written while the kernel was busy; "
            "or a timeout too short for a simulation (pass timeout_s=...; it counts kernel "
            "cycles, not wall time)"),
    "golden": ("the behavioural model raised or stalled (fault injection: stall_at); or a "
               "timeout too short for this machine (pass timeout_s=...)"),
}


@dataclass
class RunResult:
    """One batch: ``output`` raw int64 [N, T, D] (None when stopped at a stage), ``tap`` the
    stopped stage's tensor in the golden model's tap format [1, ...], timings in seconds."""

    task: int
    output: np.ndarray | None = None
    stage: str | None = None
    tap: np.ndarray | None = None
    names: list = field(default_factory=list)
    cycles: int | None = None
    timings: dict = field(default_factory=dict)


def to_pixels(images, cfg: AcceleratorConfig) -> np.ndarray:
    """uint8 images [N][C][H][W] from uint8 or float (pixel/256, floored) arrays, [C,H,W] or
    [N,C,H,W]; a :class:`ShapeError` naming the expected shape otherwise."""
    shape = (cfg.image_channels, cfg.image_height, cfg.image_width)
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1:] != shape:
        raise ShapeError(f"images of shape {list(np.shape(images))} do not fit preset "
                         f"{cfg.name!r}: expected [N, {shape[0]}, {shape[1]}, {shape[2]}] (uint8, "
                         f"or float pixel/256)")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    raw, _ = quantize(a, cfg.formats.pixel, name="images")   # floor, 1.0 wraps to 0 (as golden)
    return raw.astype(np.uint8)


class Accelerator:
    """Drive one accelerator for one config and weight set.

    ``device``: an open :class:`Device`; ``weights``: float or raw :class:`Weights` (or an
    already :class:`PackedWeights`); ``batch``: the most images per run (buffers are sized for
    it); ``timeout_s``: fixed wait timeout (default: :func:`moevit.host.estimate.default_timeout`).
    """

    def __init__(self, device: Device, cfg: AcceleratorConfig, weights, *, batch: int = 1,
                 timeout_s: float | None = None, batched_schedule: bool = False):
        if batch < 1:
            raise ConfigError(f"batch must be >= 1 (got {batch})")
        self.device, self.cfg, self.batch = device, cfg, batch
        self.timeout_s = timeout_s
        self.map_check = require_map(device.regmap)
        if batched_schedule and not self.map_check.extensions:
            raise ConfigError(f"the batched schedule needs moevit's mode register; the "
                              f"bitstream's map ({device.regmap.source}) has no extensions")
        self._words = REGMAP.words()
        self._shadow: dict[int, int] = {}
        t0 = time.perf_counter()
        self.packed: PackedWeights = (weights if isinstance(weights, PackedWeights)
                                      else pack_weights(weights, cfg))
        self.timings = dict(weights_pack_s=time.perf_counter() - t0)
        t0 = time.perf_counter()
        self._allocate()
        self.timings["weights_load_s"] = time.perf_counter() - t0
        self._reload = True          # the conv weights go on chip at the first run
        if self.map_check.extensions:
            self._write("mode", int(batched_schedule))

    # ---------------------------------------------------------------- set-up
    def _allocate(self):
        d, cfg = self.device, self.cfg
        act = activation_layout(cfg, self.batch)
        self.buffers = {}
        for name, (shape, dt) in act.items():
            if name == "images":
                continue
            self.buffers[name] = d.allocate(shape, dt, name)
        self.image_buffers = [d.allocate(*act["images"], f"images{s}") for s in range(IMAGE_SLOTS)]
        for name, arr in self.packed.arrays.items():
            buf = self.buffers[name] = d.allocate(arr.shape, arr.dtype, name)
            buf.array[...] = arr
            buf.sync_to_device()
        self.gate_buffers = []
        for t, g in enumerate(self.packed.gates):
            buf = d.allocate(g.shape, g.dtype, f"{GATE_POINTER}[task {t}]")
            buf.array[...] = g
            buf.sync_to_device()
            self.gate_buffers.append(buf)
        for name, buf in self.buffers.items():
            self._write_pointer(name, buf.device_address)
        self._write_pointer(GATE_POINTER, self.gate_buffers[0].device_address)
        self._write_pointer("images", self.image_buffers[0].device_address)
        self._write("debug_id", 0)

    def _write(self, word: str, value: int):
        off = self._words[word]
        value = int(value) & 0xFFFFFFFF
        if self._shadow.get(off) != value:
            self.device.write32(off, value)
            self._shadow[off] = value

    def _write_pointer(self, name: str, address: int):
        self._write(name + "_1", address & 0xFFFFFFFF)
        self._write(name + "_2", address >> 32)

    @property
    def weight_bytes(self) -> int:
        return self.packed.nbytes

    # ---------------------------------------------------------------- one batch, in steps
    def task_index(self, task) -> int:
        from moevit.golden.tasks import default_tasks, task_index
        return task_index(default_tasks(self.cfg.num_tasks), task)

    def _load(self, slot: int, px: np.ndarray, tm: dict):
        t0 = time.perf_counter()
        buf = self.image_buffers[slot]
        buf.array[:len(px)] = px
        t1 = time.perf_counter()
        buf.sync_to_device()
        t2 = time.perf_counter()
        tm["pack_s"] = tm.get("pack_s", 0.0) + t1 - t0
        tm["sync_s"] = tm.get("sync_s", 0.0) + t2 - t1

    def _launch(self, slot: int, n: int, task: int, debug_id: int):
        self._write_pointer("images", self.image_buffers[slot].device_address)
        self._write_pointer(GATE_POINTER, self.gate_buffers[task].device_address)
        self._write("num_images", n)
        self._write("reload_one_time_weights", int(self._reload))
        self._write("debug_id", debug_id)
        self.device.write32(self._words["CTRL"], CTRL_BITS["ap_start"])
        self._reload = False

    def _wait(self, n: int, timeout_s: float | None, tm: dict) -> int | None:
        d = self.device
        if timeout_s is None:
            timeout_s = self.timeout_s or default_timeout(self.cfg, d.backend, n)
        mask = CTRL_BITS["ap_done"] | CTRL_BITS["ap_idle"]
        try:
            r = d.wait(self._words["CTRL"], mask, timeout_s)
        except DeviceTimeout as e:
            raise self._timeout_error(e, n, timeout_s) from None
        tm["wait_s"] = tm.get("wait_s", 0.0) + r.elapsed_s
        cycles = None
        if self.map_check.extensions:
            c = d.read32(self._words["cycles_1"]) | (d.read32(self._words["cycles_2"]) << 32)
            cycles = c if d.has_cycle_counter else None
        return cycles

    def _timeout_error(self, e: DeviceTimeout, n: int, timeout_s: float) -> DeviceTimeout:
        d, w = self.device, self._words
        if self.map_check.extensions:
            stage = f"stage register (0x{w['stage']:03x}) = {describe_stage(self.cfg, d.read32(w['stage']))}"
            if d.has_cycle_counter:
                c = d.read32(w["cycles_1"]) | (d.read32(w["cycles_2"]) << 32)
                cyc = f"{c} cycles elapsed (cycles register 0x{w['cycles_1']:03x})"
            else:
                cyc = (f"cycles elapsed unknown (the {d.backend} backend has no cycle counter; "
                       f"~{e.elapsed_s * d.clock_hz:.3g} at the {d.clock_hz / 1e6:g} MHz clock)")
        else:
            stage = "stage unknown (this bitstream has no stage register: Edge-MoE's own map)"
            cyc = f"~{e.elapsed_s * d.clock_hz:.3g} cycles at {d.clock_hz / 1e6:g} MHz"
        est = estimate_seconds(self.cfg, d.backend, n)
        limit = f"{timeout_s:.3g} s"
        if d.timeout_in_cycles:
            limit = (f"{math.ceil(timeout_s * d.clock_hz)} kernel cycles ({timeout_s:.3g} s at "
                     f"{d.clock_hz / 1e6:g} MHz)")
        err = DeviceTimeout(
            f"{d.backend} kernel did not finish {n} image(s) within {limit} (estimate "
            f"{est:.3g} s): CTRL (0x{w['CTRL']:03x}) = 0x{e.last_value:08x}; {stage}; {cyc}.\n"
            f"  likely causes: {LIKELY_CAUSES.get(d.backend, LIKELY_CAUSES['pynq'])}")
        err.last_value, err.elapsed_s = e.last_value, e.elapsed_s
        err.cycles = getattr(e, "cycles", None)
        return err

    def _read_output(self, n: int, tm: dict) -> np.ndarray:
        t0 = time.perf_counter()
        x = self.buffers["x"]
        x.sync_from_device()
        tm["sync_s"] = tm.get("sync_s", 0.0) + time.perf_counter() - t0
        return np.array(x.array[:n], dtype=np.int64)

    def _read_tap(self, tap: str) -> np.ndarray:
        stage = stage_for_tap(self.cfg, tap)
        ptr = dict(stage.taps)[tap]
        buf = self.buffers[ptr]
        buf.sync_from_device()
        if ptr == "x":
            return np.array(buf.array[:1], dtype=np.int64)
        shape = _tap_shape(self.cfg, tap)
        flat = np.asarray(buf.array).reshape(-1)[:int(np.prod(shape))]
        return np.array(flat.reshape(shape)[None], dtype=np.int64)

    # ---------------------------------------------------------------- public runs
    def run(self, images, task=0, *, stop_at: str | None = None,
            timeout_s: float | None = None) -> RunResult:
        """Run ``images`` (uint8 or float [N][C][H][W]); more than ``batch`` run in chunks.

        ``stop_at``: a golden tap name (``"l0.q"``, ``"patch_embed"``, ``"l1.score_buffer"``...):
        runs with that stage's debug_id and returns its tensor for the first image as ``tap``.
        """
        t = self.task_index(task)
        tm: dict = {}
        t0 = time.perf_counter()
        px = to_pixels(images, self.cfg)
        tm["pack_s"] = time.perf_counter() - t0
        if stop_at is not None:
            stage = stage_for_tap(self.cfg, stop_at)
            self._load(0, px[:1], tm)
            self._launch(0, 1, t, stage.debug_id)
            cycles = self._wait(1, timeout_s, tm)
            self._write("debug_id", 0)
            return RunResult(t, None, stop_at, self._read_tap(stop_at), cycles=cycles, timings=tm)
        outs, cycles = [], 0
        for i in range(0, len(px), self.batch):
            chunk = px[i:i + self.batch]
            self._load(0, chunk, tm)
            self._launch(0, len(chunk), t, 0)
            c = self._wait(len(chunk), timeout_s, tm)
            cycles = None if c is None or cycles is None else cycles + c
            outs.append(self._read_output(len(chunk), tm))
        return RunResult(t, np.concatenate(outs), cycles=cycles, timings=tm)

    def stream(self, frames, task=0, *, timeout_s: float | None = None):
        """Generator of :class:`RunResult` (one per batch of ``batch`` frames).

        ``frames``: an iterable of images [C][H][W] (uint8 or float) or of (name, image)
        pairs (see :mod:`moevit.host.frames`).  While batch k runs, batch k+1 is packed into
        the other image buffer.
        """
        t = self.task_index(task)
        batches = _batches(frames, self.batch)
        cur = next(batches, None)
        if cur is None:
            return
        slot = 0
        tm: dict = {}
        self._load(slot, to_pixels(cur[1], self.cfg), tm)
        self._launch(slot, len(cur[1]), t, 0)
        while True:
            nxt = next(batches, None)
            ntm: dict = {}
            if nxt is not None:
                t0 = time.perf_counter()
                px = to_pixels(nxt[1], self.cfg)
                ntm["pack_s"] = time.perf_counter() - t0
                self._load(1 - slot, px, ntm)   # overlaps the running batch
            cycles = self._wait(len(cur[1]), timeout_s, tm)
            out = self._read_output(len(cur[1]), tm)
            yield RunResult(t, out, names=cur[0], cycles=cycles, timings=tm)
            if nxt is None:
                return
            slot, cur, tm = 1 - slot, nxt, ntm
            self._launch(slot, len(cur[1]), t, 0)

    def throughput_test(self, batches: int = 3, task=0, seed: int = 0) -> dict:
        """Stream ``batches`` batches of random images and report, in the spirit of FINN's
        driver: images/s, ms/image, DRAM in/out MB/s, kernel clock, host overheads (pack,
        sync, wait) per image, and the kernel time from the cycle counter where there is one."""
        rng = np.random.default_rng(seed)
        cfg = self.cfg
        n = batches * self.batch
        shape = (cfg.image_channels, cfg.image_height, cfg.image_width)
        frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        tot: dict = {}
        cycles, have_cycles = 0, True
        with self.device.power_monitor() as power:
            t0 = time.perf_counter()
            for r in self.stream(frames, task):
                for k, v in r.timings.items():
                    tot[k] = tot.get(k, 0.0) + v
                have_cycles = have_cycles and r.cycles is not None
                cycles += r.cycles or 0
            wall = time.perf_counter() - t0
        act = activation_layout(cfg, 1)
        in_b = int(np.prod(act["images"][0])) * act["images"][1].itemsize
        out_b = int(np.prod(act["x"][0])) * act["x"][1].itemsize
        wait = tot.get("wait_s", 0.0)
        clock = self.device.clock_hz
        return dict(
            backend=self.device.backend, preset=cfg.name, images=n, batch=self.batch,
            seconds=wall, images_per_s=n / wall, ms_per_image=1e3 * wall / n,
            kernel_clock_mhz=clock / 1e6,
            kernel_ms_per_image=(1e3 * cycles / clock / n) if have_cycles else None,
            kernel_time_source=("cycle counter" if have_cycles else
                                f"none: the {self.device.backend} backend has no cycle counter"),
            dram_in_MBps=n * in_b / wait / 1e6 if wait else None,
            dram_out_MBps=n * out_b / wait / 1e6 if wait else None,
            weights_MB=self.weight_bytes / 1e6,
            pack_ms_per_image=1e3 * tot.get("pack_s", 0.0) / n,
            sync_ms_per_image=1e3 * tot.get("sync_s", 0.0) / n,
            wait_ms_per_image=1e3 * wait / n,
            power_W=power or None)

    def close(self):
        self.device.close()


def _tap_shape(cfg: AcceleratorConfig, tap: str) -> tuple[int, ...]:
    """Shape of one image's golden tap (the DRAM buffer's leading elements)."""
    act = activation_layout(cfg, 1)
    kind = tap.split(".")[-1]
    if kind == "score_buffer":
        return act["attn"][0]
    if kind == "softmax_info":
        return act["attn_softmax_info"][0]
    if kind == "hidden":
        return (cfg.tokens, cfg.mlp_hidden)
    return (cfg.tokens, cfg.dim)


def _batches(frames, size: int):
    """(names, stacked images) per ``size`` frames; frames are arrays or (name, array)."""
    names, imgs = [], []
    for i, f in enumerate(frames):
        if isinstance(f, tuple):
            name, img = f
        else:
            name, img = f"frame{i:05d}", f
        names.append(name)
        imgs.append(np.asarray(img))
        if len(imgs) == size:
            yield names, np.stack(imgs)
            names, imgs = [], []
    if imgs:
        yield names, np.stack(imgs)


def open_accelerator(backend: str, cfg: AcceleratorConfig, weights, *, batch: int = 1,
                     **device_options) -> Accelerator:
    """An :class:`Accelerator` on a backend opened by name (see :mod:`moevit.host.backends`)."""
    from moevit.host.backends import open_device
    return Accelerator(open_device(backend, cfg, **device_options), cfg, weights, batch=batch)


__all__ = ["Accelerator", "RunResult", "to_pixels", "open_accelerator"]
