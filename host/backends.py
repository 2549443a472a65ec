"""Backends by name.  ``open_device(name, cfg, **options)`` returns an open
:class:`moevit.host.device.Device`.

- ``golden``: :class:`moevit.host.backend_golden.GoldenDevice` (options: ``cycle_model``,
  ``stall_at``).
- ``pynq``: :class:`moevit.host.backend_pynq.PynqDevice` (options: ``bitstream``, ``hwh``,
  ``kernel``); runs on the board.
- ``rtl``: :class:`moevit.host.backend_rtl.RtlDevice`, the RTL top ``moevit_top`` under cocotb
  (cocotbext-axi ``AxiLiteMaster`` for the registers, ``AxiRam`` per memory port for DRAM,
  timeouts counted in kernel cycles).  It exists only inside a simulation (option
  ``harness``, which an entry function of :mod:`moevit.sim.tb_host_rtl` receives); from
  outside, run host code there with :func:`moevit.host.backend_rtl.run_session` or
  ``moevit run --backend rtl``.
"""

from __future__ import annotations

from moevit.config import AcceleratorConfig
from moevit.host.device import Device
from moevit.host.errors import BackendUnavailable

BACKENDS = ("golden", "pynq", "rtl")


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
