"""``moevit run`` / ``moevit regmap``: outputs, and exit 2 with a message naming each mistake."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from moevit.cli import main
from moevit.host.record import ReplaySession, fake_pynq_module

FIX = Path(__file__).parent / "fixtures"
BASE = ["run", "--preset", "tiny", "--seed", "0", "--quiet"]


def _run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def bit(tmp_path):
    b = tmp_path / "moevit.bit"
    b.write_bytes(b"\0")
    return b


def test_run_synthetic_writes_outputs_and_pictures(tmp_path, capsys, tiny, reference):
    out = tmp_path / "out"
    rc, so, _ = _run(capsys, *BASE, "--synthetic", "3", "--batch", "2", "--task", "semseg",
                     "--out", str(out))
    assert rc == 0
    assert "3 images," in so and "images/s" in so and "ms/image" in so and "backend golden" in so
    feats = np.load(out / "features.int32.npy")
    np.testing.assert_array_equal(feats, reference[0].output)   # synthetic seeds 0..2 = fixture
    assert sorted(p.name for p in out.glob("*.png")) == [f"synthetic000{i}.semseg.png" for i in range(3)]


def test_run_folder_and_stop_at(tmp_path, capsys, tiny, reference):
    from PIL import Image
    cfg, _, images = tiny
    src = tmp_path / "imgs"
    src.mkdir()
    np.save(src / "a.npy", np.floor(images[1] * 256).astype(np.uint8))
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(src / "b.png")   # resized
    out = tmp_path / "o"
    rc, so, _ = _run(capsys, *BASE, "--images", str(src), "--no-pictures", "--out", str(out))
    assert rc == 0 and "2 images" in so
    np.testing.assert_array_equal(np.load(out / "features.int32.npy")[0], reference[0].output[1])
    rc, so, _ = _run(capsys, *BASE, "--images", str(src / "a.npy"), "--task", "1", "--stop-at",
                     "l0.softmax_info", "--out", str(out))
    assert rc == 0 and "debug_id 4" in so
    np.testing.assert_array_equal(np.load(out / "l0.softmax_info.int32.npy"),
                                  reference[1].taps["l0.softmax_info"][1:2])


def test_run_video_gif(tmp_path, capsys):
    import imageio.v3 as iio
    gif = tmp_path / "clip.gif"
    iio.imwrite(gif, np.random.default_rng(0).integers(0, 255, (3, 40, 80, 3), dtype=np.uint8))
    rc, so, _ = _run(capsys, *BASE, "--video", str(gif), "--no-pictures", "--out",
                     str(tmp_path / "o"))
    assert rc == 0 and "3 images" in so


@pytest.mark.parametrize("argv, message", [
    (["--backend", "rtl", "--synthetic", "1", "--bitstream", "x.bit"],
     "--bitstream/--hwh are for --backend pynq, not rtl"),
    (["--synthetic", "1", "--task", "segment"], "unknown task 'segment'"),
    (["--synthetic", "1", "--stop-at", "l0.gate"], "unknown stage 'l0.gate'"),
    (["--synthetic", "1", "--stop-at", "l1.gate_logits"], "never reaches DRAM"),
    (["--synthetic", "1", "--bitstream", "x.bit"], "--bitstream/--hwh are for --backend pynq"),
    (["--backend", "pynq", "--synthetic", "1"], "needs a bitstream"),
    (["--backend", "pynq", "--bitstream", "nope.bit", "--synthetic", "1"], "nope.bit does not exist"),
    (["--images", "no/such/dir"], "no such file or folder"),
    (["--synthetic", "1", "--batch", "0"], "--batch 0"),
])
def test_mistakes_exit_2(tmp_path, capsys, argv, message):
    rc, _, err = _run(capsys, *BASE, *argv, "--out", str(tmp_path / "o"))
    assert rc == 2 and message in err, err


def test_image_size_exit_2(tmp_path, capsys):
    f = tmp_path / "small.npy"
    np.save(f, np.zeros((3, 16, 16), np.uint8))
    rc, _, err = _run(capsys, *BASE, "--images", str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "needs [3, 32, 64]" in err


def test_unwritable_output_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, _, err = _run(capsys, *BASE, "--synthetic", "1", "--out", str(blocker / "sub"))
    assert rc == 2 and "is a file, not a folder" in err
    assert blocker.read_text() == ""


def test_failed_run_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    from moevit.errors import MoevitError
    from moevit.host import driver
    out = tmp_path / "o"

    def boom(*a, **k):
        raise MoevitError("injected failure")
    monkeypatch.setattr(driver.Accelerator, "stream", boom)
    rc, _, err = _run(capsys, *BASE, "--synthetic", "1", "--out", str(out))
    assert rc == 2 and "injected failure" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bit_without_hwh_exit_2(tmp_path, capsys, bit):
    rc, _, err = _run(capsys, *BASE, "--backend", "pynq", "--bitstream", str(bit), "--synthetic",
                      "1", "--out", str(tmp_path / "o"))
    assert rc == 2 and "has no .hwh beside it" in err


def test_map_mismatch_exit_2(tmp_path, capsys, bit):
    text = (FIX / "moevit_zcu104.hwh").read_text().replace('REGISTER NAME="num_images"',
                                                          'REGISTER NAME="n_images"')
    bit.with_suffix(".hwh").write_text(text)
    rc, _, err = _run(capsys, *BASE, "--backend", "pynq", "--bitstream", str(bit), "--synthetic",
                      "1", "--out", str(tmp_path / "o"))
    assert rc == 2 and "missing: num_images (0x010)" in err


def test_board_absent_exit_2(tmp_path, capsys, bit, monkeypatch):
    shutil.copy(FIX / "moevit_zcu104.hwh", bit.with_suffix(".hwh"))
    monkeypatch.setitem(sys.modules, "pynq", None)      # import pynq -> ImportError
    rc, _, err = _run(capsys, *BASE, "--backend", "pynq", "--bitstream", str(bit), "--synthetic",
                      "1", "--out", str(tmp_path / "o"))
    assert rc == 2 and "'pynq' package is not installed" in err


def test_recorded_cli_session_replays_on_pynq_path(tmp_path, capsys, bit, monkeypatch):
    """A session recorded with --record becomes a test: the same command on the pynq backend
    (stand-in pynq serving the recording) issues the same operations and writes the same
    outputs."""
    session_file = tmp_path / "s.jsonl"
    args = [*BASE, "--synthetic", "2", "--batch", "2", "--no-pictures"]
    rc, _, _ = _run(capsys, *args, "--record", str(session_file), "--out", str(tmp_path / "a"))
    assert rc == 0
    session = ReplaySession(session_file)
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq_module(session))
    shutil.copy(FIX / "moevit_zcu104.hwh", bit.with_suffix(".hwh"))
    rc, so, _ = _run(capsys, *args, "--backend", "pynq", "--bitstream", str(bit), "--out",
                     str(tmp_path / "b"))
    assert rc == 0 and "backend pynq" in so
    session.finish()
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "features.int32.npy"),
                                  np.load(tmp_path / "b" / "features.int32.npy"))


def test_regmap_command(tmp_path, capsys):
    rc, so, _ = _run(capsys, "regmap")
    assert rc == 0 and "0x14c  debug_id" in so and "0x154  cycles_1" in so
    rc, so, _ = _run(capsys, "regmap", "--json")
    assert rc == 0 and '"name": "debug_id"' in so
    rc, so, err = _run(capsys, "regmap", "--hwh", str(FIX / "edge_moe_vit_compute.hwh"))
    assert rc == 0 and "ViT_compute_0" in so and "no extensions" in err
    rc, so, _ = _run(capsys, "regmap", "--format", "c")
    assert "#define MOEVIT_CTRL_ADDR_IMAGES_1 0x020u" in so
    bad = tmp_path / "bad.hwh"
    bad.write_text((FIX / "edge_moe_vit_compute.hwh").read_text().replace('VALUE="332"', 'VALUE="400"'))
    rc, _, err = _run(capsys, "regmap", "--hwh", str(bad))
    assert rc == 2 and "debug_id: expected 0x14c, found 0x190" in err


@pytest.mark.slow
def test_edge_moe_folder_of_images_end_to_end(tmp_path, capsys, edge_cfg):
    """moevit run on the full edge-moe preset with a weights folder in Edge-MoE's format (the
    public snapshot lacks expert weights, so the folder is written from seeded weights) and a
    folder of pictures: outputs equal GoldenModel, pictures written."""
    from PIL import Image
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import load_folder, save_folder, synthetic_image
    from moevit.golden.weights import seeded_weights
    from moevit.host.frames import folder_frames
    cfg = edge_cfg
    save_folder(seeded_weights(cfg, 0), tmp_path / "w", cfg)
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        a = (synthetic_image(cfg, i) * 256).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(a).resize((300, 200)).save(tmp_path / "imgs" / f"p{i}.png")
    out = tmp_path / "out"
    rc, so, _ = _run(capsys, "run", "--preset", "edge-moe", "--weights", str(tmp_path / "w"),
                     "--images", str(tmp_path / "imgs"), "--task", "depth", "--batch", "2",
                     "--quiet", "--out", str(out))
    assert rc == 0 and "2 images" in so
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.depth.png", "p1.depth.png"]
    imgs = np.stack([im for _, im in folder_frames(tmp_path / "imgs", cfg)])
    ref = GoldenModel(cfg, load_folder(tmp_path / "w", cfg)).run(imgs, task=1).output
    np.testing.assert_array_equal(np.load(out / "features.int32.npy"), ref)


def test_weights_from_onboard_folder_and_checkpoint(tmp_path, capsys, tiny, reference):
    import torch
    from moevit.golden.float.checkpoint import load_weights, save_m3vit_checkpoint, to_weights
    from moevit.golden.float.model import FloatM3ViT
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import save_onboard
    cfg, w, images = tiny
    save_onboard(w, tmp_path / "onboard", cfg)
    rc, _, _ = _run(capsys, "run", "--preset", "tiny", "--weights", str(tmp_path / "onboard"),
                    "--synthetic", "3", "--batch", "3", "--no-pictures", "--quiet", "--out",
                    str(tmp_path / "a"))
    assert rc == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "features.int32.npy"), reference[0].output)
    torch.manual_seed(1)
    model = load_weights(FloatM3ViT(cfg), w, cfg)
    save_m3vit_checkpoint(model, tmp_path / "ckpt")
    rc, so, err = _run(capsys, "run", "--preset", "tiny", "--checkpoint", str(tmp_path / "ckpt"),
                       "--synthetic", "3", "--batch", "3", "--quiet", "--out", str(tmp_path / "b"))
    assert rc == 0 and "untrained" not in err      # the checkpoint's heads are used
    ref = GoldenModel(cfg, to_weights(model, cfg)).run(images).output
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "features.int32.npy"), ref)
    assert len(list((tmp_path / "b").glob("*.semseg.png"))) == 3
