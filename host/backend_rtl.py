"""``rtl`` backend: the RTL accelerator top ``moevit_top`` simulated under cocotb.

Two halves:

- **Inside the simulation**, :class:`RtlDevice` implements :class:`Device` over a
  :class:`moevit.sim.tb_host_rtl.TopHarness`: registers through cocotbext-axi's
  ``AxiLiteMaster`` on ``s_axi_control``, DRAM as the one memory shared by the ``AxiRam`` of
  every ``m_axi_gmem<k>`` port.  The synchronous driver (:class:`moevit.host.driver.Accelerator`)
  runs unchanged in a ``cocotb.task.bridge`` thread; each register access is a ``cocotb.task.resume``
  call, so simulated time stands still while host code runs.  Buffers are allocated at the
  addresses the golden backend uses (same base, page aligned), ``sync_to_device`` /
  ``sync_from_device`` copy to/from the RAM model, and :meth:`RtlDevice.wait` polls over
  AXI-Lite with a timeout counted in kernel **cycles** (``timeout_s x clock_hz``).
- **On the host**, :func:`run_session` builds the top (Verilog from
  :mod:`moevit.hw.top.wrapper`, Verilator build cached under ``build/``), writes a job
  (config, weights, steps) into a scratch folder, runs the cocotb simulation as a subprocess
  through :mod:`moevit.sim.runner` with :func:`session_entry` as the host code, reports progress
  from the simulation's progress file, and returns the step results.

``open_device("rtl", cfg, harness=h)`` works inside a simulation (an entry function receives the
harness); outside one there is no simulator to talk to, and :func:`open_device` says to use
:func:`run_session` or ``moevit run --backend rtl``.
"""

from __future__ import annotations

import json
import math
import pickle
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, MoevitError, ToolNotFoundError
from moevit.host.device import DRAM_ALIGN, DRAM_BASE, Buffer, Device, WaitResult
from moevit.host.errors import BackendUnavailable, DeviceError, DeviceTimeout

#: kernel cycles between two polls of a wait (a rising ``interrupt`` ends the pause early)
POLL_CYCLES = 256
#: the cocotb test module and test that run host code against the top
TB_MODULE, TB_TEST = "moevit.sim.tb_host_rtl", "host_session"
#: the scripted job runner inside the simulation
SESSION_ENTRY = "moevit.host.backend_rtl:session_entry"
UNIT = "host_rtl"
JOB_FILE, RESULT_FILE, ERROR_FILE, PROGRESS_FILE = ("job.pkl", "results.pkl", "error.json",
                                                    "progress.jsonl")


# ============================================================================ in the simulation
class RtlBuffer(Buffer):
    """A buffer whose device side is the shared AXI RAM model at ``device_address``."""

    def __init__(self, array, address, name, device: "RtlDevice"):
        super().__init__(array, address, name)
        self._dev = device

    def sync_to_device(self):
        # the bridge thread runs only while the scheduler waits for it: no concurrent access
        self._dev.harness.mem.write(self.device_address,
                                    np.ascontiguousarray(self.array).view(np.uint8).tobytes())

    def sync_from_device(self):
        data = self._dev.harness.mem.read(self.device_address, self.nbytes)
        self.array.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)


class RtlDevice(Device):
    """The simulated ``moevit_top`` as a :class:`Device` (see the module doc).  Call its
    methods only from a ``cocotb.task.bridge`` thread (an entry function of
    :mod:`moevit.sim.tb_host_rtl`)."""

    backend = "rtl"
    has_cycle_counter = True   # the control block counts the kernel's cycles itself
    timeout_in_cycles = True

    def __init__(self, harness, cfg: AcceleratorConfig, *, poll_cycles: int = POLL_CYCLES,
                 dram_base: int = DRAM_BASE):
        from cocotb.task import resume   # cocotb 2.x (was cocotb.function)
        self.harness, self.cfg, self.poll_cycles = harness, cfg, poll_cycles
        self._read = resume(harness.read32)
        self._write = resume(harness.write32)
        self._wait = resume(harness.wait_word)
        self._irq = resume(harness.interrupt)
        self._settle = resume(harness.settle)
        self._next = dram_base   # same rule as the golden backend: same addresses
        self.buffers: list[RtlBuffer] = []

    @property
    def clock_hz(self) -> float:
        return self.cfg.clock_hz

    @property
    def cycle(self) -> int:
        """Kernel cycles simulated since reset."""
        return self.harness.cycle()

    def read32(self, offset: int) -> int:
        return self._read(offset)

    def write32(self, offset: int, value: int) -> None:
        self._write(offset, int(value) & 0xFFFFFFFF)

    def interrupt(self) -> int:
        """The level of the top's ``interrupt`` output now."""
        return self._irq()

    def run_cycles(self, n: int) -> None:
        """Let ``n`` kernel cycles pass."""
        self._settle(n)

    def allocate(self, shape, dtype, name: str = "") -> Buffer:
        arr = np.zeros(shape, dtype=dtype)
        buf = RtlBuffer(arr, self._next, name, self)
        self._next += -(-max(arr.nbytes, 1) // DRAM_ALIGN) * DRAM_ALIGN
        self.buffers.append(buf)
        return buf

    def wait(self, offset: int, mask: int, timeout_s: float, poll_s: float = 1e-3) -> WaitResult:
        """Poll ``offset`` over AXI-Lite until ``value & mask``; the timeout is
        ``ceil(timeout_s x clock_hz)`` kernel cycles (``poll_s`` is ignored: polls are every
        :attr:`poll_cycles` cycles or on a rising ``interrupt``).  ``elapsed_s`` is simulated
        time.  :class:`DeviceTimeout` carries ``.cycles`` as well."""
        max_cycles = max(1, math.ceil(timeout_s * self.clock_hz))
        v, cycles, timed_out = self._wait(offset, mask, max_cycles, self.poll_cycles)
        elapsed = cycles / self.clock_hz
        if timed_out:
            err = DeviceTimeout(f"word 0x{offset:03x} & 0x{mask:x} still 0 after {cycles} kernel "
                                f"cycles (limit {max_cycles}; last value 0x{v:08x})")
            err.last_value, err.elapsed_s, err.cycles = v, elapsed, cycles
            raise err
        return WaitResult(v, elapsed)


def open_in_simulation(cfg: AcceleratorConfig, harness=None, **options) -> Device:
    """``open_device("rtl", ...)``: an :class:`RtlDevice` on ``harness`` (inside a
    simulation); a clear :class:`BackendUnavailable` without one."""
    if harness is None:
        raise BackendUnavailable(
            "the rtl backend runs the driver inside a cocotb simulation of moevit_top, so it "
            "cannot be opened in this process: use `moevit run --backend rtl ...`, or "
            "moevit.host.backend_rtl.run_session(cfg, weights, steps) from Python (a custom "
            "entry function gets the harness: RtlDevice(harness, cfg))")
    return RtlDevice(harness, cfg, **options)


# ---------------------------------------------------------------------------- the job
@dataclass
class RtlJob:
    """What :func:`session_entry` runs: the driver on ``cfg``/``weights`` with ``batch``,
    then ``steps`` in order.  A step is ``{"op": "run", "images", "task", "stop_at"}`` (one
    :class:`RunResult`) or ``{"op": "stream", "frames": [(name, image)], "task"}`` (a list of
    per-batch results, with a progress line per batch).  ``record``: a session file for
    :class:`moevit.host.record.RecordingDevice`; ``timeout_s``: the driver's wait timeout
    (None: the default, in cycles)."""

    cfg: AcceleratorConfig
    weights: object
    steps: list
    batch: int = 1
    record: str | None = None
    record_header: dict = field(default_factory=dict)
    timeout_s: float | None = None
    poll_cycles: int = POLL_CYCLES


def _progress(job_dir: Path, **rec):
    with open(job_dir / PROGRESS_FILE, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def session_entry(harness, job_dir) -> dict:
    """Entry run inside the simulation (see :class:`RtlJob`).  Results go to
    ``results.pkl``; a :class:`moevit.errors.MoevitError` (e.g. a wait timeout) goes to
    ``error.json`` and is raised again on the host by :func:`run_session`."""
    from moevit.host.driver import Accelerator
    job_dir = Path(job_dir)
    job: RtlJob = pickle.loads((job_dir / JOB_FILE).read_bytes())
    dev: Device = RtlDevice(harness, job.cfg, poll_cycles=job.poll_cycles)
    if job.record:
        from moevit.host.record import RecordingDevice
        dev = RecordingDevice(dev, job.record, **job.record_header)
    results = []
    total = sum(len(s["frames"]) if s["op"] == "stream" else len(s["images"]) for s in job.steps)
    done = 0
    t0 = time.perf_counter()
    try:
        with dev:
            acc = Accelerator(dev, job.cfg, job.weights, batch=job.batch,
                              timeout_s=job.timeout_s)
            for s in job.steps:
                if s["op"] == "run":
                    results.append(acc.run(s["images"], s.get("task", 0),
                                           stop_at=s.get("stop_at")))
                    done += len(s["images"])
                    _progress(job_dir, done=done, total=total)
                elif s["op"] == "stream":
                    rs = []
                    for r in acc.stream(s["frames"], s.get("task", 0)):
                        rs.append(r)
                        done += len(r.names)
                        _progress(job_dir, done=done, total=total)
                    results.append(rs)
                else:
                    raise DeviceError(f"unknown rtl job step {s['op']!r}")
            pack = dict(acc.timings)
    except MoevitError as e:
        (job_dir / ERROR_FILE).write_text(json.dumps(
            dict(type=type(e).__name__, message=str(e), cycles=getattr(e, "cycles", None))))
        return dict(error=type(e).__name__)
    (job_dir / RESULT_FILE).write_bytes(pickle.dumps(results))
    return dict(steps=len(results), images=done, host_s=time.perf_counter() - t0, **pack)


# ============================================================================ on the host
def top_verilog_file(cfg: AcceleratorConfig, ports: int | None = None) -> Path:
    """``moevit_top`` for ``cfg`` (with ``ports`` memory masters) under ``build/`` — the same
    cached file (and so the same simulator build) as the RTL testbenches use."""
    from moevit.hw.top.wrapper import top_verilog_file as shared
    if ports is not None and ports != cfg.mem_ports:
        cfg = cfg.replace(mem_ports=ports)
    return shared(cfg)


def require_simulator(sim: str) -> None:
    """:class:`BackendUnavailable` (CLI exit 2) naming the missing simulator and the fix."""
    from moevit import tools
    try:
        tools.find_simulator(sim)
    except ToolNotFoundError as e:
        raise BackendUnavailable(f"the rtl backend simulates moevit_top and needs {sim}: {e}; "
                                 f"or use --backend golden") from None


def simulate(cfg: AcceleratorConfig, entry: str, job_dir, *, ports: int | None = None,
             fault: str | None = None, sim: str = "verilator", progress=None,
             poll_s: float = 0.5) -> dict:
    """Build ``moevit_top`` (cached) and run ``entry`` (``"module:function"``, called as
    ``fn(harness, job_dir)``) inside its simulation; returns the runner's metrics.
    ``progress(record)`` is called for each line the entry appends to ``progress.jsonl``."""
    from moevit.hw.top.wrapper import TOP_NAME
    from moevit.sim.runner import build_simulator, run_built
    from moevit.sim.tb_host_rtl import FAULTS
    if fault not in FAULTS:
        raise ConfigError(f"unknown rtl fault {fault!r}; faults: "
                          f"{', '.join(str(f) for f in FAULTS)}")
    require_simulator(sim)
    ports = cfg.mem_ports if ports is None else ports
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    bdir = build_simulator(top_verilog_file(cfg, ports), TOP_NAME, sim=sim)
    params = dict(entry=entry, job_dir=str(job_dir.resolve()), ports=ports, fault=fault)
    kw = dict(sim=sim, params=params, toplevel=TOP_NAME, testcase=TB_TEST)
    if progress is None:
        return run_built(bdir, cfg, UNIT, TB_MODULE, **kw)
    box: dict = {}

    def target():
        try:
            box["metrics"] = run_built(bdir, cfg, UNIT, TB_MODULE, **kw)
        except BaseException as e:   # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e
    th = threading.Thread(target=target, name="rtl-simulation", daemon=True)
    th.start()
    seen = 0
    pfile = job_dir / PROGRESS_FILE
    while True:
        th.join(poll_s)
        if pfile.exists():
            lines = pfile.read_text().splitlines()
            for line in lines[seen:]:
                if line.endswith("}"):
                    progress(json.loads(line))
                    seen += 1
        if not th.is_alive():
            break
    if "error" in box:
        raise box["error"]
    return box["metrics"]


def scratch_dir(cfg: AcceleratorConfig) -> Path:
    """A fresh ``build/<digest>/host_rtl/jobs/<time>-<pid>/`` folder."""
    import os
    from moevit.sim.runner import unit_dir
    d = unit_dir(cfg, UNIT) / "jobs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    d.mkdir(parents=True)
    return d


def _error_class(name: str) -> type:
    """The moevit error class called ``name`` (host errors first), else MoevitError."""
    from moevit import errors as core_errors
    from moevit.host import errors as host_errors
    for mod in (host_errors, core_errors):
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, MoevitError):
            return cls
    return MoevitError


def check_steps(cfg: AcceleratorConfig, steps: list) -> None:
    """Refuse a step the job runner would refuse, naming it (no simulator needed)."""
    from moevit.golden.tasks import default_tasks, task_index
    from moevit.host.driver import to_pixels
    from moevit.host.layout import stage_for_tap
    for i, s in enumerate(steps):
        op = s.get("op") if isinstance(s, dict) else None
        if op not in ("run", "stream"):
            raise ConfigError(f"rtl job step {i}: op {op!r}; steps are dicts with op 'run' "
                              f"(images, task, stop_at) or 'stream' (frames, task)")
        task_index(default_tasks(cfg.num_tasks), s.get("task", 0))
        if op == "run":
            to_pixels(s["images"], cfg)
            if s.get("stop_at") is not None:
                stage_for_tap(cfg, s["stop_at"])
        else:
            for f in s["frames"]:
                to_pixels(f[1] if isinstance(f, tuple) else f, cfg)


def run_session(cfg: AcceleratorConfig, weights, steps, *, batch: int = 1,
                record=None, record_header: dict | None = None, timeout_s: float | None = None,
                fault: str | None = None, sim: str = "verilator", progress=None,
                job_dir=None) -> tuple[list, dict]:
    """Run ``steps`` (see :class:`RtlJob`) with the driver inside a simulation of
    ``moevit_top``; returns (one result per step, the simulation's metrics).  A host-library
    error inside the simulation (a wait timeout, a bad pointer) is raised here with its
    message; ``fault`` injects one (:data:`moevit.sim.tb_host_rtl.FAULTS`)."""
    steps = list(steps)
    check_steps(cfg, steps)                 # bad input fails here, before a simulator starts
    job_dir = Path(job_dir) if job_dir is not None else scratch_dir(cfg)
    job_dir.mkdir(parents=True, exist_ok=True)
    job = RtlJob(cfg, weights, steps, batch=batch,
                 record=None if record is None else str(Path(record).resolve()),
                 record_header=record_header or {}, timeout_s=timeout_s)
    (job_dir / JOB_FILE).write_bytes(pickle.dumps(job))
    metrics = simulate(cfg, SESSION_ENTRY, job_dir, fault=fault, sim=sim, progress=progress)
    err = job_dir / ERROR_FILE
    if err.exists():
        e = json.loads(err.read_text())
        exc = _error_class(e["type"])(e["message"])
        exc.cycles = e.get("cycles")
        raise exc
    metrics["job_dir"] = str(job_dir)
    return pickle.loads((job_dir / RESULT_FILE).read_bytes()), metrics
