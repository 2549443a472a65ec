"""Scripted sessions on the ``rtl`` backend (run inside the simulation of ``moevit_top``).

:func:`flow_entry` is the register-flow check the tests read back: the fixture session of
:mod:`moevit.host.selftest` recorded through :class:`RecordingDevice`, then a second
:class:`Accelerator` whose pointers, ``num_images``, ``debug_id``, CTRL, IP_ISR, the
``interrupt`` pin and the ``cycles`` register are observed through the AXI-Lite slave, and a
wait that must time out after a number of kernel cycles.  It only observes; the assertions are
in ``tests/host/test_rtl_backend.py``.  Observations go to ``flow.pkl`` in the job folder.

``python -m moevit.host.rtl_selftest tests/host/fixtures/rtl_tiny_session.jsonl`` records
the fixture session on the rtl backend (the shipped rtl fixture).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

from moevit.host import selftest

FLOW_FILE = "flow.pkl"
SESSION_FILE = "session.jsonl"
#: a wait that nothing satisfies, and its limit in kernel cycles
IDLE_WAIT_CYCLES = 300
#: images of the second accelerator's runs
FLOW_BATCH = 2
#: where the second accelerator's buffers go: above 4 GiB, so every pointer's high word is used
HIGH_DRAM_BASE = 0x3_4000_0000


def _note(harness) -> str:
    if hasattr(harness.dut, "placeholder_core"):
        return ("recorded on the rtl backend: moevit_top with the PLACEHOLDER core (no "
                "computation: the outputs are whatever the buffers held)")
    return "recorded on the rtl backend (moevit_top)"


def _record_fixture(dev, path: Path, note: str) -> dict:
    from moevit.host.driver import Accelerator
    from moevit.host.record import RecordingDevice
    cfg, w, images = selftest.inputs()
    rec = RecordingDevice(dev, path, preset=selftest.PRESET, script="moevit.host.rtl_selftest",
                          note=note)
    res = selftest.drive(Accelerator(rec, cfg, w, batch=selftest.BATCH), images)
    rec.close()            # closes the file; RtlDevice.close() releases nothing
    return res


def flow_entry(harness, job_dir) -> dict:
    """The observations described in the module doc (inside the simulation)."""
    from moevit.host.backend_rtl import RtlDevice
    from moevit.host.backends import open_device
    from moevit.host.driver import Accelerator
    from moevit.host.errors import DeviceTimeout
    from moevit.regmap import CTRL_BITS, REGMAP
    job_dir = Path(job_dir)
    cfg, w, images = selftest.inputs()
    dev = open_device("rtl", cfg, harness=harness)
    obs: dict = {}
    obs["session"] = _record_fixture(dev, job_dir / SESSION_FILE, _note(harness))
    words = REGMAP.words()
    dev = RtlDevice(harness, cfg, dram_base=HIGH_DRAM_BASE)   # same harness, other range
    acc = Accelerator(dev, cfg, w, batch=FLOW_BATCH)
    want = {name: b.device_address for name, b in acc.buffers.items()}
    want["moe_w_gate"] = acc.gate_buffers[0].device_address
    want["images"] = acc.image_buffers[0].device_address
    obs["pointers_written"] = want
    obs["pointers_read"] = {n: dev.read32(words[n + "_1"]) | dev.read32(words[n + "_2"]) << 32
                            for n in want}
    obs["ctrl_before"] = dev.read32(words["CTRL"])
    # what sync_to_device wrote is what every memory port's RAM model holds
    b = acc.buffers["attn_weights"]
    obs["ports_see_synced_bytes"] = [
        ram.read(b.device_address, b.nbytes) == np.ascontiguousarray(b.array).tobytes()
        for ram in harness.rams]
    r = acc.run(images[:FLOW_BATCH], task=1)
    obs["run_cycles"] = r.cycles
    obs["run_wait_cycles"] = round(r.timings["wait_s"] * dev.clock_hz)
    obs["after_run"] = {n: dev.read32(words[n]) for n in
                        ("CTRL", "num_images", "reload_one_time_weights", "debug_id", "mode",
                         "moe_w_gate_1", "moe_w_gate_2", "cycles_1", "cycles_2", "stage")}
    obs["gate_task1"] = acc.gate_buffers[1].device_address
    # interrupt: enabled, a run, the pin and IP_ISR; write 1 to IP_ISR to clear
    dev.write32(words["GIER"], 1)
    dev.write32(words["IP_IER"], 1)
    obs["irq_before"] = (dev.interrupt(), dev.read32(words["IP_ISR"]))
    acc.run(images[:1], task=0)
    obs["irq_after_run"] = (dev.interrupt(), dev.read32(words["IP_ISR"]))
    dev.write32(words["IP_ISR"], 1)
    dev.run_cycles(2)
    obs["irq_after_clear"] = (dev.interrupt(), dev.read32(words["IP_ISR"]))
    # a wait nothing satisfies (ap_done was cleared by the last wait's read)
    start = dev.cycle
    try:
        dev.wait(words["CTRL"], CTRL_BITS["ap_done"], IDLE_WAIT_CYCLES / dev.clock_hz)
        obs["idle_wait"] = None
    except DeviceTimeout as e:
        obs["idle_wait"] = dict(message=str(e), cycles=e.cycles, elapsed_s=e.elapsed_s,
                                measured=dev.cycle - start, poll_cycles=dev.poll_cycles)
    (job_dir / FLOW_FILE).write_bytes(pickle.dumps(obs))
    return dict(flow="ok")


def run_flow(cfg=None, job_dir=None) -> dict:
    """Run :func:`flow_entry` in a simulation; returns its observations plus ``session``
    (the recorded file) and ``metrics``."""
    from moevit.host.backend_rtl import scratch_dir, simulate
    cfg = cfg or selftest.inputs()[0]
    job_dir = Path(job_dir) if job_dir is not None else scratch_dir(cfg)
    metrics = simulate(cfg, "moevit.host.rtl_selftest:flow_entry", job_dir)
    obs = pickle.loads((job_dir / FLOW_FILE).read_bytes())
    obs.update(session_file=job_dir / SESSION_FILE, metrics=metrics)
    return obs


def all_taps(cfg) -> list[str]:
    """Every tap a ``stop_at`` can return (both of a stage that leaves two), in order."""
    from moevit.host.layout import stages
    return [tap for s in stages(cfg) for tap, _ in s.taps]


def tap_steps(cfg, image, task) -> list[dict]:
    """rtl job steps: one ``stop_at`` run of ``image`` per tap of :func:`all_taps`."""
    return [dict(op="run", images=image, task=task, stop_at=tap) for tap in all_taps(cfg)]


def compare_taps(cfg, tap: str, got: np.ndarray, want: np.ndarray) -> int:
    """Mismatching elements of a stopped stage's tensor; the score buffer's junk slots
    (which hardware leaves as garbage) are not compared."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return max(got.size, want.size)
    if tap.endswith("score_buffer"):
        from moevit.golden.attention import score_buffer_valid
        valid = np.broadcast_to(score_buffer_valid(cfg)[None], got.shape)
        return int(np.count_nonzero((got != want) & valid))
    return int(np.count_nonzero(got != want))


def tap_mismatches(cfg, results, golden_taps: dict) -> dict:
    """{tap: mismatching elements} of :func:`tap_steps` results against a golden run's taps
    (``GoldenModel.run(..., taps=True).taps``; first image)."""
    return {tap: compare_taps(cfg, tap, r.tap, golden_taps[tap][:1])
            for tap, r in zip(all_taps(cfg), results)}


def record_session(path) -> None:
    """Record the fixture session on the rtl backend into ``path``."""
    import shutil
    from moevit.host.backend_rtl import scratch_dir, simulate
    cfg = selftest.inputs()[0]
    job = scratch_dir(cfg)
    simulate(cfg, "moevit.host.rtl_selftest:record_entry", job)
    shutil.copy(job / SESSION_FILE, path)


def record_entry(harness, job_dir) -> dict:
    from moevit.host.backend_rtl import RtlDevice
    cfg = selftest.inputs()[0]
    _record_fixture(RtlDevice(harness, cfg), Path(job_dir) / SESSION_FILE, _note(harness))
    return {}


if __name__ == "__main__":
    record_session(sys.argv[1])
