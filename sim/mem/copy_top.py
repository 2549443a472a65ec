"""``mem_copy_top``: a small test DUT with moevit_top's port names (``ap_clk``, ``ap_rst_n``,
``interrupt``, ``s_axi_control_*``, ``m_axi_gmem<k>_*``) that copies memory with the real AXI
burst masters (:class:`moevit.hw.top.axi_master.AxiMasterPort`), to exercise the simulated
DRAM (:mod:`moevit.sim.mem.top`) before the accelerator's core touches memory.

Control (``ap_ctrl_hs`` through :class:`moevit.hw.top.control.AxiLiteControl`, register map
:data:`COPY_REGMAP`): on ``ap_start`` every port ``k`` whose bit is set in ``ports`` copies
``beats`` beats from ``src + k * beats * beat_bytes`` to ``dst + k * beats * beat_bytes``
(its reader's beats go straight into its writer); ``ap_done`` when every engine is idle.
``cycles`` (kept by the control block) counts the run; ``errors`` holds each port's sticky
reader (bit 2k) and writer (bit 2k+1) error flags.
"""

from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.top.axi import axi4_signature, axi_lite_signature
from moevit.hw.top.axi_master import ADDR_WIDTH, DEFAULT_OUTSTANDING, AxiMasterPort
from moevit.hw.top.control import DATA_WIDTH, AxiLiteControl
from moevit.hw.units.common import silence
from moevit import regmap as rm

COPY_TOP = "mem_copy_top"
ID_WIDTH = 1

COPY_REGMAP = rm.RegisterMap(rm.layout((
    rm.Argument("src", "pointer", "source byte address of port 0's slice"),
    rm.Argument("dst", "pointer", "destination byte address of port 0's slice"),
    rm.Argument("beats", "scalar", "beats each port copies"),
    rm.Argument("ports", "scalar", "bit k: port k copies"),
    rm.Argument("cycles", "pointer", "cycles of the last run", access="read-only"),
    rm.Argument("errors", "scalar", "bit 2k: port k's reader error, 2k+1: its writer's",
                access="read-only"),
)), name="mem_copy_top", source="moevit.sim.mem.copy_top")


class CopyTop(Elaboratable):
    """See module doc.  ``ports`` masters (default ``cfg.mem_ports``), ``cfg.axi_width``
    data bits."""

    def __init__(self, cfg: AcceleratorConfig, ports: int | None = None,
                 max_outstanding: int = DEFAULT_OUTSTANDING):
        ports = cfg.mem_ports if ports is None else ports
        if not 1 <= ports <= 16:
            silence(self)
            raise ConfigError(f"copy top ports {ports} must be 1..16")
        self.cfg, self.ports, self.max_outstanding = cfg, ports, max_outstanding
        self.clk = Signal(name="ap_clk")
        self.rst_n = Signal(name="ap_rst_n")
        self.interrupt = Signal(name="interrupt")
        self.ctl_sig = axi_lite_signature(rm.ADDRESS_WIDTH, DATA_WIDTH)
        self.ctl = {n: Signal(m.shape, name=f"s_axi_control_{n.upper()}")
                    for n, m in self.ctl_sig.members.items()}
        self.mem_sig = axi4_signature(ADDR_WIDTH, cfg.axi_width, ID_WIDTH)
        self.mem = [{n: Signal(m.shape, name=f"m_axi_gmem{k}_{n.upper()}")
                     for n, m in self.mem_sig.members.items()} for k in range(ports)]

    def port_list(self) -> list[Signal]:
        out = [self.clk, self.rst_n, self.interrupt, *self.ctl.values()]
        for bus in self.mem:
            out += list(bus.values())
        return out

    def verilog(self) -> str:
        from amaranth.back import verilog
        return verilog.convert(self, name=COPY_TOP, ports=self.port_list(), emit_src=False)

    def elaborate(self, platform):
        from amaranth.lib import wiring
        m = Module()
        m.domains.sync = ClockDomain()
        m.d.comb += [ClockSignal().eq(self.clk), ResetSignal().eq(~self.rst_n)]
        m.submodules.control = ctl = AxiLiteControl(self.cfg, COPY_REGMAP)
        for name, member in self.ctl_sig.members.items():     # slave: Out members come in
            if member.flow == wiring.Out:
                m.d.comb += getattr(ctl.s_axi, name).eq(self.ctl[name])
            else:
                m.d.comb += self.ctl[name].eq(getattr(ctl.s_axi, name))
        m.d.comb += self.interrupt.eq(ctl.interrupt)

        beat_bytes = self.cfg.axi_width // 8
        running = Signal()
        cmd_rd = Signal(self.ports)     # descriptors still to hand to the engines
        cmd_wr = Signal(self.ports)
        idle_all = Signal()
        errors = []
        idle = []
        slice_bytes = Signal(64)
        m.d.comb += slice_bytes.eq(ctl.args.beats * beat_bytes)
        for k in range(self.ports):
            port = AxiMasterPort(self.cfg, addr_width=ADDR_WIDTH, id_width=ID_WIDTH,
                                 max_outstanding=self.max_outstanding)
            m.submodules[f"gmem{k}"] = port
            for name, member in self.mem_sig.members.items():
                if member.flow == wiring.Out:
                    m.d.comb += self.mem[k][name].eq(getattr(port.axi, name))
                else:
                    m.d.comb += getattr(port.axi, name).eq(self.mem[k][name])
            offset = slice_bytes * k
            m.d.comb += [port.rd_cmd.valid.eq(cmd_rd[k]),
                         port.rd_cmd.p.addr.eq(ctl.args.src + offset),
                         port.rd_cmd.p.beats.eq(ctl.args.beats),
                         port.wr_cmd.valid.eq(cmd_wr[k]),
                         port.wr_cmd.p.addr.eq(ctl.args.dst + offset),
                         port.wr_cmd.p.beats.eq(ctl.args.beats),
                         port.wr_data.valid.eq(port.rd_data.valid),
                         port.wr_data.payload.eq(port.rd_data.payload),
                         port.rd_data.ready.eq(port.wr_data.ready)]
            with m.If(port.rd_cmd.valid & port.rd_cmd.ready):
                m.d.sync += cmd_rd[k].eq(0)
            with m.If(port.wr_cmd.valid & port.wr_cmd.ready):
                m.d.sync += cmd_wr[k].eq(0)
            errors += [port.rd_error, port.wr_error]
            idle.append(~port.rd_busy & ~port.wr_busy)
        from amaranth import Cat
        m.d.comb += [ctl.args.errors.eq(Cat(*errors)),
                     idle_all.eq(Cat(*idle).all() & (cmd_rd == 0) & (cmd_wr == 0))]
        done = Signal()
        m.d.comb += [ctl.ap_done.eq(done), ctl.ap_ready.eq(done),
                     ctl.ap_idle.eq(~running)]
        with m.If(~running & ctl.ap_start):
            m.d.sync += [running.eq(1), cmd_rd.eq(ctl.args.ports), cmd_wr.eq(ctl.args.ports)]
        # the engines' busy rises the cycle after they take a descriptor: wait one cycle
        settle = Signal()
        m.d.sync += settle.eq(running & (cmd_rd == 0) & (cmd_wr == 0))
        with m.If(running & settle & idle_all):
            m.d.comb += done.eq(1)
            m.d.sync += [running.eq(0), settle.eq(0)]
        return m
