"""Construction checks of the top-level pieces (no simulator): signatures generated from
the register map and the config, and clear errors for what cannot be built."""

import dataclasses

import pytest
from amaranth import Shape

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.top.axi_master import AxiBurstReader, AxiMasterPort
from moevit.hw.top.control import AxiLiteControl, args_signature, check_regmap
from moevit.hw.top.wrapper import MoevitTop
from moevit import regmap as rm
from moevit.hw.units.common import silence


def test_args_follow_the_regmap():
    members = args_signature().members
    for r in rm.REGMAP.registers:
        if r.name in ("CTRL", "GIER", "IP_IER", "IP_ISR") or r.name == "cycles":
            assert r.name not in members
            continue
        assert Shape.cast(members[r.name].shape).width == r.width
        assert (members[r.name].flow.name == "In") == (r.access == "read-only"), r.name
    assert Shape.cast(members["images"].shape).width == 64


def test_regmap_must_fit_the_address_width():
    with pytest.raises(ConfigError, match="does not fit the 8-bit control address space"):
        check_regmap(rm.REGMAP, 8)
    regs = tuple(dataclasses.replace(r, access="read-write") if r.name == "cycles" else r
                 for r in rm.REGMAP.registers)
    with pytest.raises(ConfigError, match="cycles is driven by the control block"):
        AxiLiteControl(regmap=rm.RegisterMap(regs))


def test_master_widths_from_config():
    cfg = preset("tiny")
    port = AxiMasterPort(cfg)
    silence(port)
    silence(port.reader)
    silence(port.writer)
    assert port.p.data_width == cfg.axi_width and port.p.beat_bytes == cfg.axi_width // 8
    assert port.p.max_burst == 4096 // (cfg.axi_width // 8)       # 128 beats at 256 bits
    assert port.axi.wstrb.shape().width == cfg.axi_width // 8
    narrow = AxiBurstReader(data_width=32)
    silence(narrow)
    assert narrow.p.max_burst == 256                               # 4 KiB / 4 B > 256


@pytest.mark.parametrize("kw,msg", [
    (dict(data_width=96), "power of two"),
    (dict(data_width=256, max_outstanding=0), "max_outstanding"),
    (dict(data_width=256, id_width=0), "ID signals"),
    (dict(data_width=256, addr_width=8), "address width"),
    (dict(), "needs a config"),
])
def test_master_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        AxiBurstReader(None, **kw)


def test_top_interfaces():
    top = MoevitTop(preset("zcu104").replace(mem_ports=2), placeholder=True)
    silence(top)
    names = [i.name for i in top.interfaces()]
    assert names == ["s_axi_control", "m_axi_gmem0", "m_axi_gmem1"]
    default = MoevitTop(preset("zcu104"))
    silence(default)
    assert len(default.interfaces()) == 1 + preset("zcu104").mem_ports
    assert top.interfaces()[0].addr_width == rm.ADDRESS_WIDTH
    with pytest.raises(ConfigError, match="memory ports 0"):
        MoevitTop(preset("zcu104"), ports=0)
    # the sequenced core reads on one port per reader channel
    with pytest.raises(ConfigError, match="mem_ports is 2"):
        MoevitTop(preset("zcu104"), ports=2)


def test_kv_replay_in_the_program_and_its_limits():
    """The program reads K and V once and replays them query_blocks times; the core refuses
    a replay it has no route or room for."""
    from moevit.hw.top import core, program as prog
    cfg = preset("tiny")
    stages = prog.program(cfg)
    rep = {s.name: s for s in stages if s.replay is not None and s.layer == 0}
    assert set(rep) == {"score_buffer", "av"}
    assert rep["score_buffer"].replay == prog.Replay(prog.R_B, cfg.query_blocks)
    assert rep["av"].replay == prog.Replay(prog.R_A, cfg.query_blocks)
    core._check_replays(cfg, stages)
    qk = rep["score_buffer"]
    k = qk.reads[prog.R_B][0]
    for bad in (dataclasses.replace(qk, replay=prog.Replay(prog.R_A, 2)),
                dataclasses.replace(qk, replay=prog.Replay(prog.R_B, cfg.query_blocks + 1)),
                dataclasses.replace(qk, reads={**qk.reads, prog.R_B: (dataclasses.replace(
                    k, inner=2),)}),
                dataclasses.replace(qk, reads={**qk.reads, prog.R_B: (dataclasses.replace(
                    k, beats=cfg.tokens * cfg.feature_blocks + 1),)})):
        with pytest.raises(ConfigError, match="K/V replay buffer"):
            core._check_replays(cfg, [bad])
