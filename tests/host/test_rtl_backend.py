"""The ``rtl`` backend: the unchanged driver inside a cocotb simulation of ``moevit_top``
(Verilator, tiny preset).

It checks the register flow end to end through the real AXI-Lite slave (pointers at their
offsets, 64-bit, read back; num_images, debug_id, the task switch's gate pointer; CTRL; the
interrupt pin and IP_ISR; the cycle counter), waits that time out in kernel cycles with the
driver's error, and record/replay of an rtl session through the pynq backend's code.  And
golden == rtl: the same session and every stop_at stage give the same tensors on both.
"""
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from moevit import tools
from moevit.errors import ToolNotFoundError
from moevit.host import selftest
from moevit.host.backends import open_device
from moevit.host.errors import BackendUnavailable, DeviceTimeout
from moevit.regmap import CTRL_BITS, REGMAP

FIX = Path(__file__).parent / "fixtures"
GOLDEN_SESSION = FIX / "golden_tiny_session.jsonl"
W = REGMAP.words()


def _need_verilator():
    tools.require_simulator("verilator")


@pytest.fixture(scope="module")
def flow():
    """One simulation: the fixture session recorded, then the register-flow observations
    (moevit.host.rtl_selftest.flow_entry)."""
    _need_verilator()
    from moevit.host.rtl_selftest import run_flow
    return run_flow()


# ---------------------------------------------------------------------------- no simulator needed
def test_open_device_outside_a_simulation_says_how():
    cfg = selftest.inputs()[0]
    with pytest.raises(BackendUnavailable, match="moevit run --backend rtl"):
        open_device("rtl", cfg)


def test_cli_without_verilator_exits_2(tmp_path, capsys, monkeypatch):
    from moevit.cli import main

    def missing(name):
        raise ToolNotFoundError(f"simulator {name} (verilator) not found on PATH; install: x")
    monkeypatch.setattr(tools, "find_simulator", missing)
    rc = main(["run", "--backend", "rtl", "--preset", "tiny", "--seed", "0", "--synthetic", "1",
               "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "rtl backend simulates moevit_top and needs verilator" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("steps, kw, message", [
    ([dict(op="go")], {}, "op 'go'"),
    ([dict(op="run", images=np.zeros((1, 3, 8, 8), np.uint8))], {}, "do not fit preset"),
    ([dict(op="run", images=np.zeros((1, 3, 32, 64), np.uint8), stop_at="l9.q")], {},
     "l9.q"),
    ([dict(op="run", images=np.zeros((1, 3, 32, 64), np.uint8), task="nope")], {},
     "unknown task"),
    ([], dict(fault="cosmic_ray"), "unknown rtl fault 'cosmic_ray'"),
])
def test_bad_jobs_refused_before_simulating(steps, kw, message, tmp_path):
    from moevit.errors import MoevitError
    from moevit.host.backend_rtl import run_session
    cfg, w, _ = selftest.inputs()
    with pytest.raises(MoevitError, match=message):
        run_session(cfg, w, steps, job_dir=tmp_path / "job", **kw)
    assert not (tmp_path / "job" / "results.pkl").exists()


# ---------------------------------------------------------------------------- register flow
@pytest.mark.rtl
def test_pointers_land_at_their_offsets(flow):
    """Every pointer the driver wrote reads back through the RTL's AXI-Lite slave at the
    map's _1/_2 words; the buffers lie above 4 GiB, so the high words carry data."""
    written, read = flow["pointers_written"], flow["pointers_read"]
    assert set(written) == {r.name for r in REGMAP.registers if r.width == 64 and
                            r.access == "read-write"}
    assert read == written
    assert all(a >> 32 for a in written.values())
    assert len(set(written.values())) == len(written)


@pytest.mark.rtl
def test_every_memory_port_sees_the_synced_buffer(flow):
    cfg = selftest.inputs()[0]
    assert flow["ports_see_synced_bytes"] == [True] * cfg.mem_ports


@pytest.mark.rtl
def test_run_registers_and_cycle_counter(flow):
    r = flow["after_run"]
    assert flow["ctrl_before"] == CTRL_BITS["ap_idle"]
    assert r["CTRL"] & CTRL_BITS["ap_idle"] and not r["CTRL"] & CTRL_BITS["ap_start"]
    assert r["num_images"] == 2 and r["debug_id"] == 0 and r["mode"] == 0
    assert r["reload_one_time_weights"] == 1            # this accelerator's first run
    # task 1: the gate pointer designates the second gate buffer
    assert r["moe_w_gate_1"] | r["moe_w_gate_2"] << 32 == flow["gate_task1"]
    cycles = r["cycles_1"] | r["cycles_2"] << 32
    assert cycles == flow["run_cycles"] >= 1            # what RunResult.cycles reported
    assert flow["run_wait_cycles"] >= cycles            # the wait saw the whole run


@pytest.mark.rtl
def test_interrupt_and_isr(flow):
    assert flow["irq_before"] == (0, 0)
    assert flow["irq_after_run"] == (1, 1)              # GIER & IP_IER: ap_done -> pin + ISR
    assert flow["irq_after_clear"] == (0, 0)            # write 1 to IP_ISR clears both


@pytest.mark.rtl
def test_device_wait_times_out_in_cycles(flow):
    w = flow["idle_wait"]
    assert w is not None, "a wait for ap_done on an idle kernel returned"
    from moevit.host.rtl_selftest import IDLE_WAIT_CYCLES
    # the last poll's AXI-Lite read may end a few cycles past the limit
    assert IDLE_WAIT_CYCLES <= w["cycles"] <= IDLE_WAIT_CYCLES + 16
    assert w["measured"] >= w["cycles"]
    assert w["elapsed_s"] == pytest.approx(w["cycles"] / selftest.inputs()[0].clock_hz)
    assert f"after {w['cycles']} kernel cycles (limit {IDLE_WAIT_CYCLES}" in w["message"]


@pytest.mark.rtl
def test_driver_timeout_names_stage_cycles_and_causes():
    """A kernel that never finishes (fault kernel_hangs: the placeholder's ap_done held off,
    or with the real core every memory channel stalled): the driver's wait gives up after its
    limit in cycles, naming CTRL, the stage register, the cycles register and the likely
    causes."""
    _need_verilator()
    from moevit.host.backend_rtl import run_session
    cfg, w, images = selftest.inputs()
    limit = 2000
    with pytest.raises(DeviceTimeout) as e:
        run_session(cfg, w, [dict(op="run", images=images[:1], task=0)], batch=1,
                    timeout_s=limit / cfg.clock_hz, fault="kernel_hangs")
    msg = str(e.value)
    assert f"rtl kernel did not finish 1 image(s) within {limit} kernel cycles" in msg
    assert f"CTRL (0x{W['CTRL']:03x}) = 0x{CTRL_BITS['ap_start']:08x}" in msg
    assert f"stage register (0x{W['stage']:03x}) = 0 (no stage finished yet)" in msg
    m = re.search(r"(\d+) cycles elapsed \(cycles register 0x154\)", msg)
    assert m and int(m.group(1)) >= limit, msg
    assert "likely causes" in msg and "counts kernel cycles" in msg
    assert e.value.cycles >= limit


@pytest.mark.rtl
def test_stalled_memory_times_out():
    _need_verilator()
    from moevit.host.backend_rtl import run_session
    cfg, w, images = selftest.inputs()
    # the first stage (patch embedding) needs the image from DRAM: nothing can finish
    with pytest.raises(DeviceTimeout, match=r"within 10000 kernel cycles.*stage register "
                                            r"\(0x160\) = 0 \(no stage finished yet\)"):
        run_session(cfg, w, [dict(op="run", images=images[:1], task=0)], batch=1,
                    timeout_s=10_000 / cfg.clock_hz, fault="memory_stalls")


# ---------------------------------------------------------------------------- record / replay
def _ops(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _driver_side(ops):
    """What the driver decides (allocations, writes, data synced to the device, reads and
    waits by offset), without what the device answers."""
    out = []
    for o in ops:
        if o["op"] in ("header", "blob"):
            continue
        keep = {k: v for k, v in o.items() if k not in ("value", "sha256")}
        if o["op"] in ("write", "sync_to"):
            keep["data"] = o.get("value", o.get("sha256"))
        out.append(keep)
    return out


@pytest.mark.rtl
def test_rtl_session_issues_the_golden_fixture_sequence(flow):
    """The same driver calls on rtl as on golden: same allocations at the same addresses,
    same register writes, same data synced, same reads and waits."""
    rtl = _ops(flow["session_file"])
    assert rtl[0]["backend"] == "rtl"
    assert _driver_side(rtl) == _driver_side(_ops(GOLDEN_SESSION))


@pytest.mark.rtl
def test_rtl_session_replays_through_pynq_backend(flow, tmp_path, monkeypatch):
    from moevit.host.backend_pynq import PynqDevice
    from moevit.host.driver import Accelerator
    from moevit.host.record import ReplaySession, fake_pynq_module
    session = ReplaySession(flow["session_file"])
    assert session.header["backend"] == "rtl"
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq_module(session))
    bit = tmp_path / "moevit.bit"
    bit.write_bytes(b"\0")
    shutil.copy(FIX / "moevit_zcu104.hwh", tmp_path / "moevit.hwh")
    cfg, w, images = selftest.inputs()
    res = selftest.drive(Accelerator(PynqDevice(cfg, bitstream=bit), cfg, w,
                                     batch=selftest.BATCH), images)
    session.finish()
    rtl = flow["session"]
    for k in ("task0", "task1"):
        np.testing.assert_array_equal(res[k].output, rtl[k].output)
        assert res[k].cycles == rtl[k].cycles
    np.testing.assert_array_equal(res["stop"].tap, rtl["stop"].tap)


# ---------------------------------------------------------------------------- golden == rtl
@pytest.mark.rtl
def test_golden_equals_rtl(flow, tiny, reference):
    """The fixture session (both tasks, a task switch, a batch of 3, a stop) and every
    stop_at stage give the same tensors on rtl as on the golden backend and GoldenModel."""
    from moevit.host.backend_golden import GoldenDevice
    from moevit.host.backend_rtl import run_session
    from moevit.host.driver import Accelerator
    from moevit.host.rtl_selftest import compare_taps, tap_mismatches, tap_steps
    cfg, w, images = tiny
    rtl = flow["session"]
    with GoldenDevice(cfg) as dev:
        gold = selftest.drive(Accelerator(dev, cfg, w, batch=selftest.BATCH), images)
    for k, t in (("task0", 0), ("task1", 1)):
        np.testing.assert_array_equal(rtl[k].output, gold[k].output, err_msg=k)
        np.testing.assert_array_equal(rtl[k].output, reference[t].output, err_msg=k)
    assert compare_taps(cfg, selftest.STOP_AT, rtl["stop"].tap, gold["stop"].tap) == 0
    task = 1
    got, _ = run_session(cfg, w, tap_steps(cfg, images[:1], task), batch=1)
    bad = tap_mismatches(cfg, got, reference[task].taps)
    assert not any(bad.values()), f"mismatching elements per stage: {bad}"


def test_tap_comparison_passes_on_golden_backend(tiny, reference):
    """The stage-by-stage loop of test_golden_equals_rtl, on the golden backend: it passes
    there (so a failure on rtl is the RTL's), and it sees a changed element but not the
    score buffer's junk slots."""
    from moevit.golden.attention import score_buffer_valid
    from moevit.host.backend_golden import GoldenDevice
    from moevit.host.driver import Accelerator
    from moevit.host.rtl_selftest import all_taps, compare_taps, tap_mismatches, tap_steps
    cfg, w, images = tiny
    task = 1
    with GoldenDevice(cfg) as dev:
        acc = Accelerator(dev, cfg, w, batch=1)
        got = [acc.run(s["images"], s["task"], stop_at=s["stop_at"])
               for s in tap_steps(cfg, images[:1], task)]
    assert len(got) == len(all_taps(cfg)) and "l0.softmax_info" in all_taps(cfg)
    assert tap_mismatches(cfg, got, reference[task].taps) == dict.fromkeys(all_taps(cfg), 0)
    sb = got[all_taps(cfg).index("l0.score_buffer")].tap.copy()
    want = reference[task].taps["l0.score_buffer"][:1]
    junk = ~np.broadcast_to(score_buffer_valid(cfg)[None], sb.shape)
    assert junk.any()
    sb[junk] += 7
    assert compare_taps(cfg, "l0.score_buffer", sb, want) == 0
    sb[~junk] += 1
    assert compare_taps(cfg, "l0.score_buffer", sb, want) == np.count_nonzero(~junk)


# ---------------------------------------------------------------------------- command line
@pytest.mark.rtl
def test_cli_run_rtl(tmp_path, capsys):
    _need_verilator()
    from moevit.cli import main
    cfg = selftest.inputs()[0]
    out, rec = tmp_path / "o", tmp_path / "s.jsonl"
    rc = main(["run", "--backend", "rtl", "--preset", "tiny", "--seed", "0", "--synthetic", "3",
               "--batch", "2", "--no-pictures", "--record", str(rec), "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "3 images," in cap.out and "backend rtl" in cap.out and "cycles/image" in cap.out
    assert "run rtl" in cap.err and "3/3" in cap.err             # the progress bar
    feats = np.load(out / "features.int32.npy")
    assert feats.shape == (3, cfg.tokens, cfg.dim)
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "rtl" and run["simulation"]["simulator"] == "verilator"
    assert run["kernel_cycles"] >= 2                              # two runs (batch 2 + 1)
    ops = _ops(rec)
    assert ops[0]["backend"] == "rtl"
    starts = [o for o in ops if o["op"] == "write" and o["offset"] == W["CTRL"]]
    assert len(starts) == 2
    nums = [o["value"] for o in ops if o["op"] == "write" and o["offset"] == W["num_images"]]
    assert nums == [2, 1]


@pytest.mark.rtl
def test_cli_rtl_stop_at(tmp_path, capsys):
    _need_verilator()
    from moevit.cli import main
    out = tmp_path / "o"
    rc = main(["run", "--backend", "rtl", "--preset", "tiny", "--seed", "0", "--synthetic", "1",
               "--stop-at", "l0.q", "--quiet", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "debug_id 2" in cap.out and "backend rtl" in cap.out
    cfg = selftest.inputs()[0]
    assert np.load(out / "l0.q.int32.npy").shape == (1, cfg.tokens, cfg.dim)
