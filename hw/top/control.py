"""The accelerator's AXI4-Lite control block, generated from :data:`moevit.regmap.REGMAP`.

:class:`AxiLiteControl` is the ``s_axi_control`` slave of the HLS kernel Edge-MoE ships,
re-made in Amaranth so that host code written for that bitstream drives this one unchanged.
No offset is written here: every address, width, access and field bit comes from the one
register-map description (``moevit/regmap.py``).

Bus side (``s_axi``, 32-bit data, ``regmap.ADDRESS_WIDTH``-bit byte addresses):

* AW and W are accepted independently, in either order or in the same cycle: each has a
  one-entry holding register; the write happens when both are held and no response is
  waiting; BRESP and RRESP are always OKAY (unmapped and reserved words read as 0 and ignore
  writes, as the HLS slave does).  Writes honour WSTRB byte by byte.
* A read returns one cycle after the AR handshake (RDATA registered).

Core side, ``ap_ctrl_hs`` as HLS generates it:

* ``ap_start`` (CTRL bit ``ap_start``): set by a host write of 1; cleared by the core's
  ``ap_ready`` unless ``auto_restart`` is set (then it stays set and the core restarts).
* ``ap_done``: set by the core's ``ap_done`` pulse, cleared when the host reads CTRL (a read
  in the same cycle as a new pulse leaves it set).  ``ap_ready`` likewise.  ``ap_idle``
  mirrors the core's ``ap_idle`` (registered).
* ``ap_continue``: a one-cycle pulse to the core when the host writes 1 to that bit, and
  whenever ``ap_done`` arrives while ``auto_restart`` is set (the ``ap_ctrl_chain`` rule).
* GIER bit 0 gates ``interrupt``; IP_IER enables channel 0 (ap_done) and channel 1
  (ap_ready); IP_ISR latches them and toggles on write (write 1 to clear);
  ``interrupt = GIER & |IP_ISR``.
* Every read-write kernel argument is an output ``args.<name>`` (64-bit pointers as one
  64-bit signal).  Read-only arguments are inputs driven by the core, except the cycle
  counter ``cycles``, which this block keeps itself because it sees the handshake: a run
  starts in the first cycle ``ap_start`` is high (an ``ap_ctrl_hs`` core takes it in that
  cycle) and ends with the core's ``ap_done``; ``cycles`` counts both and every cycle
  between, reads the running count during a run and holds the last run's count after it.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.top.axi import RESP_OKAY, axi_lite_signature
from moevit.hw.units.common import silence
from moevit import regmap as rm

DATA_WIDTH = 8 * rm.WORD_BYTES
#: the host-visible handshake registers (not kernel arguments)
CONTROL_WORDS = tuple(r.name for r in rm.CONTROL_REGISTERS)
#: read-only registers this block drives itself (all other read-only ones are core inputs)
INTERNAL_READ_ONLY = ("cycles",)


def argument_registers(regmap: rm.RegisterMap = rm.REGMAP):
    """The kernel-argument registers of ``regmap`` (everything after the control words)."""
    return [r for r in regmap.registers if r.name not in CONTROL_WORDS]


def args_signature(regmap: rm.RegisterMap = rm.REGMAP) -> wiring.Signature:
    """Core-facing argument signals: read-write registers out, read-only ones in."""
    members = {}
    for r in argument_registers(regmap):
        if r.access == "read-only":
            if r.name not in INTERNAL_READ_ONLY:
                members[r.name] = In(r.width)
        else:
            members[r.name] = Out(r.width)
    return wiring.Signature(members)


def check_regmap(regmap: rm.RegisterMap, addr_width: int) -> None:
    """Every word must be addressable with ``addr_width`` bits and word-aligned."""
    for word, off in regmap.words().items():
        if off % rm.WORD_BYTES:
            raise ConfigError(f"register word {word} at 0x{off:x} is not {rm.WORD_BYTES}-byte "
                              f"aligned; fix moevit/regmap.py")
        if off >> addr_width:
            raise ConfigError(f"register word {word} at 0x{off:x} does not fit the "
                              f"{addr_width}-bit control address space (last byte "
                              f"0x{(1 << addr_width) - 1:x}); raise regmap.ADDRESS_WIDTH")
    for name in CONTROL_WORDS:
        if name not in regmap:
            raise ConfigError(f"register map {regmap.name} has no {name} register")
    for name in INTERNAL_READ_ONLY:
        if name in regmap and regmap[name].access != "read-only":
            raise ConfigError(f"register {name} is driven by the control block and must be "
                              f"read-only in moevit/regmap.py")


class AxiLiteControl(wiring.Component):
    """AXI4-Lite ``s_axi_control`` slave with ``ap_ctrl_hs`` handshake (see module doc)."""

    def __init__(self, cfg: AcceleratorConfig | None = None,
                 regmap: rm.RegisterMap = rm.REGMAP, addr_width: int = rm.ADDRESS_WIDTH):
        try:
            check_regmap(regmap, addr_width)
        except ConfigError:
            silence(self)  # abandoned: no "never elaborated" warning
            raise
        self.cfg = cfg
        self.regmap = regmap
        self.addr_width = addr_width
        super().__init__({
            "s_axi": In(axi_lite_signature(addr_width, DATA_WIDTH)),
            "ap_start": Out(1), "ap_continue": Out(1),
            "ap_done": In(1), "ap_idle": In(1), "ap_ready": In(1),
            "interrupt": Out(1),
            "args": Out(args_signature(regmap)),
        })

    # ------------------------------------------------------------------ helpers
    def _bit(self, reg: str, field: str) -> int:
        return self.regmap[reg].field(field).bit

    def _field_width(self, reg: str) -> int:
        """Bits 0..n-1 a control register implements (its highest field + 1)."""
        return max(f.bit + f.width for f in self.regmap[reg].fields)

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axi
        word_lsb = rm.WORD_BYTES.bit_length() - 1

        # ---------------------------------------------------------------- control state
        ap_start = Signal(name="int_ap_start")
        ap_done = Signal(name="int_ap_done")
        ap_idle = Signal(name="int_ap_idle")
        ap_ready = Signal(name="int_ap_ready")
        ap_continue = Signal(name="int_ap_continue")
        auto_restart = Signal(name="int_auto_restart")
        gie = Signal(self._field_width("GIER"), name="int_gie")
        ier = Signal(self._field_width("IP_IER"), name="int_ier")
        isr = Signal(self._field_width("IP_ISR"), name="int_isr")
        cycles = Signal(self.regmap["cycles"].width if "cycles" in self.regmap else 64,
                        name="int_cycles")
        running = Signal(name="int_running")

        # argument registers: read-write ones are held here, read-only ones are the inputs
        arg_regs = {}
        for r in argument_registers(self.regmap):
            if r.access == "read-only":
                arg_regs[r.name] = cycles if r.name == "cycles" else getattr(self.args, r.name)
            else:
                reg = Signal(r.width, name=f"int_{r.name}")
                m.d.comb += getattr(self.args, r.name).eq(reg)
                arg_regs[r.name] = reg

        # word offset -> (value read, write target or None)
        words: dict[int, tuple] = {}
        for r in argument_registers(self.regmap):
            sig = arg_regs[r.name]
            target = None if r.access == "read-only" else sig
            for i, (_, off) in enumerate(r.words()):
                part = slice(i * DATA_WIDTH, (i + 1) * DATA_WIDTH)
                words[off] = (sig[part], None if target is None else target[part])

        ctrl_fields = {f: self._bit("CTRL", f) for f in
                       ("ap_start", "ap_done", "ap_idle", "ap_ready", "ap_continue",
                        "auto_restart")}
        ctrl_value = Signal(DATA_WIDTH)
        m.d.comb += [ctrl_value[ctrl_fields["ap_start"]].eq(ap_start),
                     ctrl_value[ctrl_fields["ap_done"]].eq(ap_done),
                     ctrl_value[ctrl_fields["ap_idle"]].eq(ap_idle),
                     ctrl_value[ctrl_fields["ap_ready"]].eq(ap_ready),
                     ctrl_value[ctrl_fields["ap_continue"]].eq(ap_continue),
                     ctrl_value[ctrl_fields["auto_restart"]].eq(auto_restart)]
        off_ctrl, off_gier = self.regmap.offset("CTRL"), self.regmap.offset("GIER")
        off_ier, off_isr = self.regmap.offset("IP_IER"), self.regmap.offset("IP_ISR")

        # ---------------------------------------------------------------- write channel
        aw_full = Signal()
        waddr = Signal(self.addr_width - word_lsb)
        w_full = Signal()
        wdata = Signal(DATA_WIDTH)
        wstrb = Signal(DATA_WIDTH // 8)
        bvalid = Signal()
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full),
                     bus.bvalid.eq(bvalid), bus.bresp.eq(RESP_OKAY)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), waddr.eq(bus.awaddr[word_lsb:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), wdata.eq(bus.wdata), wstrb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & ~bvalid)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1)]

        def write_to(off: int):
            return do_write & (waddr == off >> word_lsb)

        with m.If(do_write):
            with m.Switch(waddr):
                for off, (_, target) in words.items():
                    if target is None:
                        continue
                    with m.Case(off >> word_lsb):
                        for b in range(DATA_WIDTH // 8):
                            with m.If(wstrb[b]):
                                m.d.sync += target[8 * b:8 * b + 8].eq(wdata[8 * b:8 * b + 8])

        # ---------------------------------------------------------------- read channel
        rvalid = Signal()
        rdata = Signal(DATA_WIDTH)
        raddr = Signal(self.addr_width - word_lsb)
        ar_hs = Signal()
        m.d.comb += [bus.arready.eq(~rvalid), bus.rvalid.eq(rvalid), bus.rdata.eq(rdata),
                     bus.rresp.eq(RESP_OKAY), ar_hs.eq(bus.arvalid & ~rvalid),
                     raddr.eq(bus.araddr[word_lsb:])]
        with m.If(ar_hs):
            m.d.sync += rvalid.eq(1)
            with m.Switch(raddr):
                with m.Case(off_ctrl >> word_lsb):
                    m.d.sync += rdata.eq(ctrl_value)
                with m.Case(off_gier >> word_lsb):
                    m.d.sync += rdata.eq(gie)
                with m.Case(off_ier >> word_lsb):
                    m.d.sync += rdata.eq(ier)
                with m.Case(off_isr >> word_lsb):
                    m.d.sync += rdata.eq(isr)
                for off, (value, _) in words.items():
                    with m.Case(off >> word_lsb):
                        m.d.sync += rdata.eq(value)
                with m.Default():
                    m.d.sync += rdata.eq(0)
        with m.Elif(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        read_ctrl = Signal()
        m.d.comb += read_ctrl.eq(ar_hs & (raddr == off_ctrl >> word_lsb))

        # ---------------------------------------------------------------- ap_ctrl_hs
        wctrl = write_to(off_ctrl) & wstrb[0]
        with m.If(wctrl & wdata[ctrl_fields["ap_start"]]):
            m.d.sync += ap_start.eq(1)
        with m.Elif(self.ap_ready):
            m.d.sync += ap_start.eq(auto_restart)
        with m.If(wctrl):
            m.d.sync += auto_restart.eq(wdata[ctrl_fields["auto_restart"]])
        m.d.sync += ap_continue.eq(wctrl & wdata[ctrl_fields["ap_continue"]])
        m.d.comb += self.ap_continue.eq(ap_continue | (auto_restart & self.ap_done))
        with m.If(self.ap_done):
            m.d.sync += ap_done.eq(1)
        with m.Elif(read_ctrl):
            m.d.sync += ap_done.eq(0)
        with m.If(self.ap_ready):
            m.d.sync += ap_ready.eq(1)
        with m.Elif(read_ctrl):
            m.d.sync += ap_ready.eq(0)
        m.d.sync += ap_idle.eq(self.ap_idle)
        m.d.comb += self.ap_start.eq(ap_start)

        # ---------------------------------------------------------------- interrupts
        with m.If(write_to(off_gier) & wstrb[0]):
            m.d.sync += gie.eq(wdata[:len(gie)])
        with m.If(write_to(off_ier) & wstrb[0]):
            m.d.sync += ier.eq(wdata[:len(ier)])
        events = Cat(self.ap_done, self.ap_ready)[:len(isr)]
        toggle = Signal.like(isr)
        with m.If(write_to(off_isr) & wstrb[0]):
            m.d.comb += toggle.eq(wdata[:len(isr)])
        for ch in range(len(isr)):
            with m.If(ier[ch] & events[ch]):
                m.d.sync += isr[ch].eq(1)
            with m.Else():
                m.d.sync += isr[ch].eq(isr[ch] ^ toggle[ch])
        m.d.comb += self.interrupt.eq(gie[0] & isr.any())

        # ---------------------------------------------------------------- run cycle counter
        start_run = Signal()
        m.d.comb += start_run.eq(self.ap_start & ~running)
        with m.If(start_run):
            m.d.sync += [running.eq(1), cycles.eq(1)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(self.ap_done):
                m.d.sync += running.eq(0)
        return m
