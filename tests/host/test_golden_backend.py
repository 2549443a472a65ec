"""The golden backend driven by the host driver equals GoldenModel (tiny preset)."""
import numpy as np
import pytest

from moevit.errors import ConfigError, ShapeError
from moevit.golden.model import GoldenModel
from moevit.host.backend_golden import GoldenDevice
from moevit.host.driver import Accelerator
from moevit.host.errors import DeviceError, DeviceTimeout
from moevit.host.layout import stage_for_tap, stages
from moevit.host.record import RecordingDevice, ReplaySession
from moevit.regmap import CTRL_BITS, REGMAP

W = REGMAP.words()


@pytest.fixture
def acc(tiny):
    cfg, w, _ = tiny
    a = Accelerator(GoldenDevice(cfg), cfg, w, batch=3)
    yield a
    a.close()


def test_batch_of_3_both_tasks(acc, tiny, reference):
    _, _, images = tiny
    for t in (0, 1):
        r = acc.run(images, task=t)
        assert r.output.shape == reference[t].output.shape
        np.testing.assert_array_equal(r.output, reference[t].output)
    # the two tasks really route differently, so the gate pointer matters
    assert (reference[0].output != reference[1].output).any()


def test_task_names_and_uint8_images(acc, tiny, reference):
    cfg, _, images = tiny
    px = np.floor(images * 256).astype(np.uint8)
    np.testing.assert_array_equal(acc.run(px, task="depth").output, reference[1].output)


def test_more_images_than_batch_run_in_chunks(tiny, reference):
    cfg, w, images = tiny
    with GoldenDevice(cfg) as dev:
        r = Accelerator(dev, cfg, w, batch=2).run(images, task=0)
    np.testing.assert_array_equal(r.output, reference[0].output)


@pytest.mark.parametrize("tap", ["patch_embed", "l0.ln1", "l0.k", "l0.score_buffer",
                                 "l0.softmax_info", "l0.av", "l0.hidden", "l0.out", "l1.v",
                                 "l1.ln2", "l1.mlp_out", "l1.out"])
def test_stop_at_stage_equals_golden_tap(acc, tiny, reference, tap):
    _, _, images = tiny
    r = acc.run(images, task=1, stop_at=tap)
    want = reference[1].taps[tap][:1]
    assert r.tap.shape == want.shape
    np.testing.assert_array_equal(r.tap, want)
    assert r.output is None and r.stage == tap


def test_stop_leaves_earlier_buffers_as_the_schedule_does(acc, tiny, reference):
    """After a stop at l0.v (16L+5): tmp1 = LN1, tmp2 = V, tmp3 = K, x = patch embedding."""
    cfg, _, images = tiny
    acc.run(images, task=0, stop_at="l0.v")
    taps = reference[0].taps
    for ptr, tap in (("tmp1", "l0.ln1"), ("tmp2", "l0.v"), ("tmp3", "l0.k")):
        acc.buffers[ptr].sync_from_device()
        np.testing.assert_array_equal(acc.buffers[ptr].array, taps[tap][0])
    acc.buffers["x"].sync_from_device()
    np.testing.assert_array_equal(acc.buffers["x"].array[0], taps["patch_embed"][0])


def test_stage_ids_follow_spec_6_2(tiny):
    cfg = tiny[0]
    ids = {s.name: s.debug_id for s in stages(cfg)}
    assert ids["patch_embed"] == 256
    assert ids["l0.ln1"] == 1 and ids["l0.score_buffer"] == 4 and ids["l0.out"] == 12
    assert ids["l1.ln1"] == 17 and ids["l1.mlp_out"] == 27 and ids["l1.out"] == 28
    assert ids["l0.hidden"] == 10 and "l1.hidden" not in ids
    with pytest.raises(ConfigError, match="never reaches DRAM"):
        stage_for_tap(cfg, "l1.gate_logits")
    with pytest.raises(ConfigError, match="unknown stage"):
        stage_for_tap(cfg, "l9.q")


def _writes(path):
    return [(op["offset"], op["value"]) for op in ReplaySession(path).ops if op["op"] == "write"]


def test_task_switch_writes_only_the_gate_pointer(tiny, tmp_path):
    cfg, w, images = tiny
    path = tmp_path / "s.jsonl"
    with RecordingDevice(GoldenDevice(cfg), path) as dev:
        acc = Accelerator(dev, cfg, w, batch=3)
        acc.run(images, task=0)
        acc.run(images, task=0)
        n0 = len(_writes(path))
        acc.run(images, task=1)
        new = _writes(path)[n0:]
    start = (W["CTRL"], CTRL_BITS["ap_start"])
    assert new[-1] == start
    names = {off: n for n, off in W.items()}
    assert {names[o] for o, _ in new[:-1]} <= {"moe_w_gate_1", "moe_w_gate_2"}
    assert new[:-1], "the task switch must write the gate pointer"
    assert new[0][1] == acc.gate_buffers[1].device_address & 0xFFFFFFFF


def test_reload_one_time_weights_semantics(tiny, reference):
    """The conv weights go on chip only with reload=1: a run with reload=0 after the host
    changed them in DRAM still uses the old ones; reloading picks up the change."""
    cfg, w, images = tiny
    with GoldenDevice(cfg) as dev:
        acc = Accelerator(dev, cfg, w, batch=3)
        np.testing.assert_array_equal(acc.run(images).output, reference[0].output)
        pe = acc.buffers["patch_embed_weights"]
        pe.array[...] = 0
        pe.sync_to_device()
        np.testing.assert_array_equal(acc.run(images).output, reference[0].output)  # on-chip copy
        acc._reload = True
        changed = acc.run(images).output
        model = GoldenModel(cfg, w.replace(patch_embed_weights=np.zeros_like(w.patch_embed_weights)))
        np.testing.assert_array_equal(changed, model.run(images).output)


def test_without_sync_the_device_sees_nothing(tiny):
    cfg, w, images = tiny
    with GoldenDevice(cfg) as dev:
        buf = dev.allocate((4,), np.int32)
        buf.array[:] = 7
        assert not buf.device_bytes.any()
        buf.sync_to_device()
        buf.array[:] = 0
        buf.sync_from_device()
        assert (buf.array == 7).all()


def test_timeout_names_stage_and_cycles(tiny):
    cfg, w, images = tiny
    with GoldenDevice(cfg, stall_at=4) as dev:
        acc = Accelerator(dev, cfg, w, batch=3, timeout_s=0.3)
        with pytest.raises(DeviceTimeout) as e:
            acc.run(images, task=0, stop_at="l0.v")
    msg = str(e.value)
    assert "stage register (0x160) = 4 (after l0.score_buffer)" in msg
    assert "cycles elapsed unknown" in msg and "likely causes" in msg
    assert "CTRL (0x000) = 0x00000001" in msg


def test_bad_pointer_reported(tiny):
    cfg, w, images = tiny
    with GoldenDevice(cfg) as dev:
        acc = Accelerator(dev, cfg, w, batch=3, timeout_s=30)
        acc._write_pointer("tmp1", 0x1234)
        with pytest.raises(DeviceError, match="pointer tmp1 = 0x1234"):
            acc.run(images, stop_at="l0.ln1")


def test_reserved_word_refused(tiny):
    with GoldenDevice(tiny[0]) as dev, pytest.raises(DeviceError, match="0x014 is no register"):
        dev.write32(0x14, 1)


def test_wrong_image_shape(acc):
    with pytest.raises(ShapeError, match=r"expected \[N, 3, 32, 64\]"):
        acc.run(np.zeros((1, 3, 32, 32), np.uint8))


def test_stream_double_buffers_and_matches(tiny, reference):
    cfg, w, images = tiny
    frames = [(f"f{i}", images[i % 3]) for i in range(5)]
    with GoldenDevice(cfg) as dev:
        acc = Accelerator(dev, cfg, w, batch=2)
        results = list(acc.stream(frames, task=0))
        slots = {acc.image_buffers[0].device_address, acc.image_buffers[1].device_address}
        assert len(slots) == 2
    assert [r.names for r in results] == [["f0", "f1"], ["f2", "f3"], ["f4"]]
    got = np.concatenate([r.output for r in results])
    np.testing.assert_array_equal(got, reference[0].output[[0, 1, 2, 0, 1]])


def test_throughput_test_reports(acc):
    r = acc.throughput_test(batches=2)
    assert r["images"] == 6 and r["images_per_s"] > 0 and r["kernel_clock_mhz"] == 300.0
    assert r["kernel_ms_per_image"] is None and "no cycle counter" in r["kernel_time_source"]
    for k in ("pack_ms_per_image", "sync_ms_per_image", "wait_ms_per_image", "dram_in_MBps"):
        assert r[k] >= 0


def test_cycle_model_hook_fills_the_counter(tiny):
    cfg, w, images = tiny
    with GoldenDevice(cfg, cycle_model=lambda c, n, d, b: 1000 * n + (1 << 33)) as dev:
        r = Accelerator(dev, cfg, w, batch=3).run(images)
    assert r.cycles == 3000 + (1 << 33)


def test_batched_schedule_mode(tiny, reference, tmp_path):
    cfg, w, images = tiny
    path = tmp_path / "s.jsonl"
    with RecordingDevice(GoldenDevice(cfg), path) as dev:
        r = Accelerator(dev, cfg, w, batch=3, batched_schedule=True).run(images)
    np.testing.assert_array_equal(r.output, reference[0].output)
    assert (W["mode"], 1) in _writes(path)


class _EdgeMoeMapDevice(GoldenDevice):
    """A device presenting Edge-MoE's own map (§10.3, no extensions), like its bitstream."""

    @property
    def regmap(self):
        return REGMAP.edge_moe_only()


def test_edge_moe_map_without_extensions(tiny, reference, tmp_path):
    cfg, w, images = tiny
    path = tmp_path / "s.jsonl"
    with RecordingDevice(_EdgeMoeMapDevice(cfg), path) as dev:
        acc = Accelerator(dev, cfg, w, batch=3)
        assert not acc.map_check.extensions
        r = acc.run(images, task=1)
        with pytest.raises(ConfigError, match="batched schedule needs moevit's mode register"):
            Accelerator(dev, cfg, w, batch=3, batched_schedule=True)
    np.testing.assert_array_equal(r.output, reference[1].output)
    assert r.cycles is None
    ext = {REGMAP.words()[n] for n in ("cycles_1", "cycles_2", "stage", "mode")}
    touched = {op["offset"] for op in ReplaySession(path).ops if op["op"] in ("read", "write")}
    assert not touched & ext


def test_edge_moe_map_timeout_message(tiny):
    cfg, w, images = tiny
    with _EdgeMoeMapDevice(cfg, stall_at=2) as dev:
        acc = Accelerator(dev, cfg, w, batch=3, timeout_s=0.2)
        with pytest.raises(DeviceTimeout, match="no stage register: Edge-MoE's own map"):
            acc.run(images, stop_at="l0.k")


def test_stream_packs_the_next_batch_before_waiting_for_the_current(tiny, tmp_path):
    """Double buffering, from the recorded order: batch k+1's images are synced into the other
    buffer before the wait of batch k, and the images pointer alternates between the two."""
    cfg, w, images = tiny
    path = tmp_path / "s.jsonl"
    with RecordingDevice(GoldenDevice(cfg), path) as dev:
        acc = Accelerator(dev, cfg, w, batch=1)
        list(acc.stream(list(images), task=0))
        slots = [b.device_address for b in acc.image_buffers]
    ops = [op for op in ReplaySession(path).ops
           if op["op"] == "wait" or (op["op"] == "sync_to" and op["address"] in slots)
           or (op["op"] == "write" and op["offset"] == W["images_1"])]
    kinds = [(op["op"], None if op["op"] == "wait" else op.get("address", op.get("value")))
             for op in ops]
    a, b = slots
    assert kinds == [("write", a),                                   # set-up: images -> slot a
                     ("sync_to", a), ("sync_to", b), ("wait", None),  # b packed during run 0
                     ("write", b), ("sync_to", a), ("wait", None),    # a packed during run 1
                     ("write", a), ("wait", None)]
