"""Backends by name.  ``open_device(name, cfg, **options)`` returns an open
:class:`moevit.host.device.Device`.

- ``golden``: :class:`moevit.host.backend_golden.GoldenDevice` (options: ``cycle_model``,
  ``stall_at``).
- ``pynq``: :class:`moevit.host.backend_pynq.PynqDevice` (options: ``bitstream``, ``hwh``,
  ``kernel``); runs on the board.
- ``rtl``: the RTL accelerator top under cocotb (cocotbext-axi ``AxiLiteMaster`` for the
  registers, ``AxiRam`` for DRAM, timeouts counted in cycles).  The top does not exist yet
  (issue 11), so selecting it raises :class:`BackendUnavailable`; a ``RtlDevice`` implementing
  :class:`Device` registers here when it does.
"""

from __future__ import annotations

from moevit.config import AcceleratorConfig
from moevit.host.device import Device
from moevit.host.errors import BackendUnavailable

BACKENDS = ("golden", "pynq", "rtl")

RTL_NOT_BUILT = ("the rtl backend needs the RTL accelerator top (issue 11: AXI masters, the "
                 "control block, the layer sequencer), which is not built yet; use --backend "
                 "golden (behavioural) or --backend pynq (board)")


def open_device(name: str, cfg: AcceleratorConfig, **options) -> Device:
    if name == "golden":
        from moevit.host.backend_golden import GoldenDevice
        return GoldenDevice(cfg, **options)
    if name == "pynq":
        from moevit.host.backend_pynq import PynqDevice
        return PynqDevice(cfg, **options)
    if name == "rtl":
        from moevit.host.backend_rtl import open_in_simulation
        return open_in_simulation(cfg, **options)
    raise BackendUnavailable(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
