"""The simulated DRAM's Python side without a simulator: image files (checked against an
independent per-word int conversion), the wrapper generator's port handling and its refusals."""

import re

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.top.wrapper import MoevitTop, TOP_NAME, top_verilog
from moevit.sim.mem.copy_top import COPY_TOP, CopyTop
from moevit.sim.mem.image import dump_words, read_dump, words_hex, write_image
from moevit.sim.mem.top import (SimMemSpec, build_port_top, build_sim_top, memory_buses,
                                parse_ports, sim_top_ports, sim_top_verilog)

WB = 32


def _ref_lines(data: bytes, word_bytes: int) -> list[str]:
    """Independent reference: each word as a little-endian int, printed MSB first."""
    data = data + bytes(-len(data) % word_bytes)
    return [f"{int.from_bytes(data[i:i + word_bytes], 'little'):0{2 * word_bytes}x}"
            for i in range(0, len(data), word_bytes)]


def test_words_hex_matches_int_conversion():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 5 * WB + 7, dtype=np.uint8)       # last word padded
    text = words_hex(data, WB).decode()
    assert text.splitlines() == _ref_lines(data.tobytes(), WB)
    # byte 0 is the least significant: the last two hex digits of the first line
    assert text.splitlines()[0][-2:] == f"{data[0]:02x}"


def test_image_regions_and_dump_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, 3 * WB, dtype=np.uint8)
    b = rng.integers(0, 256, 100, dtype=np.uint8).view(np.int8)  # any dtype, viewed as bytes
    base = 0x4000_0000
    path = write_image(tmp_path / "img.hex", {base + 0x1000: b, base: a}, word_bytes=WB,
                       base=base)
    lines = path.read_text().splitlines()
    assert lines[0] == "@0" and lines[1:4] == _ref_lines(a.tobytes(), WB)
    assert lines[4] == f"@{0x1000 // WB:x}"
    assert lines[5:] == _ref_lines(b.tobytes(), WB)
    # a $writememh-style dump (comment line, addresses, upper case) reads back to bytes
    dump = tmp_path / "dump.hex"
    dump.write_text("// 0x00000000\n@0\n" + "\n".join(x.upper() for x in lines[1:4]) + "\n")
    assert (read_dump(dump, word_bytes=WB, words=3) == a).all()
    # short lines (a simulator that drops leading zeros) are padded
    dump.write_text("1\n" + "0" * 63 + "2\n")
    got = read_dump(dump, word_bytes=WB)
    assert got[0] == 1 and got[WB] == 2 and got.sum() == 3


def test_image_errors(tmp_path):
    with pytest.raises(ConfigError, match="start on a 32-byte word"):
        write_image(tmp_path / "x.hex", {4: b"1"}, word_bytes=WB)
    with pytest.raises(ConfigError, match="overlap"):
        write_image(tmp_path / "x.hex", {0: bytes(40), 32: b"1"}, word_bytes=WB)
    with pytest.raises(ConfigError, match="past the simulated memory"):
        write_image(tmp_path / "x.hex", {0: bytes(65)}, word_bytes=WB, words=2)
    (tmp_path / "bad.hex").write_text("x" * 64 + "\n")
    with pytest.raises(ConfigError, match="non-hex"):
        read_dump(tmp_path / "bad.hex", word_bytes=WB)
    assert dump_words(0x1010, 0x30, word_bytes=WB, base=0x1000) == (0, 1)


def test_wrapper_for_moevit_top():
    """The real moevit_top (placeholder core today) wraps: its gmem ports go to the memory,
    everything else passes through, the knobs are added."""
    cfg = preset("tiny")
    text = top_verilog(MoevitTop(cfg))
    bus = memory_buses(parse_ports(text, TOP_NAME))
    assert (bus.ports, bus.data_width, bus.addr_width) == (cfg.mem_ports, cfg.axi_width, 64)
    v = sim_top_verilog(text, TOP_NAME, SimMemSpec(words_log2=20))
    assert f".PORTS({cfg.mem_ports})" in v and ".WORDS_LOG2(20)" in v
    names = sim_top_ports(text, TOP_NAME)
    assert "s_axi_control_AWADDR" in names and "interrupt" in names
    assert "sim_mem_dump" in names and not any(n.startswith("m_axi_gmem") for n in names)
    # every gmem member the memory needs is connected exactly once
    for k in range(cfg.mem_ports):
        assert len(re.findall(rf"\.m_axi_gmem{k}_ARADDR\(", v)) == 1
        assert f".m_axi_gmem{k}_ARLOCK(" not in v


def test_wrapper_refusals():
    cfg = preset("tiny")
    text = CopyTop(cfg, ports=2).verilog()
    with pytest.raises(ConfigError, match="no m_axi_gmem"):
        memory_buses(parse_ports(text.replace("m_axi_gmem", "m_axi_xmem"), COPY_TOP))
    with pytest.raises(ConfigError, match="m_axi_gmem1 has no WSTRB"):
        memory_buses(parse_ports(text.replace("m_axi_gmem1_WSTRB", "m_axi_gmem1_XSTRB"),
                                 COPY_TOP))
    with pytest.raises(ConfigError, match="numbered"):
        memory_buses(parse_ports(text.replace("m_axi_gmem1_", "m_axi_gmem2_"), COPY_TOP))
    with pytest.raises(ConfigError, match="no port ap_clk"):
        sim_top_verilog(text, COPY_TOP, clock="ap_clk_x")
    with pytest.raises(ConfigError, match="module nothere not found"):
        parse_ports(text, "nothere")
    with pytest.raises(ConfigError, match="4 KiB aligned"):
        SimMemSpec(base=0x100)
    with pytest.raises(ConfigError, match="power of two"):
        SimMemSpec(rd_queue=6)


def test_icarus_refusals():
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match="Icarus is refused for a wrapped top.*verilator"):
        build_sim_top(CopyTop(cfg).verilog(), COPY_TOP, cfg, "sim_mem_copy",
                      mem=SimMemSpec(words_log2=12), sim="icarus")
    with pytest.raises(ConfigError, match=r"2\^21-word.*verilator"):
        build_port_top(cfg, "sim_mem_port", mem=SimMemSpec(words_log2=21), sim="icarus")


def test_runner_public_signals(tmp_path):
    """build_simulator(public=[...]): the cocotb Verilator command loses --public-flat-rw, a
    control file makes exactly the named top signals public, and the cache key differs."""
    from moevit.sim import runner

    class FakeRunner:
        def _build_command(self):
            return [["verilator", "-cc", "--vpi", "--public-flat-rw", "x.v"], ["make"]]
    r = FakeRunner()
    runner._drop_public_flat_rw(r)
    assert r._build_command() == [["verilator", "-cc", "--vpi", "x.v"], ["make"]]
    vlt = runner._public_config(tmp_path, "top", ["ap_clk", "sim_mem_dump"]).read_text()
    assert vlt.splitlines() == ["`verilator_config",
                                'public_flat_rw -module "top" -var "ap_clk"',
                                'public_flat_rw -module "top" -var "sim_mem_dump"']
    src = tmp_path / "a.v"
    src.write_text("module top; endmodule\n")
    plain = runner.sources_key([src], "verilator", "False", "top")
    assert plain != runner.sources_key([src], "verilator", "False", "top", "public", "ap_clk")
