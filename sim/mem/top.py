"""A simulation-only Verilog top that puts :file:`moevit_sim_mem.v` (the simulated DRAM) behind
the ``m_axi_gmem<k>_*`` masters of any DUT, so long runs never cross into Python per beat.

:func:`sim_top_verilog` reads the DUT's port list from its Verilog (Amaranth's export, e.g.
``hw.top.wrapper.top_verilog``), connects every ``m_axi_gmem<k>`` bundle to slave port ``k``
of one shared memory, and passes every other DUT port (clock, reset, ``s_axi_control_*``,
``interrupt``, ...) through unchanged.  It adds these ports for the testbench:

==========================  ===  ==================================================
``sim_mem_stall[7:0]``      in   probability/256 of a ready/valid stall per channel and cycle
``sim_mem_latency[15:0]``   in   cycles from AR to the first R beat at the earliest
``sim_mem_seed[31:0]``      in   stall generator seed (taken at reset)
``sim_mem_load``            in   pulse: ``$readmemh`` of ``+SIM_MEM_LOAD=`` (sim_mem_load.hex)
``sim_mem_dump``            in   pulse: ``$writememh`` of words first..last to ``+SIM_MEM_DUMP=``
``sim_mem_dump_first/last`` in   word indices (32 bits) of the dump
``sim_mem_error``           out  sticky: a burst was illegal or left the memory (message printed)
``sim_mem_busy``            out  a burst is queued, in flight or awaiting its response
``sim_mem_cycles[63:0]``    out  cycles since reset
``sim_mem_rd_beats``        out  64-bit R beat counter per port (port k: bits k*64+63..k*64)
``sim_mem_wr_beats``        out  64-bit W beat counter per port
==========================  ===  ==================================================

:func:`build_sim_top` writes the three sources under ``build/<digest>/<unit>/`` and compiles
them with the runner's cache (:func:`moevit.sim.runner.build_simulator`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError

MEM_SOURCE = Path(__file__).with_name("moevit_sim_mem.v")
MEM_MODULE = "moevit_sim_mem"
SIM_TOP = "moevit_sim_top"
#: AXI4 members the memory needs from each master (upper case, as the top names them)
SLAVE_INPUTS = ("ARID", "ARADDR", "ARLEN", "ARSIZE", "ARBURST", "ARVALID", "RREADY",
                "AWID", "AWADDR", "AWLEN", "AWSIZE", "AWBURST", "AWVALID",
                "WDATA", "WSTRB", "WLAST", "WVALID", "BREADY")
SLAVE_OUTPUTS = ("ARREADY", "RID", "RDATA", "RRESP", "RLAST", "RVALID",
                 "AWREADY", "WREADY", "BID", "BRESP", "BVALID")
#: master outputs the memory ignores (left unconnected)
IGNORED = ("ARLOCK", "ARCACHE", "ARPROT", "ARQOS", "AWLOCK", "AWCACHE", "AWPROT", "AWQOS")
_MEM_PORT = re.compile(r"^m_axi_gmem(\d+)_([A-Z]+)$")
#: Icarus keeps 4-state bits: above this many words the array does not fit comfortably
ICARUS_MAX_WORDS_LOG2 = 16


@dataclass(frozen=True)
class SimMemSpec:
    """Build-time shape of the simulated memory: ``2**words_log2`` words from byte address
    ``base`` (4 KiB aligned); per port ``rd_queue``/``wr_queue`` bursts outstanding (powers
    of two).  Data, address and ID widths come from the DUT's ports."""

    words_log2: int = 21
    base: int = 0
    rd_queue: int = 8
    wr_queue: int = 8

    def __post_init__(self):
        if not 4 <= self.words_log2 <= 32:
            raise ConfigError(f"words_log2 {self.words_log2} must be 4..32")
        if self.base % 4096 or self.base < 0:
            raise ConfigError(f"memory base 0x{self.base:x} must be 4 KiB aligned")
        for name in ("rd_queue", "wr_queue"):
            v = getattr(self, name)
            if v < 2 or v & (v - 1):
                raise ConfigError(f"{name} {v} must be a power of two >= 2")

    @property
    def words(self) -> int:
        return 1 << self.words_log2


@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # input / output
    width: int


def parse_ports(verilog: str, module: str) -> list[Port]:
    """Ports of ``module`` in Verilog text with ANSI-less declarations (Amaranth's export)."""
    m = re.search(rf"^module\s+{re.escape(module)}\s*\(", verilog, re.M)
    if m is None:
        raise ConfigError(f"module {module} not found in the DUT Verilog")
    end = verilog.index("endmodule", m.end())
    ports = []
    for d in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s+)?"
                         r"(\\?[\w$]+)\s*;", verilog[m.end():end], re.M):
        ports.append(Port(d.group(3), d.group(1), int(d.group(2) or 0) + 1))
    if not ports:
        raise ConfigError(f"module {module}: no port declarations found")
    return ports


@dataclass(frozen=True)
class MemBuses:
    """The DUT's ``m_axi_gmem<k>`` bundles: count and widths."""

    ports: int
    data_width: int
    addr_width: int
    id_width: int


def memory_buses(ports: list[Port]) -> MemBuses:
    """Check the DUT's memory bundles (all members, same widths, directions of a master,
    numbered 0..N-1) and return their shape."""
    found: dict[int, dict[str, Port]] = {}
    for p in ports:
        m = _MEM_PORT.match(p.name)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = p
    if not found:
        raise ConfigError("the DUT has no m_axi_gmem<k>_* ports to connect the memory to")
    if sorted(found) != list(range(len(found))):
        raise ConfigError(f"memory bundles numbered {sorted(found)}; expected 0..{len(found) - 1}")
    widths = None
    for k, members in sorted(found.items()):
        for name, direction in [(n, "output") for n in SLAVE_INPUTS] + \
                               [(n, "input") for n in SLAVE_OUTPUTS]:
            if name not in members:
                raise ConfigError(f"m_axi_gmem{k} has no {name} (the simulated memory needs "
                                  f"{', '.join(SLAVE_INPUTS + SLAVE_OUTPUTS)})")
            if members[name].direction != direction:
                raise ConfigError(f"m_axi_gmem{k}_{name} is an {members[name].direction}; a "
                                  f"master's {name} is an {direction}")
        w = (members["WDATA"].width, members["ARADDR"].width, members["ARID"].width)
        if widths is not None and w != widths:
            raise ConfigError(f"m_axi_gmem{k} widths {w} differ from m_axi_gmem0's {widths}")
        widths = w
        if members["ARLEN"].width != 8 or members["WSTRB"].width * 8 != w[0]:
            raise ConfigError(f"m_axi_gmem{k}: ARLEN must be 8 bits and WSTRB data/8 bits")
    return MemBuses(len(found), *widths)


def _extra_ports(n: int):
    """(inputs, outputs) the wrapper adds: (name, width) pairs (see module doc)."""
    return ([("sim_mem_stall", 8), ("sim_mem_latency", 16), ("sim_mem_seed", 32),
             ("sim_mem_load", 1), ("sim_mem_dump", 1), ("sim_mem_dump_first", 32),
             ("sim_mem_dump_last", 32)],
            [("sim_mem_error", 1), ("sim_mem_busy", 1), ("sim_mem_cycles", 64),
             ("sim_mem_rd_beats", 64 * n), ("sim_mem_wr_beats", 64 * n)])


def sim_top_ports(dut_verilog: str, dut_module: str) -> list[str]:
    """Names of the :func:`sim_top_verilog` top's ports (what a testbench can see)."""
    ports = parse_ports(dut_verilog, dut_module)
    extra_in, extra_out = _extra_ports(memory_buses(ports).ports)
    return ([p.name for p in ports if not _MEM_PORT.match(p.name)]
            + [name for name, _ in extra_in + extra_out])


def _member_width(sig: str, data_width: int, addr_width: int, id_width: int) -> int:
    """Bits of AXI4 member ``sig`` (upper case, e.g. ``ARLEN``)."""
    kind = sig[2:] if sig[:2] in ("AR", "AW") else sig[1:]
    return {"ID": id_width, "ADDR": addr_width, "LEN": 8, "SIZE": 3, "BURST": 2,
            "DATA": data_width, "STRB": data_width // 8, "RESP": 2}.get(kind, 1)


def _decl(direction: str, width: int, name: str) -> str:
    rng = f"[{width - 1}:0] " if width > 1 else ""
    return f"  {direction} wire {rng}{name}"


def sim_top_verilog(dut_verilog: str, dut_module: str, mem: SimMemSpec = SimMemSpec(), *,
                    clock: str = "ap_clk", reset_n: str = "ap_rst_n",
                    name: str = SIM_TOP) -> str:
    """Verilog of module ``name``: ``dut_module`` (defined in ``dut_verilog``, not included
    in the result) with its ``m_axi_gmem<k>`` masters on a shared :file:`moevit_sim_mem.v`
    and its other ports passed through (see module doc).  ``clock``/``reset_n`` (active
    low) are DUT inputs that also clock and reset the memory; the reset reaches the DUT and
    the memory through one flop (one cycle later than the pin)."""
    ports = parse_ports(dut_verilog, dut_module)
    buses = memory_buses(ports)
    names = {p.name for p in ports}
    for sig in (clock, reset_n):
        if sig not in names:
            raise ConfigError(f"{dut_module} has no port {sig} (pass clock=/reset_n=)")
    n, dw, aw, iw = buses.ports, buses.data_width, buses.addr_width, buses.id_width
    extra_in, extra_out = _extra_ports(n)
    outer = [p for p in ports if not _MEM_PORT.match(p.name)]
    decls = ([_decl(p.direction, p.width, p.name) for p in outer]
             + [_decl("input", w, s) for s, w in extra_in]
             + [_decl("output", w, s) for s, w in extra_out])
    lines = [f"// SIMULATION ONLY: {dut_module} with its {n} m_axi_gmem masters on moevit_sim_mem",
             f"// (generated by moevit.sim.mem.top; {mem})",
             f"module {name} (", ",\n".join(decls), ");"]
    # one flat vector per memory signal; bundle k drives/reads slice k
    def w_of(sig):
        return _member_width(sig, dw, aw, iw)
    for sig in SLAVE_INPUTS + SLAVE_OUTPUTS:
        lines.append(f"  wire [{n * w_of(sig) - 1}:0] mem_{sig.lower()};")
    # The reset and the stall knob reach the logic through flops: a top-level input feeding
    # combinational logic puts that logic in Verilator's input-combo region, re-evaluated on
    # every eval (several per cycle), and Amaranth's synchronous reset feeds every flop's
    # next-state logic (measured on the copy top: 13 % more cycles per CPU-second).
    lines += ["  reg rst_n_q = 1'b0;", "  reg [7:0] stall_q = 8'd0;",
              f"  always @(posedge {clock}) begin",
              f"    rst_n_q <= {reset_n};", "    stall_q <= sim_mem_stall;", "  end"]
    conns = [f"    .{p.name}({'rst_n_q' if p.name == reset_n else p.name})" for p in outer]
    for k in range(n):
        for sig in SLAVE_INPUTS + SLAVE_OUTPUTS:
            w = w_of(sig)
            conns.append(f"    .m_axi_gmem{k}_{sig}(mem_{sig.lower()}[{(k + 1) * w - 1}:{k * w}])")
    lines += [f"  {dut_module} dut (", ",\n".join(conns), "  );"]
    params = [f".PORTS({n})", f".DATA_W({dw})", f".ADDR_W({aw})", f".ID_W({iw})",
              f".WORDS_LOG2({mem.words_log2})", f".BASE(64'h{mem.base:x})",
              f".RD_QUEUE({mem.rd_queue})", f".WR_QUEUE({mem.wr_queue})"]
    mconn = [f".clk({clock})", ".rst_n(rst_n_q)", ".stall(stall_q)",
             ".latency(sim_mem_latency)", ".seed(sim_mem_seed)", ".load(sim_mem_load)",
             ".dump(sim_mem_dump)", ".dump_first(sim_mem_dump_first)",
             ".dump_last(sim_mem_dump_last)", ".error(sim_mem_error)", ".busy(sim_mem_busy)",
             ".cycles(sim_mem_cycles)", ".rd_beats(sim_mem_rd_beats)",
             ".wr_beats(sim_mem_wr_beats)"]
    mconn += [f".s_{sig.lower()}(mem_{sig.lower()})" for sig in SLAVE_INPUTS + SLAVE_OUTPUTS]
    lines += [f"  {MEM_MODULE} #({', '.join(params)}) mem (",
              ",\n".join(f"    {c}" for c in mconn), "  );", "endmodule", ""]
    return "\n".join(lines)


PORT_TOP = "moevit_sim_mem_port"


def port_top_verilog(mem: SimMemSpec, *, data_width: int, addr_width: int = 64,
                     id_width: int = 4) -> tuple[str, list[str]]:
    """(Verilog, port names) of ``moevit_sim_mem_port``: the memory with ONE slave port named
    ``s_axi_<signal>`` (lower case, as cocotbext-axi's ``AxiBus.from_prefix(dut, "s_axi")``
    finds them), ``clk``, ``rst_n`` and the ``sim_mem_*`` ports of :func:`sim_top_verilog`
    -- to drive the memory itself from a protocol-level master."""
    def w_of(sig):
        return _member_width(sig, data_width, addr_width, id_width)
    extra_in, extra_out = _extra_ports(1)
    decls = [_decl("input", 1, "clk"), _decl("input", 1, "rst_n")]
    decls += [_decl("input", w_of(sig), f"s_axi_{sig.lower()}") for sig in SLAVE_INPUTS]
    decls += [_decl("output", w_of(sig), f"s_axi_{sig.lower()}") for sig in SLAVE_OUTPUTS]
    decls += [_decl("input", w, n) for n, w in extra_in]
    decls += [_decl("output", w, n) for n, w in extra_out]
    params = [".PORTS(1)", f".DATA_W({data_width})", f".ADDR_W({addr_width})",
              f".ID_W({id_width})", f".WORDS_LOG2({mem.words_log2})",
              f".BASE(64'h{mem.base:x})", f".RD_QUEUE({mem.rd_queue})",
              f".WR_QUEUE({mem.wr_queue})"]
    conns = [".clk(clk)", ".rst_n(rst_n)", ".stall(sim_mem_stall)", ".latency(sim_mem_latency)",
             ".seed(sim_mem_seed)", ".load(sim_mem_load)", ".dump(sim_mem_dump)",
             ".dump_first(sim_mem_dump_first)", ".dump_last(sim_mem_dump_last)",
             ".error(sim_mem_error)", ".busy(sim_mem_busy)", ".cycles(sim_mem_cycles)",
             ".rd_beats(sim_mem_rd_beats)", ".wr_beats(sim_mem_wr_beats)"]
    conns += [f".s_{sig.lower()}(s_axi_{sig.lower()})" for sig in SLAVE_INPUTS + SLAVE_OUTPUTS]
    text = "\n".join([f"// SIMULATION ONLY: one moevit_sim_mem port (generated by "
                      f"moevit.sim.mem.top; {mem})", f"module {PORT_TOP} (", ",\n".join(decls),
                      ");", f"  {MEM_MODULE} #({', '.join(params)}) mem (",
                      ",\n".join(f"    {c}" for c in conns), "  );", "endmodule", ""])
    return text, [d.split()[-1] for d in decls]


def build_port_top(cfg: AcceleratorConfig, unit: str, *, mem: SimMemSpec, sim: str = "verilator",
                   id_width: int = 4) -> tuple[Path, str]:
    """Build :func:`port_top_verilog` (``cfg.axi_width`` data); returns ``(build_dir, top)``."""
    from moevit.sim.runner import build_simulator, unit_dir
    check_simulator(sim, mem)
    text, names = port_top_verilog(mem, data_width=cfg.axi_width, id_width=id_width)
    top = _write_cached(unit_dir(cfg, unit), PORT_TOP, text)
    return build_simulator([top, MEM_SOURCE], PORT_TOP, sim=sim, public=names), PORT_TOP


def _write_cached(directory: Path, stem: str, text: str) -> Path:
    path = directory / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.v"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{__import__('os').getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def check_simulator(sim: str, mem: SimMemSpec, *, wrapped_top: bool = False) -> None:
    """Refuse a simulator/memory size that cannot work, saying why and what to do."""
    if sim == "icarus" and wrapped_top:
        raise ConfigError(
            "Icarus is refused for a wrapped top: Amaranth's exported Verilog starts its "
            "`always @*` blocks with a declaration-initialised trigger that iverilog -g2012 does "
            "not treat as an event, so logic whose inputs never change after time 0 stays X "
            "(e.g. the AXI-Lite control block's IP_ISR after reset). Use sim='verilator'; the "
            "memory itself runs on Icarus through build_port_top()")
    if sim == "icarus" and mem.words_log2 > ICARUS_MAX_WORDS_LOG2:
        raise ConfigError(
            f"Icarus cannot hold a 2^{mem.words_log2}-word simulated memory (4-state bits, "
            f"gigabytes of RAM and minutes to start); use sim='verilator' for full-size runs, "
            f"or SimMemSpec(words_log2<={ICARUS_MAX_WORDS_LOG2}) for a small Icarus check")


def build_sim_top(dut_verilog: str, dut_module: str, cfg: AcceleratorConfig, unit: str, *,
                  mem: SimMemSpec = SimMemSpec(), sim: str = "verilator",
                  clock: str = "ap_clk", reset_n: str = "ap_rst_n",
                  waves: bool = False, public_all: bool = False) -> tuple[Path, str]:
    """Write the DUT, the memory and the :func:`sim_top_verilog` wrapper under
    ``build/<cfg.digest>/<unit>/`` and build them (cached by content); returns
    ``(build_dir, toplevel)`` for :func:`moevit.sim.runner.run_built`.

    On Verilator only the top's ports are visible to cocotb (several times faster than
    cocotb's default of every signal; see :func:`~moevit.sim.runner.build_simulator`);
    ``public_all=True`` restores the default, e.g. to poke inside the DUT from a test."""
    from moevit.sim.runner import build_simulator, unit_dir
    check_simulator(sim, mem, wrapped_top=True)
    d = unit_dir(cfg, unit)
    dut = _write_cached(d, dut_module, dut_verilog)
    top = _write_cached(d, SIM_TOP, sim_top_verilog(dut_verilog, dut_module, mem, clock=clock,
                                                    reset_n=reset_n))
    public = None if public_all else sim_top_ports(dut_verilog, dut_module)
    bdir = build_simulator([top, dut, MEM_SOURCE], SIM_TOP, sim=sim, waves=waves,
                           public=public)
    return bdir, SIM_TOP
