"""``pynq`` backend: the ZCU104 (or any PYNQ board) running a moevit or Edge-MoE bitstream.

``PynqDevice(cfg, bitstream="moevit.bit")`` needs the ``.hwh`` beside the ``.bit`` (same stem,
PYNQ's convention) or ``hwh=``; it parses the kernel's register map from it with
:func:`moevit.host.hwh.parse_hwh` (the driver then refuses a map that differs from what it
needs), downloads the bitstream with ``pynq.Overlay``, maps the control block with
``pynq.MMIO`` at the ``.hwh``'s base address and allocates DRAM with ``pynq.allocate``.

``pynq`` is imported only here: it pins numpy < 2 and runs on the board's own Python (see
docs/host.md).  Where PMBus rails are readable (``pynq.get_rails``, ``pynq.DataRecorder``)
:meth:`PynqDevice.power_monitor` records the power of each rail during a run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.host.device import Buffer, Device
from moevit.host.errors import BackendUnavailable, DeviceError
from moevit.host.hwh import parse_hwh, require_map

#: PMBus sampling interval of the power monitor
POWER_SAMPLE_S = 0.05


def _import_pynq():
    try:
        import pynq
    except ImportError as e:
        raise BackendUnavailable(
            f"the pynq backend runs on the board: the 'pynq' package is not installed here "
            f"({e}); install the moevit host library on the ZCU104's PYNQ image (docs/host.md), "
            f"or use --backend golden") from None
    return pynq


class PynqBuffer(Buffer):
    """A ``pynq.allocate`` buffer (itself a numpy array) with the driver's interface."""

    def __init__(self, pbuf, name: str):
        addr = getattr(pbuf, "device_address", None)
        if addr is None:
            addr = pbuf.physical_address     # PYNQ < 2.7
        super().__init__(pbuf, addr, name)

    def sync_to_device(self):
        self.array.sync_to_device()

    def sync_from_device(self):
        self.array.sync_from_device()


class PynqDevice(Device):
    """The board (see the module docstring)."""

    backend = "pynq"

    def __init__(self, cfg: AcceleratorConfig, *, bitstream=None, hwh=None, kernel=None,
                 download: bool = True):
        self.cfg = cfg
        if bitstream is None:
            raise DeviceError("the pynq backend needs a bitstream: pass --bitstream F.bit (with "
                              "F.hwh beside it)")
        bit = Path(bitstream)
        if not bit.is_file():
            raise DeviceError(f"bitstream {bit} does not exist")
        hwh_path = Path(hwh) if hwh is not None else bit.with_suffix(".hwh")
        if not hwh_path.is_file():
            raise DeviceError(f"{bit} has no .hwh beside it ({hwh_path} is missing): copy the "
                              f".hwh Vivado wrote with the bitstream (same stem) next to it, or "
                              f"pass --hwh")
        self._regmap = parse_hwh(hwh_path, kernel)
        # refuse a mismatching map before touching the board; moevit's own bitstream has the
        # cycles register, Edge-MoE's has none
        self.has_cycle_counter = require_map(self._regmap).extensions
        if self._regmap.base_address is None:
            raise DeviceError(f"{hwh_path}: no base address for kernel {self._regmap.name} (no "
                              f"MEMRANGE and no C_S_AXI_CONTROL_BASEADDR); is it connected to "
                              f"the PS in the block design?")
        pynq = self._pynq = _import_pynq()
        try:
            self.overlay = pynq.Overlay(str(bit), download=download)
        except Exception as e:   # noqa: BLE001 - PYNQ raises several kinds off a board
            raise BackendUnavailable(f"could not load {bit} with pynq.Overlay ({type(e).__name__}: "
                                     f"{e}); is this a PYNQ board with the FPGA manager?") from None
        self.mmio = pynq.MMIO(self._regmap.base_address, self._regmap.address_range or 0x10000)
        hz = self._regmap.extra.get("clock_hz")
        if not hz:
            clocks = getattr(pynq, "Clocks", None)
            hz = float(clocks.fclk0_mhz) * 1e6 if clocks is not None else cfg.clock_hz
        self._clock_hz = float(hz)

    @property
    def regmap(self):
        return self._regmap

    @property
    def clock_hz(self) -> float:
        return self._clock_hz

    def read32(self, offset: int) -> int:
        return int(self.mmio.read(offset)) & 0xFFFFFFFF

    def write32(self, offset: int, value: int) -> None:
        self.mmio.write(offset, int(value) & 0xFFFFFFFF)

    def allocate(self, shape, dtype, name: str = "") -> Buffer:
        try:
            pbuf = self._pynq.allocate(shape=tuple(shape), dtype=np.dtype(dtype))
        except Exception as e:   # noqa: BLE001
            raise DeviceError(f"pynq.allocate({tuple(shape)}, {np.dtype(dtype)}) for {name} "
                              f"failed ({e}); is the CMA pool large enough?") from None
        return PynqBuffer(pbuf, name)

    @contextlib.contextmanager
    def power_monitor(self):
        """Mean power (W) per PMBus rail over the block, where ``pynq.get_rails`` reads any."""
        out: dict = {}
        get_rails = getattr(self._pynq, "get_rails", None)
        recorder_cls = getattr(self._pynq, "DataRecorder", None)
        rails = {}
        if get_rails is not None and recorder_cls is not None:
            with contextlib.suppress(Exception):
                rails = {n: r.power for n, r in get_rails().items() if getattr(r, "power", None)}
        if not rails:
            yield out
            return
        rec = recorder_cls(*rails.values())
        with rec.record(POWER_SAMPLE_S):
            t0 = time.perf_counter()
            yield out
        frame = rec.frame
        for col in frame.columns:
            if col.endswith("_power") or "power" in col:
                out[col] = float(frame[col].mean())
        out["seconds"] = time.perf_counter() - t0

    def close(self):
        pass
