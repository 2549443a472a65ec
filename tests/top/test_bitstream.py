"""``make bitstream``: the exported top, the Vivado TCL, and their agreement with the register
map, the config and each other; the script's exit status without Vivado; tclint syntax."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.hw.top import vivado
from moevit.hw.top.wrapper import PLACEHOLDER_NOTE
from moevit.regmap import ADDRESS_WIDTH, REGMAP

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bitstream.py"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    out = tmp_path_factory.mktemp("bitstream")
    files = vivado.write_project(preset("zcu104"), out)
    return out, files


def verilog_ports(text: str) -> dict:
    """Ports of the first module (the top): name -> (direction, width, {attr: value})."""
    head = text[text.index("module moevit_top("):]
    head = head[:head.index("endmodule")]
    ports, attrs = {}, {}
    for line in head.splitlines():
        a = re.match(r'\s*\(\* (\w+) = "(.*)" \*\)', line)
        if a:
            attrs[a.group(1)] = a.group(2)
            continue
        d = re.match(r"\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", line)
        if d:
            width = int(d.group(2)) + 1 if d.group(2) else 1
            ports[d.group(3)] = (d.group(1), width, attrs)
        attrs = {}
    return ports


def interfaces_from_verilog(ports: dict) -> dict:
    """Interface name -> {logical signal: (port, direction, width)}, and the parameters."""
    out, params = {}, {}
    for name, (_, width, attrs) in ports.items():
        info = attrs.get("X_INTERFACE_INFO")
        assert info, f"port {name} has no X_INTERFACE_INFO"
        vlnv, iface, logical = info.split()
        if vlnv.endswith("aximm:1.0"):
            assert name == f"{iface}_{logical}", f"port {name} tagged as {iface} {logical}"
        out.setdefault(iface, {"vlnv": vlnv, "signals": {}})["signals"][logical] = \
            (name, ports[name][0], width)
        if "X_INTERFACE_PARAMETER" in attrs:
            kv = dict(p.strip().split(" ", 1) for p in attrs["X_INTERFACE_PARAMETER"].split(","))
            params[kv["XIL_INTERFACENAME"]] = kv
    return out, params


def test_verilog_interfaces_are_complete(project):
    out, files = project
    text = files["verilog"].read_text()
    assert text.startswith("// moevit accelerator: sequenced core")
    ifaces, params = interfaces_from_verilog(verilog_ports(text))
    cfg = preset("zcu104")
    ctl = ifaces["s_axi_control"]["signals"]
    assert params["s_axi_control"]["PROTOCOL"] == "AXI4LITE"
    assert int(params["s_axi_control"]["ADDR_WIDTH"]) == ADDRESS_WIDTH == ctl["AWADDR"][2]
    assert ctl["AWADDR"][1] == "input" and ctl["RDATA"][1] == "output"
    assert max(REGMAP.words().values()) < 1 << ctl["ARADDR"][2]
    masters = sorted(n for n in ifaces if n.startswith("m_axi_gmem"))
    assert masters == [f"m_axi_gmem{k}" for k in range(cfg.mem_ports)]
    for m in masters:
        s = ifaces[m]["signals"]
        assert int(params[m]["DATA_WIDTH"]) == cfg.axi_width == s["WDATA"][2] == s["RDATA"][2]
        assert s["ARADDR"][2] == s["AWADDR"][2] == 64 == int(params[m]["ADDR_WIDTH"])
        for idsig in ("AWID", "BID", "ARID", "RID"):
            assert idsig in s, f"{m} lacks {idsig}"
        assert s["ARVALID"][1] == "output" and s["RVALID"][1] == "input"
    assert params["ap_rst_n"]["POLARITY"] == "ACTIVE_LOW"
    assert set(params["ap_clk"]["ASSOCIATED_BUSIF"].split(":")) == {"s_axi_control", *masters}
    assert ifaces["interrupt"]["signals"]["INTERRUPT"][1] == "output"


def test_tcl_matches_regmap_config_and_top(project):
    out, files = project
    tcl = files["tcl"].read_text()
    cfg = preset("zcu104")
    flat = tcl.replace("\\\n", " ")
    ports = verilog_ports(files["verilog"].read_text())
    ifaces, _ = interfaces_from_verilog(ports)
    # every kernel pin/interface the TCL connects exists in the Verilog, and vice versa
    intf = set(re.findall(r"get_bd_intf_pins moevit_top_0/(\w+)", flat))
    assert intf == set(ifaces) - {"ap_clk", "ap_rst_n", "interrupt"}
    pins = set(re.findall(r"get_bd_pins moevit_top_0/(\w+)", flat))
    assert pins == {"ap_clk", "ap_rst_n", "interrupt"} and pins <= set(ports)
    # control address = the register map's
    m = re.search(r"assign_bd_address -offset (0x[0-9A-F]+) -range (0x[0-9A-F]+) .*?"
                  r"moevit_top_0/s_axi_control/\*", flat)
    assert m and int(m.group(1), 16) == REGMAP.base_address == 0xA0000000
    assert int(m.group(2), 16) == REGMAP.address_range
    # control through HPM0_FPD, masters to HP0..3 at 128 bits, 300 MHz PL clock, the part
    assert re.search(r"zynq_ultra_ps_e_0/M_AXI_HPM0_FPD\] \s*\[get_bd_intf_pins axi_smc_ctrl/S00_AXI",
                     flat)
    assert cfg.mem_ports == 4
    for k in range(cfg.mem_ports):
        assert re.search(rf"moevit_top_0/m_axi_gmem{k}\] \s*\[get_bd_intf_pins axi_smc_hp{k}/S00_AXI",
                         flat)
        assert f"axi_smc_hp{k}/M00_AXI] [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP{k}_FPD]" \
            in re.sub(r"\s+", " ", flat)
        assert f"CONFIG.PSU__SAXIGP{k + 2}__DATA_WIDTH {{{cfg.hp_port_width}}}" in flat
    assert f"PL0_REF_CTRL__FREQMHZ {{{cfg.clock_mhz:g}}}" in flat
    assert f"set part {cfg.fpga_part}" in flat
    assert "zcu104:part0" in flat and "apply_board_preset" in flat
    assert "write_bitstream" in flat and "moevit.bit" in flat and "moevit.hwh" in flat
    for rpt in vivado.REPORTS.values():
        assert rpt in flat
    info = json.loads(files["info"].read_text())
    assert info["placeholder_core"] is False
    assert "sequenced core" in info["note"]
    assert info["control"]["base_address"] == REGMAP.base_address


def test_more_masters_than_hp_ports_share_smartconnects(tmp_path):
    files = vivado.write_project(preset("zcu104").replace(mem_ports=6), tmp_path)
    flat = files["tcl"].read_text().replace("\\\n", " ")
    assert "CONFIG.NUM_SI {2} CONFIG.NUM_MI {1}] [get_bd_cells axi_smc_hp0]" in flat
    assert re.search(r"m_axi_gmem4\] \s*\[get_bd_intf_pins axi_smc_hp0/S01_AXI", flat)
    assert "S_AXI_HP4" not in flat


def test_only_zcu104_is_supported(tmp_path):
    with pytest.raises(ConfigError, match="no Vivado block design for board 'zcu102'"):
        vivado.write_project(preset("edge-moe"), tmp_path)
    with pytest.raises(ConfigError, match="SAIF file .* not found"):
        vivado.write_project(preset("zcu104"), tmp_path, saif=tmp_path / "none.saif")


def _tclint():
    exe = Path(sys.executable).parent / "tclint"
    if not exe.exists():
        exe = shutil.which("tclint")
        if exe is None:
            pytest.skip("tclint not installed (pip install -r requirements.txt)")
    return str(exe)


def test_tcl_syntax_tclint(project, tmp_path):
    out, files = project
    ok = subprocess.run([_tclint(), str(files["tcl"])], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the check can fail: an unbalanced brace is reported
    broken = tmp_path / "broken.tcl"
    broken.write_text(files["tcl"].read_text().replace("if {[llength $board_parts] == 0} {",
                                                       "if {[llength $board_parts] == 0 {", 1))
    bad = subprocess.run([_tclint(), str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0


def test_saif_is_read_before_report_power(tmp_path):
    saif = tmp_path / "act.saif"
    saif.write_text("(SAIFILE)\n")
    files = vivado.write_project(preset("zcu104"), tmp_path / "p", saif=saif,
                                 saif_strip_path="tb/dut")
    tcl = files["tcl"].read_text()
    assert tcl.index("read_saif -strip_path tb/dut") < tcl.index("report_power")
    assert (tmp_path / "p" / "act.saif").is_file()


def test_script_without_vivado_writes_tcl_and_exits_2(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    if shutil.which("vivado", path=env["PATH"]):
        pytest.skip("vivado is installed here")
    res = subprocess.run([sys.executable, str(SCRIPT), "--preset", "zcu104", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Vivado not found on PATH" in res.stderr
    assert PLACEHOLDER_NOTE not in res.stdout + (tmp_path / "moevit_top.v").read_text()
    assert (tmp_path / "moevit.tcl").is_file() and (tmp_path / "moevit_top.v").is_file()


def test_script_parse_only(tmp_path):
    fixtures = Path(__file__).parent / "fixtures"
    for kind, name in vivado.REPORTS.items():
        shutil.copyfile(fixtures / f"{kind}.rpt", tmp_path / name)
    res = subprocess.run([sys.executable, str(SCRIPT), "--parse-only", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rep = json.loads((tmp_path / "moevit.reports.json").read_text())
    assert rep["utilization"]["summary"]["DSP"]["used"] == 12
    assert rep["timing"]["met"] is False
    assert rep["power"]["total_w"] == 4.012
