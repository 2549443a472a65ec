"""The device interface the host driver is written against (the Glasgow idea: host code written
once, over interchangeable devices).

A :class:`Device` offers 32-bit register access on the kernel's control block, DRAM buffers
(:class:`Buffer`: a numpy array with a ``device_address`` and explicit syncs), the kernel clock
and a wait with a timeout.  Timeouts are given in seconds; a simulated backend counts them in
kernel cycles (seconds x clock), a real one in wall time.  Backends: ``golden``
(:mod:`moevit.host.backend_golden`), ``pynq`` (:mod:`moevit.host.backend_pynq`), ``rtl``
(:mod:`moevit.host.backend_rtl`, the RTL top under cocotb); see :mod:`moevit.host.backends`.
"""

from __future__ import annotations

import abc
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from moevit.host.errors import DeviceTimeout
from moevit.regmap import REGMAP, RegisterMap

#: simulated backends' DRAM: first address handed out, and the allocation alignment (a page,
#: as pynq.allocate); golden and rtl share it, so their sessions use the same pointers
DRAM_BASE = 0x1000_0000
DRAM_ALIGN = 4096


class Buffer:
    """A DRAM buffer: ``array`` (host view, numpy), ``device_address``, explicit syncs.

    The host writes ``array`` then calls :meth:`sync_to_device`; after a run it calls
    :meth:`sync_from_device` before reading.  Without the sync neither side sees the other's
    writes (as with a cached buffer on the board).
    """

    def __init__(self, array: np.ndarray, device_address: int, name: str = ""):
        self.array = array
        self.device_address = int(device_address)
        self.name = name

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def sync_to_device(self) -> None:
        raise NotImplementedError

    def sync_from_device(self) -> None:
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, {self.array.dtype}{list(self.array.shape)} "
                f"@0x{self.device_address:x})")


@dataclass
class WaitResult:
    """How a wait ended: the register value that satisfied it, and the time it took."""

    value: int
    elapsed_s: float


class Device(abc.ABC):
    """One accelerator: control registers, DRAM buffers, clock, waits."""

    #: backend name (``golden``, ``pynq``, ...)
    backend: str = "?"
    #: does the ``cycles`` register count real kernel cycles?
    has_cycle_counter: bool = False
    #: does :meth:`wait` count its timeout in kernel cycles (a simulation) rather than
    #: wall time?
    timeout_in_cycles: bool = False

    @property
    def regmap(self) -> RegisterMap:
        """The register map this device presents (parsed from its .hwh on the board)."""
        return REGMAP

    @property
    @abc.abstractmethod
    def clock_hz(self) -> float:
        """The kernel clock."""

    @abc.abstractmethod
    def read32(self, offset: int) -> int:
        """Read the 32-bit control word at byte ``offset``."""

    @abc.abstractmethod
    def write32(self, offset: int, value: int) -> None:
        """Write the 32-bit control word at byte ``offset``."""

    @abc.abstractmethod
    def allocate(self, shape, dtype, name: str = "") -> Buffer:
        """A zeroed DRAM buffer of ``shape`` and ``dtype``."""

    def wait(self, offset: int, mask: int, timeout_s: float, poll_s: float = 1e-3) -> WaitResult:
        """Poll the word at ``offset`` until ``value & mask`` is non-zero; raise
        :class:`DeviceTimeout` (with ``.last_value`` and ``.elapsed_s``) after ``timeout_s``."""
        t0 = time.perf_counter()
        while True:
            v = self.read32(offset)
            elapsed = time.perf_counter() - t0
            if v & mask:
                return WaitResult(v, elapsed)
            if elapsed > timeout_s:
                err = DeviceTimeout(f"word 0x{offset:03x} & 0x{mask:x} still 0 after "
                                    f"{elapsed:.3f} s (last value 0x{v:08x})")
                err.last_value, err.elapsed_s = v, elapsed
                raise err
            time.sleep(poll_s)

    def power_monitor(self):
        """A context manager yielding a dict filled with power readings (W) on exit, where
        the device can measure power; an empty dict otherwise."""
        return contextlib.nullcontext({})

    def close(self) -> None:
        """Release the device (threads, mappings)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
