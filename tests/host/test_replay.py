"""Shipped sessions, one recorded on the golden backend and one on the rtl backend (the RTL top
in simulation), replayed through the pynq backend's code with a stand-in pynq module: same
operations, same outputs."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from moevit.golden.weights import seeded_weights
from moevit.host import selftest
from moevit.host.backend_pynq import PynqDevice
from moevit.host.driver import Accelerator
from moevit.host.errors import ReplayMismatch
from moevit.host.record import ReplaySession, fake_pynq_module

FIX = Path(__file__).parent / "fixtures"
SESSIONS = {"golden": FIX / "golden_tiny_session.jsonl", "rtl": FIX / "rtl_tiny_session.jsonl"}
SESSION = SESSIONS["golden"]


@pytest.fixture(params=sorted(SESSIONS))
def board(request, tmp_path, monkeypatch):
    """(session, bitstream path) with the fake pynq serving a shipped session."""
    session = ReplaySession(SESSIONS[request.param])
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq_module(session))
    bit = tmp_path / "moevit.bit"
    bit.write_bytes(b"not a real bitstream: the fake Overlay does not read it")
    shutil.copy(FIX / "moevit_zcu104.hwh", tmp_path / "moevit.hwh")
    return session, bit


@pytest.mark.parametrize("backend", sorted(SESSIONS))
def test_fixture_header_names_its_backend(backend):
    h = ReplaySession(SESSIONS[backend]).header
    assert h["backend"] == backend and h["preset"] == selftest.PRESET
    assert "PLACEHOLDER" not in h["note"]


def test_golden_and_rtl_sessions_issue_the_same_operations():
    """Both recordings: the same driver calls (register accesses, syncs, waits) in the same
    order with the same data (by content hash); only the ``cycles`` register's value differs
    (the golden device has no cycle model)."""
    import json

    from moevit.regmap import REGMAP
    cycle_words = {off for _, off in REGMAP["cycles"].words()}

    def ops(path):
        out = []
        for line in Path(path).read_text().splitlines()[1:]:
            rec = json.loads(line)
            if rec.get("op") == "read" and rec.get("offset") in cycle_words:
                rec.pop("value")
            out.append(rec)
        return out
    g, r = ops(SESSIONS["golden"]), ops(SESSIONS["rtl"])
    assert len(g) == len(r)
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(g, r)) if a != b]
    assert not diff, diff[:3]


def test_replay_through_pynq_backend(board, reference):
    session, bit = board
    cfg, w, images = selftest.inputs()
    dev = PynqDevice(cfg, bitstream=bit)
    assert dev.has_cycle_counter      # the .hwh has moevit's extensions
    res = selftest.drive(Accelerator(dev, cfg, w, batch=selftest.BATCH), images)
    session.finish()
    np.testing.assert_array_equal(res["task0"].output, reference[0].output)
    np.testing.assert_array_equal(res["task1"].output, reference[1].output)
    np.testing.assert_array_equal(res["stop"].tap, reference[1].taps[selftest.STOP_AT][:1])


def test_replay_catches_a_changed_register_sequence(board):
    session, bit = board
    cfg, w, images = selftest.inputs()
    acc = Accelerator(PynqDevice(cfg, bitstream=bit), cfg, w, batch=selftest.BATCH)
    acc.run(images, task=0)
    with pytest.raises(ReplayMismatch, match=r"the recording has \{offset=0xc8, op=write.*"
                       r"the driver did write\(0x10, 0x1\)"):
        acc.run(images, task=0, stop_at="l0.q")   # the recording switched task here


def test_replay_catches_other_weights(board):
    _, bit = board
    cfg, _, _ = selftest.inputs()
    with pytest.raises(ReplayMismatch, match="other contents than recorded"):
        Accelerator(PynqDevice(cfg, bitstream=bit), cfg, seeded_weights(cfg, 1), batch=3)


def test_replay_catches_an_unfinished_session(board):
    session, bit = board
    cfg, w, images = selftest.inputs()
    Accelerator(PynqDevice(cfg, bitstream=bit), cfg, w, batch=3).run(images, task=0)
    with pytest.raises(ReplayMismatch, match="stopped after"):
        session.finish()


def test_recording_is_reproducible(tmp_path):
    """Recording the scripted session again on golden gives the shipped operations (so the
    fixture is current: regenerate it with python -m moevit.host.selftest after a deliberate
    change of the driver's sequence)."""
    path = tmp_path / "again.jsonl"
    selftest.record(path)
    strip = lambda s: [{k: v for k, v in op.items() if k != "line"} for op in s.ops]  # noqa: E731
    assert strip(ReplaySession(path)) == strip(ReplaySession(SESSION))


def test_board_path_imports_neither_numba_nor_torch():
    """The board's PYNQ Python has numpy < 2 and no torch: the pynq path must not pull in the
    golden model's numba kernels or torch."""
    import subprocess
    code = ("import sys, moevit.host.driver, moevit.host.backend_pynq, moevit.host.cli, "
            "moevit.host.record, moevit.host.frames\n"
            "print(sorted(m for m in ('numba', 'torch', 'pynq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
