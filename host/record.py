"""Record a device session as JSON lines, and replay it through the ``pynq`` backend's code.

:class:`RecordingDevice` wraps any :class:`Device` and writes one JSON object per line for every
call the driver makes: ``alloc`` (name, shape, dtype, address), ``write``/``read`` (offset,
value), ``wait`` (offset, mask, the value that ended it), ``sync_to``/``sync_from`` (address and
the sha256 of the buffer's bytes).  Data travels by content hash: the bytes of every
``sync_from`` (what the device produced) are stored once per hash in a ``blob`` line (zlib,
base64), those of ``sync_to`` only as their hash (the replay checks the host wrote the same).

:func:`fake_pynq_module` builds a stand-in for the ``pynq`` package that serves a recorded
session to :class:`moevit.host.backend_pynq.PynqDevice`: ``MMIO`` writes must match the
recording, reads (and the polls of a wait) return the recorded values, ``allocate`` returns
buffers at the recorded addresses whose ``sync_to_device`` checks the content hash and whose
``sync_from_device`` fills in the recorded bytes.  Any departure raises
:class:`ReplayMismatch` naming the operation; :meth:`ReplaySession.finish` checks nothing was
left over.  Sessions recorded on any backend replay this way, so a board session becomes a test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import types
import zlib
from pathlib import Path

import numpy as np

from moevit.host.device import Buffer, Device
from moevit.host.errors import ReplayMismatch

FORMAT_VERSION = 1


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


class _RecordingBuffer(Buffer):
    def __init__(self, inner: Buffer, rec: "RecordingDevice"):
        super().__init__(inner.array, inner.device_address, inner.name)
        self._inner, self._rec = inner, rec

    def sync_to_device(self):
        self._inner.sync_to_device()
        self._rec._log(op="sync_to", address=self.device_address, sha256=_sha(self.array))

    def sync_from_device(self):
        self._inner.sync_from_device()
        h = _sha(self.array)
        self._rec._blob(h, self.array)
        self._rec._log(op="sync_from", address=self.device_address, sha256=h)


class RecordingDevice(Device):
    """``inner`` with every driver call appended to the JSON-lines file ``path``."""

    def __init__(self, inner: Device, path, **header):
        self.inner = inner
        self.backend = inner.backend
        self.has_cycle_counter = inner.has_cycle_counter
        self.timeout_in_cycles = inner.timeout_in_cycles
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", buffering=1)   # line-buffered: readable while open
        self._blobs: set[str] = set()
        self._log(op="header", version=FORMAT_VERSION, backend=inner.backend,
                  clock_hz=inner.clock_hz, has_cycle_counter=inner.has_cycle_counter, **header)

    def _log(self, **rec):
        self._fh.write(json.dumps(rec, sort_keys=True) + "\n")

    def _blob(self, h: str, a: np.ndarray):
        if h not in self._blobs:
            data = zlib.compress(np.ascontiguousarray(a).tobytes(), 9)
            self._log(op="blob", sha256=h, zlib_b64=base64.b64encode(data).decode())
            self._blobs.add(h)

    @property
    def regmap(self):
        return self.inner.regmap

    @property
    def clock_hz(self):
        return self.inner.clock_hz

    def read32(self, offset):
        v = self.inner.read32(offset)
        self._log(op="read", offset=offset, value=v)
        return v

    def write32(self, offset, value):
        self.inner.write32(offset, value)
        self._log(op="write", offset=offset, value=int(value) & 0xFFFFFFFF)

    def allocate(self, shape, dtype, name=""):
        b = self.inner.allocate(shape, dtype, name)
        self._log(op="alloc", name=name, shape=list(b.shape), dtype=np.dtype(dtype).str,
                  address=b.device_address)
        return _RecordingBuffer(b, self)

    def wait(self, offset, mask, timeout_s, poll_s=1e-3):
        r = self.inner.wait(offset, mask, timeout_s, poll_s)
        self._log(op="wait", offset=offset, mask=mask, value=r.value)
        return r

    def power_monitor(self):
        return self.inner.power_monitor()

    def close(self):
        if not self._fh.closed:
            self._fh.close()
        self.inner.close()


# ---------------------------------------------------------------------------- replay
class ReplaySession:
    """A recorded session, consumed operation by operation."""

    def __init__(self, path):
        self.path = Path(path)
        self.ops, self.blobs = [], {}
        self.header = None
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec["op"] == "header":
                self.header = rec
            elif rec["op"] == "blob":
                self.blobs[rec["sha256"]] = zlib.decompress(base64.b64decode(rec["zlib_b64"]))
            else:
                rec["line"] = n
                self.ops.append(rec)
        if self.header is None or self.header.get("version") != FORMAT_VERSION:
            raise ReplayMismatch(f"{self.path}: not a moevit session (format {FORMAT_VERSION})")
        self.pos = 0

    def peek(self):
        return self.ops[self.pos] if self.pos < len(self.ops) else None

    def take(self, kind: str, got: str, **match):
        """The next op, which must be ``kind`` with fields equal to ``match``."""
        op = self.peek()
        if op is None or op["op"] != kind or any(op.get(k) != v for k, v in match.items()):
            raise ReplayMismatch(
                f"{self.path.name}: operation {self.pos} (line {op['line'] if op else 'end'}): "
                f"the recording has {_show(op)}, the driver did {got}")
        self.pos += 1
        return op

    def finish(self):
        if self.pos != len(self.ops):
            raise ReplayMismatch(f"{self.path.name}: the driver stopped after {self.pos} of "
                                 f"{len(self.ops)} recorded operations; next: {_show(self.peek())}")


def _show(op) -> str:
    if op is None:
        return "no more operations"
    return "{" + ", ".join(f"{k}={hex(v) if k in ('offset', 'address', 'value', 'mask') and isinstance(v, int) else v}"
                           for k, v in op.items() if k != "line") + "}"


def fake_pynq_module(session: ReplaySession) -> types.ModuleType:
    """A ``pynq`` stand-in serving ``session`` (inject as ``sys.modules["pynq"]``)."""

    class FakeBuffer(np.ndarray):
        def sync_to_device(self):
            h = _sha(self)
            op = session.take("sync_to", f"sync_to(0x{self.device_address:x}, sha256={h[:12]}..)",
                              address=self.device_address)
            if op["sha256"] != h:
                raise ReplayMismatch(f"{session.path.name}: line {op['line']}: buffer at "
                                     f"0x{self.device_address:x} synced to the device with other "
                                     f"contents than recorded (sha256 {h[:12]}.. vs "
                                     f"{op['sha256'][:12]}..)")

        def sync_from_device(self):
            op = session.take("sync_from", f"sync_from(0x{self.device_address:x})",
                              address=self.device_address)
            data = session.blobs.get(op["sha256"])
            if data is None:
                raise ReplayMismatch(f"{session.path.name}: no blob {op['sha256'][:12]}..")
            self.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)

    def allocate(shape, dtype=np.uint32, **_):
        shape = [int(s) for s in np.atleast_1d(shape)]
        op = session.take("alloc", f"allocate({shape}, {np.dtype(dtype).str})", shape=shape,
                          dtype=np.dtype(dtype).str)
        buf = np.zeros(shape, dtype).view(FakeBuffer)
        buf.device_address = op["address"]
        return buf

    class MMIO:
        def __init__(self, base_addr, length=4, **_):
            self.base_addr, self.length = base_addr, length

        def read(self, offset=0, length=4, **_):
            op = session.peek()
            if op is not None and op["op"] == "wait" and op["offset"] == offset:
                return session.take("wait", f"read(0x{offset:x})", offset=offset)["value"]
            return session.take("read", f"read(0x{offset:x})", offset=offset)["value"]

        def write(self, offset, value):
            session.take("write", f"write(0x{offset:x}, 0x{int(value):x})", offset=offset,
                         value=int(value))

    class Overlay:
        def __init__(self, bitfile_name, download=True, **_):
            self.bitfile_name = bitfile_name

    mod = types.ModuleType("pynq")
    mod.allocate, mod.MMIO, mod.Overlay = allocate, MMIO, Overlay
    mod.__moevit_replay__ = session
    return mod
