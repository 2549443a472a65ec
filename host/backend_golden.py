"""``golden`` backend: a behavioural accelerator in-process.

A register file with the map of :data:`moevit.regmap.REGMAP` and a DRAM model holding every
allocated buffer (a device-side copy per buffer: the host sees the device's writes only after
``sync_from_device`` and vice versa).  Writing ``ap_start`` starts a run on a worker thread that
reads the pointers, the weights and the images from DRAM and runs
:class:`moevit.golden.model.GoldenModel`, honouring:

- ``num_images``: images ``0..n-1`` of the images buffer, outputs in ``x[0..n-1]``;
- ``reload_one_time_weights``: the patch-embedding weights/bias are copied on chip only when
  bit 0 is set; otherwise the on-chip copy of an earlier run is used (zeros after reset);
- ``moe_w_gate``: whatever gate array the pointer designates (that is the task switch);
- ``debug_id``: stop after that stage for the first image, every buffer the schedule wrote up to
  there holding its tensor (spec §6.2, from the golden model's taps);
- ``mode`` bit 0 (batched schedule): accepted; results do not depend on it.

After a run CTRL reads ap_done | ap_idle | ap_ready (ap_done and ap_ready clear on read, as in
HLS), ``stage`` holds the last stage finished and IP_ISR bit 0 is set if IP_IER bit 0 is.
The ``cycles`` register holds ``cycle_model(cfg, num_images, debug_id, batched)`` where one is
given; no cycle model of the accelerator exists yet (issue 11), so by default it stays 0 and
:attr:`has_cycle_counter` is False.  Scratch buffers (tmp*, attn, ...) after a complete run and
``tmp_hidden`` on MoE layers are not modelled (left as they were).

``stall_at``: fault injection for tests; the run stops making progress after that stage and
never finishes (until :meth:`close`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden.model import GoldenModel
from moevit.golden.weights import Weights
from moevit.host.device import DRAM_ALIGN, DRAM_BASE, Buffer, Device
from moevit.host.errors import DeviceError
from moevit.host.layout import (LAYER_DEBUG_STRIDE, PATCH_EMBED_DEBUG_ID, GATE_POINTER,
                                activation_layout, stage_by_id, stages, weight_layout)
from moevit.regmap import CTRL_BITS, REGMAP

#: models kept per weight set (a task switch points at another gate: another set)
MODEL_CACHE = 4


class GoldenBuffer(Buffer):
    """A buffer with a separate device-side copy (the DRAM model)."""

    def __init__(self, array, address, name, device):
        super().__init__(array, address, name)
        self.device_bytes = np.zeros(array.nbytes, dtype=np.uint8)
        self.version = 0          # bumped by every host write (sync_to_device)
        self._dev = device

    def sync_to_device(self):
        self._dev._check_open()
        self.device_bytes[:] = np.ascontiguousarray(self.array).view(np.uint8).reshape(-1)
        self.version += 1

    def sync_from_device(self):
        self._dev._check_open()
        with self._dev._lock:
            self.array.reshape(-1).view(np.uint8)[:] = self.device_bytes


class GoldenDevice(Device):
    """The behavioural device for one config (see the module docstring)."""

    backend = "golden"

    def __init__(self, cfg: AcceleratorConfig, *, cycle_model=None, stall_at: int | None = None,
                 fast: bool = True):
        self.cfg = cfg
        self.cycle_model = cycle_model
        self.has_cycle_counter = cycle_model is not None
        self.stall_at = stall_at
        self.fast = fast
        self._words = REGMAP.words()
        self._regs = {off: 0 for off in self._words.values()}
        self._regs[self._words["CTRL"]] = CTRL_BITS["ap_idle"]
        self._buffers: list[GoldenBuffer] = []
        self._next = DRAM_BASE
        self._onchip_conv = None
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        self._thread = None
        self._closed = threading.Event()
        self._error: str | None = None
        self._active: dict = {}
        self._onchip_key: tuple = ("zeros",)
        self._onchip_loads = 0

    # ---------------------------------------------------------------- interface
    @property
    def clock_hz(self) -> float:
        return self.cfg.clock_hz

    def _check_open(self):
        if self._closed.is_set():
            raise DeviceError("golden device is closed")

    def _offset(self, offset: int) -> int:
        if offset not in self._regs:
            raise DeviceError(f"golden device: 0x{offset:03x} is no register of the map "
                              f"(a reserved word); see moevit regmap")
        return offset

    def read32(self, offset: int) -> int:
        self._check_open()
        if self._error:
            msg, self._error = self._error, None
            raise DeviceError(f"golden device: the run failed: {msg}")
        with self._lock:
            v = self._regs[self._offset(offset)]
            if offset == self._words["CTRL"]:   # ap_done, ap_ready: clear on read
                self._regs[offset] = v & ~(CTRL_BITS["ap_done"] | CTRL_BITS["ap_ready"])
            return v

    def write32(self, offset: int, value: int) -> None:
        self._check_open()
        value = int(value) & 0xFFFFFFFF
        with self._lock:
            off = self._offset(offset)
            w = self._words
            if off == w["CTRL"]:
                keep = value & (CTRL_BITS["auto_restart"] | CTRL_BITS["ap_continue"])
                cur = self._regs[off]
                self._regs[off] = (cur & ~(CTRL_BITS["auto_restart"] | CTRL_BITS["ap_continue"])) | keep
                if value & CTRL_BITS["ap_start"] and cur & CTRL_BITS["ap_idle"]:
                    self._start()
                return
            if off == w["IP_ISR"]:            # toggle on write
                self._regs[off] ^= value
                return
            if off in (w["cycles_1"], w["cycles_2"], w["stage"]):
                return                         # read-only
            self._regs[off] = value

    def allocate(self, shape, dtype, name: str = "") -> Buffer:
        self._check_open()
        arr = np.zeros(shape, dtype=dtype)
        buf = GoldenBuffer(arr, self._next, name, self)
        self._next += -(-max(arr.nbytes, 1) // DRAM_ALIGN) * DRAM_ALIGN
        self._buffers.append(buf)
        return buf

    def close(self):
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    # ---------------------------------------------------------------- DRAM model
    def _view(self, pointer: str, shape, dtype) -> np.ndarray:
        """The device-side bytes at ``pointer``'s address as an array (shares memory)."""
        b, start, n = self._locate(pointer, shape, dtype)
        return b.device_bytes[start:start + n].view(dtype).reshape(shape)

    def _locate(self, pointer: str, shape, dtype):
        """(buffer, byte offset in it, byte count) that ``pointer`` designates."""
        lo, hi = self._words[pointer + "_1"], self._words[pointer + "_2"]
        regs = self._active   # the registers as latched at ap_start
        addr = regs[lo] | (regs[hi] << 32)
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        for b in self._buffers:
            if b.device_address <= addr and addr + n <= b.device_address + b.nbytes:
                return b, addr - b.device_address, n
        raise DeviceError(f"pointer {pointer} = 0x{addr:x} (+{n} bytes) is not inside any "
                          f"allocated buffer; write the buffer's device_address to "
                          f"{pointer}_1/_2 before ap_start")

    def _weights(self) -> Weights:
        wl = weight_layout(self.cfg)
        arrays = {n: self._view(n, shape, dt).astype(np.int64) for n, (shape, dt) in wl.items()}
        gate = arrays.pop(GATE_POINTER)
        arrays["patch_embed_weights"], arrays["patch_embed_bias"] = self._onchip_conv
        return Weights(**arrays, moe_w_gate_per_task=gate[None], raw=True)

    def _weights_key(self) -> tuple:
        """Identifies what the weight pointers designate: (address, size, buffer version) of
        each (the version changes with every host sync), and the on-chip conv copy's source."""
        key = [self._onchip_key]
        for name, (shape, dt) in weight_layout(self.cfg).items():
            b, start, n = self._locate(name, shape, dt)
            key.append((b.device_address + start, n, b.version))
        return tuple(key)

    def _model(self) -> GoldenModel:
        key = self._weights_key()
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        # the device sees one gate (the one moe_w_gate points at): a one-task model
        m = self._models[key] = GoldenModel(self.cfg.replace(num_tasks=1), self._weights(),
                                            fast=self.fast)
        while len(self._models) > MODEL_CACHE:
            self._models.popitem(last=False)
        return m

    # ---------------------------------------------------------------- a run
    def _start(self):
        w = self._words
        ctrl = w["CTRL"]
        self._regs[ctrl] = (self._regs[ctrl] | CTRL_BITS["ap_start"]) & ~CTRL_BITS["ap_idle"]
        self._regs[w["stage"]] = 0
        snapshot = self._active = dict(self._regs)
        self._thread = threading.Thread(target=self._run, args=(snapshot,), daemon=True,
                                        name="golden-device-run")
        self._thread.start()

    def _set_stage(self, code: int):
        with self._lock:
            self._regs[self._words["stage"]] = code
        if self.stall_at is not None and code == self.stall_at:
            self._closed.wait()   # hang here (fault injection) until the device is closed
            raise _Closed()

    def _run(self, regs):
        w, cfg = self._words, self.cfg
        try:
            n = regs[w["num_images"]]
            debug = regs[w["debug_id"]]
            batched = bool(regs[w["mode"]] & 1)
            act = activation_layout(cfg, max(n, 1))
            if regs[w["reload_one_time_weights"]] & 1:
                wl = weight_layout(cfg)
                conv = ("patch_embed_weights", "patch_embed_bias")
                self._onchip_conv = tuple(self._view(p, *wl[p]).astype(np.int64) for p in conv)
                self._onchip_key = ("reload", self._onchip_loads)
                self._onchip_loads += 1
            elif self._onchip_conv is None:
                self._onchip_conv = tuple(np.zeros(weight_layout(cfg)[p][0], np.int64)
                                          for p in ("patch_embed_weights", "patch_embed_bias"))
                self._onchip_key = ("zeros",)
            model = self._model()
            if n == 0:
                pass
            elif debug:
                self._run_debug(model, debug, act)
            else:
                images = self._view("images", act["images"][0], act["images"][1]).copy()
                layers = iter(range(cfg.depth * n))

                def progress():
                    self._set_stage(LAYER_DEBUG_STRIDE * (next(layers) % cfg.depth) + 12)
                res = model.run(images, task=0, progress=progress)
                self._view("x", *act["x"])[:n] = res.output
            cycles = int(self.cycle_model(cfg, n, debug, batched)) if self.cycle_model else 0
        except _Closed:
            return
        except Exception as e:   # noqa: BLE001 - reported on the next register read
            self._error = f"{type(e).__name__}: {e}"
            cycles = 0
        with self._lock:
            self._regs[w["cycles_1"]] = cycles & 0xFFFFFFFF
            self._regs[w["cycles_2"]] = (cycles >> 32) & 0xFFFFFFFF
            ctrl = w["CTRL"]
            done = CTRL_BITS["ap_done"] | CTRL_BITS["ap_idle"] | CTRL_BITS["ap_ready"]
            self._regs[ctrl] = (self._regs[ctrl] & ~CTRL_BITS["ap_start"]) | done
            if self._regs[w["IP_IER"]] & 1:
                self._regs[w["IP_ISR"]] |= 1

    def _run_debug(self, model: GoldenModel, debug: int, act):
        cfg = self.cfg
        stop = stage_by_id(cfg, debug)
        if stop is None:
            raise DeviceError(f"debug_id {debug} is no stage of preset {cfg.name!r} "
                              f"(patch embedding {PATCH_EMBED_DEBUG_ID}, layer L: 16L+1..16L+12)")
        order = stages(cfg)
        upto = order[:order.index(stop) + 1]
        want = {t for s in upto for t, _ in s.taps}
        images = self._view("images", act["images"][0], act["images"][1])[:1].copy()
        res = model.run(images, task=0, taps=want)
        for s in upto:
            for tap, ptr in s.taps:
                v = res.taps[tap][0]
                if ptr == "x":
                    self._view("x", *act["x"])[0] = v
                else:
                    dt = act[ptr][1]
                    self._view(ptr, (v.size,), dt)[:] = v.reshape(-1)
            self._set_stage(s.debug_id)
        self._set_stage(debug)


class _Closed(Exception):
    """The device was closed while a stalled run waited."""
