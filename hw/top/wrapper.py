"""The Vivado-facing top module ``moevit_top``: HLS-style port names with X_INTERFACE_INFO.

Ports, named as an HLS kernel's so that Vivado's IP integrator and PYNQ see the same shape as
Edge-MoE's ``ViT_compute``:

* ``ap_clk``, ``ap_rst_n`` (active low), ``interrupt`` (level high);
* ``s_axi_control_<SIGNAL>``: the AXI4-Lite control slave (:mod:`moevit.hw.top.control`);
* ``m_axi_gmem<k>_<SIGNAL>``, k < ``cfg.mem_ports``: AXI4 masters (:mod:`moevit.hw.top.axi_master`),
  ``cfg.axi_width``-bit data, 64-bit addresses, ID signals present.

Every port carries ``X_INTERFACE_INFO`` (and the first port of each interface
``X_INTERFACE_PARAMETER``; written into the text by :func:`top_verilog`), so a module reference of this Verilog in a block design gets its
AXI interfaces, clock, reset and interrupt inferred.  ``FREQ_HZ`` is left for the block
design to propagate from the PS clock.

Behind the control block sits the accelerator: :class:`moevit.hw.top.core.SequencedCore`
(the datapath units run by the spec §6.2 schedule over the memory masters).  For a quick
control-block smoke test, ``MoevitTop(cfg, ports, placeholder=True)`` puts
:class:`PlaceholderCore` there instead (``ap_done`` one cycle after ``ap_start``, no memory
access; any number of ports); its exported Verilog starts with a comment saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import wiring

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.top.axi import axi4_signature, axi_lite_signature
from moevit.hw.top.axi_master import ADDR_WIDTH, AxiMasterPort, DEFAULT_OUTSTANDING
from moevit.hw.top.control import DATA_WIDTH as CONTROL_DATA_WIDTH, AxiLiteControl
from moevit.hw.units.common import silence
from moevit import regmap as rm

TOP_NAME = "moevit_top"
CONTROL_BUS = "s_axi_control"
CLOCK, RESET, INTERRUPT = "ap_clk", "ap_rst_n", "interrupt"
ID_WIDTH = 1

PLACEHOLDER_NOTE = (
    "PLACEHOLDER CORE: this moevit_top has the real AXI4-Lite control block and AXI4 burst "
    "masters, but the accelerator datapath and layer sequencer are NOT assembled yet; the "
    "core answers ap_start with ap_done one cycle later and does no computation and no "
    "memory access. It is not the moevit accelerator.")

_XI = "X_INTERFACE_INFO"
_XP = "X_INTERFACE_PARAMETER"
_AXIMM = "xilinx.com:interface:aximm:1.0"


def memory_bus(k: int) -> str:
    return f"m_axi_gmem{k}"


@dataclass(frozen=True)
class BusInterface:
    """One AXI interface of the top: its name, protocol and widths (what the TCL and the
    tests read)."""

    name: str
    protocol: str          # AXI4LITE or AXI4
    mode: str              # slave or master
    data_width: int
    addr_width: int
    id_width: int = 0


class PlaceholderCore(Elaboratable):
    """Stands in for the datapath: ``ap_ready``/``ap_done`` one cycle after ``ap_start``."""

    def __init__(self):
        self.ap_start = Signal()
        self.ap_done = Signal()
        self.ap_ready = Signal()
        self.ap_idle = Signal()

    def elaborate(self, platform):
        m = Module()
        busy = Signal()
        m.d.comb += [self.ap_idle.eq(~busy & ~self.ap_start),
                     self.ap_done.eq(busy), self.ap_ready.eq(busy)]
        m.d.sync += busy.eq(self.ap_start & ~busy)
        return m


class MoevitTop(Elaboratable):
    """``moevit_top`` for ``cfg`` with ``ports`` memory masters (default ``cfg.mem_ports``;
    see module doc)."""

    def __init__(self, cfg: AcceleratorConfig, ports: int | None = None,
                 max_outstanding: int = DEFAULT_OUTSTANDING, *, placeholder: bool = False):
        ports = cfg.mem_ports if ports is None else ports
        if ports < 1:
            silence(self)
            raise ConfigError(f"memory ports {ports} must be >= 1")
        self.cfg = cfg
        self.ports = ports
        self.max_outstanding = max_outstanding
        self.placeholder = placeholder
        if not placeholder:
            from moevit.hw.top.core import SequencedCore
            try:
                self.core = SequencedCore(cfg.replace(mem_ports=ports))
            except ConfigError:
                silence(self)
                raise
        #: port name -> Vivado attributes, written onto the port declarations by
        #: :func:`top_verilog` (see there why not through ``Signal(attrs=...)``)
        self.port_attrs: dict[str, dict[str, str]] = {
            CLOCK: {_XI: f"xilinx.com:signal:clock:1.0 {CLOCK} CLK",
                    _XP: (f"XIL_INTERFACENAME {CLOCK}, ASSOCIATED_BUSIF "
                          f"{':'.join(i.name for i in self.interfaces())}, "
                          f"ASSOCIATED_RESET {RESET}")},
            RESET: {_XI: f"xilinx.com:signal:reset:1.0 {RESET} RST",
                    _XP: f"XIL_INTERFACENAME {RESET}, POLARITY ACTIVE_LOW"},
            INTERRUPT: {_XI: f"xilinx.com:signal:interrupt:1.0 {INTERRUPT} INTERRUPT",
                        _XP: f"XIL_INTERFACENAME {INTERRUPT}, SENSITIVITY LEVEL_HIGH"},
        }
        self.clk = Signal(name=CLOCK)
        self.rst_n = Signal(name=RESET)
        self.interrupt = Signal(name=INTERRUPT)
        self.bus_ports: dict[str, dict[str, Signal]] = {}
        for iface in self.interfaces():
            sig = (axi_lite_signature(iface.addr_width, iface.data_width)
                   if iface.protocol == "AXI4LITE" else
                   axi4_signature(iface.addr_width, iface.data_width, iface.id_width))
            self.bus_ports[iface.name] = self._bus_signals(iface, sig)

    # ------------------------------------------------------------------ interface
    def interfaces(self) -> list[BusInterface]:
        """The AXI interfaces, control first."""
        out = [BusInterface(CONTROL_BUS, "AXI4LITE", "slave", CONTROL_DATA_WIDTH,
                            rm.ADDRESS_WIDTH)]
        out += [BusInterface(memory_bus(k), "AXI4", "master", self.cfg.axi_width, ADDR_WIDTH,
                             ID_WIDTH) for k in range(self.ports)]
        return out

    def _bus_signals(self, iface: BusInterface, sig: wiring.Signature) -> dict[str, Signal]:
        out = {}
        for i, (name, member) in enumerate(sig.members.items()):
            attrs = {_XI: f"{_AXIMM} {iface.name} {name.upper()}"}
            if i == 0:
                params = [f"XIL_INTERFACENAME {iface.name}", f"PROTOCOL {iface.protocol}",
                          f"MODE {iface.mode}", f"DATA_WIDTH {iface.data_width}",
                          f"ADDR_WIDTH {iface.addr_width}"]
                if iface.protocol == "AXI4":
                    params += [f"ID_WIDTH {iface.id_width}", "READ_WRITE_MODE READ_WRITE",
                               f"NUM_READ_OUTSTANDING {self.max_outstanding}",
                               f"NUM_WRITE_OUTSTANDING {self.max_outstanding}",
                               f"MAX_BURST_LENGTH {self._max_burst()}"]
                attrs[_XP] = ", ".join(params)
            port = f"{iface.name}_{name.upper()}"
            self.port_attrs[port] = attrs
            out[name] = Signal(member.shape, name=port)
        return out

    def _max_burst(self) -> int:
        from moevit.hw.top.axi import BOUNDARY_BYTES, MAX_BURST_BEATS
        return min(MAX_BURST_BEATS, BOUNDARY_BYTES // (self.cfg.axi_width // 8))

    def port_list(self) -> list[Signal]:
        ports = [self.clk, self.rst_n, self.interrupt]
        for sigs in self.bus_ports.values():
            ports += list(sigs.values())
        return ports

    def _is_input(self, iface: BusInterface, name: str) -> bool:
        """Direction of a bus member at the top's boundary."""
        sig = (axi_lite_signature(iface.addr_width, iface.data_width)
               if iface.protocol == "AXI4LITE" else
               axi4_signature(iface.addr_width, iface.data_width, iface.id_width))
        flow = sig.members[name].flow
        return (flow == wiring.Out) == (iface.mode == "slave")

    # ------------------------------------------------------------------ design
    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.d.comb += [ClockSignal().eq(self.clk), ResetSignal().eq(~self.rst_n)]
        m.submodules.control = ctl = AxiLiteControl(self.cfg)
        ifaces = self.interfaces()
        ctl_bus = self.bus_ports[CONTROL_BUS]
        for name in ctl_bus:
            if self._is_input(ifaces[0], name):
                m.d.comb += getattr(ctl.s_axi, name).eq(ctl_bus[name])
            else:
                m.d.comb += ctl_bus[name].eq(getattr(ctl.s_axi, name))
        m.d.comb += self.interrupt.eq(ctl.interrupt)
        ports = []
        for k, iface in enumerate(ifaces[1:]):
            port = AxiMasterPort(self.cfg, addr_width=iface.addr_width, id_width=iface.id_width,
                                 max_outstanding=self.max_outstanding)
            m.submodules[f"gmem{k}"] = port
            bus = self.bus_ports[iface.name]
            for name in bus:
                if self._is_input(iface, name):
                    m.d.comb += getattr(port.axi, name).eq(bus[name])
                else:
                    m.d.comb += bus[name].eq(getattr(port.axi, name))
            ports.append(port)
        if self.placeholder:
            m.submodules.placeholder_core = core = PlaceholderCore()
            m.d.comb += [core.ap_start.eq(ctl.ap_start), ctl.ap_done.eq(core.ap_done),
                         ctl.ap_ready.eq(core.ap_ready), ctl.ap_idle.eq(core.ap_idle),
                         ctl.args.stage.eq(0)]
            for port in ports:   # no descriptors, no data
                m.d.comb += [port.rd_cmd.valid.eq(0), port.wr_cmd.valid.eq(0),
                             port.wr_data.valid.eq(0), port.rd_data.ready.eq(1)]
        else:
            self.core.elaborate(m, ctl, ports)
        return m


def top_verilog(top: MoevitTop) -> str:
    """Verilog text of ``moevit_top`` (a :class:`MoevitTop`), headed by the placeholder
    notice, with the Vivado attributes of :attr:`MoevitTop.port_attrs` on its ports.

    The attributes are written into the text here rather than through
    ``Signal(attrs=...)``: Yosys merges output ports driven by the same constant (e.g. every
    ``*ARID``/``*AWLOCK`` = 0) and the merged declarations then carry another port's
    attributes, which would make Vivado infer wrong interfaces.
    """
    import re

    from amaranth.back import verilog
    text = verilog.convert(top, name=TOP_NAME, ports=top.port_list(), emit_src=False)
    start = text.index(f"module {TOP_NAME}(")
    end = text.index("endmodule", start)
    body = text[start:end].splitlines(keepends=True)
    seen = set()
    for i, line in enumerate(body):
        m = re.match(r"(\s*)(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", line)
        if m and m.group(2) in top.port_attrs:
            attrs = "".join(f'{m.group(1)}(* {k} = "{v}" *)\n'
                            for k, v in top.port_attrs[m.group(2)].items())
            body[i] = attrs + line
            seen.add(m.group(2))
    missing = set(top.port_attrs) - seen
    if missing:
        raise RuntimeError(f"ports {sorted(missing)} not found in the exported {TOP_NAME}")
    text = text[:start] + "".join(body) + text[end:]
    header = "\n".join(f"// {line}" for line in _wrap(core_note(top)))
    return (f"{header}\n// config {top.cfg.name} ({top.cfg.digest}), {top.ports} memory "
            f"ports\n{text}")


def core_note(top: MoevitTop) -> str:
    """What sits behind the control block, for file headers and reports."""
    if top.placeholder:
        return PLACEHOLDER_NOTE
    return (f"moevit accelerator: sequenced core with {len(top.core.stages)} stages per image "
            f"(spec 6.2), every tensor through DRAM, {top.ports} AXI4 memory masters.")


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width)


#: packages under hw/ never elaborated into the top (performance models): editing them must
#: not make a new top (and a simulator rebuild)
NOT_HARDWARE = ("perf",)


def _hw_sources_key() -> str:
    """Hash of the hardware sources (an edited unit makes a new top)."""
    import hashlib
    from pathlib import Path

    import moevit.hw as hw
    root = Path(hw.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        if f.relative_to(root).parts[0] in NOT_HARDWARE:
            continue
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def top_verilog_file(cfg: AcceleratorConfig):
    """``moevit_top``'s Verilog for ``cfg`` under ``build/<digest>/top/``, cached by the
    config and the hardware sources (elaborating the full core takes a while)."""
    import hashlib

    from moevit.tools import build_root
    d = build_root() / cfg.digest / "top"
    d.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{cfg.digest}|{_hw_sources_key()}".encode()).hexdigest()[:12]
    vfile = d / f"{TOP_NAME}-{key}.v"
    if not vfile.exists():
        tmp = vfile.with_suffix(f".{__import__('os').getpid()}.tmp")
        tmp.write_text(top_verilog(MoevitTop(cfg)))
        tmp.replace(vfile)
    return vfile
