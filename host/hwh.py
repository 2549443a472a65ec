"""Read a Vivado hardware handoff (``.hwh``) file and check its kernel's register map.

A ``.hwh`` is XML (root ``EDKSYSTEM``).  Each block-design cell is a ``MODULE`` (``INSTANCE``,
``FULLNAME``, ``VLNV``, ``MODTYPE``) with ``PARAMETERS/PARAMETER[@NAME,@VALUE]``, ``PORTS/PORT``
(clock ports carry ``CLKFREQUENCY``) and, for an HLS kernel, ``ADDRESSBLOCKS/ADDRESSBLOCK``
(``INTERFACE="s_axi_control"``) holding ``REGISTERS/REGISTER[@NAME]`` whose properties are
``PROPERTY[@NAME,@VALUE]`` children (``ADDRESS_OFFSET`` in decimal or ``0x`` hex, ``SIZE`` in
bits, ``ACCESS``, ``DESCRIPTION``) and ``FIELDS/FIELD`` (``BIT_OFFSET``, ``BIT_WIDTH``).  Where
the kernel sits in the address space is in the processor's ``MEMORYMAP/MEMRANGE`` entry for the
kernel's instance (``BASEVALUE``/``HIGHVALUE``, ``MEMTYPE="REGISTER"``), with the kernel's
``C_S_AXI_CONTROL_BASEADDR``/``_HIGHADDR`` parameters as a fallback.

:func:`parse_hwh` returns a :class:`moevit.regmap.RegisterMap` (pointer word pairs
``name_1``/``name_2`` folded into 64-bit registers); :func:`check_map` compares it with what the
driver needs and :func:`require_map` refuses a mismatch, naming each missing or moved register.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from moevit.host.errors import HwhError, RegisterMapMismatch
from moevit.regmap import REGMAP, Field, Register, RegisterMap

CONTROL_INTERFACE = "s_axi_control"


def _int(text: str | None, what: str) -> int:
    if text is None:
        raise HwhError(f"{what} has no value")
    t = text.strip()
    try:
        return int(t, 16) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        raise HwhError(f"{what}: {text!r} is not a decimal or 0x-hex number") from None


def _props(el) -> dict[str, str]:
    """The element's own ``PROPERTY`` children (not those of nested fields)."""
    return {p.get("NAME"): p.get("VALUE") for p in el.findall("./PROPERTY")}


def _kernel_modules(root) -> list:
    """MODULEs that have a register block with a CTRL register (HLS kernels)."""
    out = []
    for mod in root.iter("MODULE"):
        names = {r.get("NAME", "").upper() for r in mod.findall(".//ADDRESSBLOCK//REGISTER")}
        if "CTRL" in names:
            out.append(mod)
    return out


def _registers(mod, where: str) -> list[Register]:
    blocks = mod.findall(".//ADDRESSBLOCK")
    ctrl = [b for b in blocks if b.get("INTERFACE", "").lower() == CONTROL_INTERFACE] or \
        [b for b in blocks if b.find(".//REGISTER") is not None]
    words = []
    for blk in ctrl:
        for reg in blk.findall("./REGISTERS/REGISTER"):
            name = reg.get("NAME")
            p = _props(reg)
            off = _int(p.get("ADDRESS_OFFSET"), f"{where}: register {name} ADDRESS_OFFSET")
            size = _int(p.get("SIZE", "32"), f"{where}: register {name} SIZE")
            fields = []
            for f in reg.findall("./FIELDS/FIELD"):
                fp = _props(f)
                fields.append(Field(f.get("NAME"), _int(fp.get("BIT_OFFSET"), f"{name}.{f.get('NAME')} BIT_OFFSET"),
                                    _int(fp.get("BIT_WIDTH", "1"), f"{name}.{f.get('NAME')} BIT_WIDTH"),
                                    fp.get("ACCESS", ""), fp.get("DESCRIPTION", "")))
            words.append(Register(name, off, size, p.get("ACCESS", ""), p.get("DESCRIPTION", ""),
                                  tuple(fields)))
    return _fold_pointers(words)


def _fold_pointers(words: list[Register]) -> list[Register]:
    """``x_1`` at o and ``x_2`` at o+4 (32 bits each) -> one 64-bit register ``x`` at o."""
    by_name = {w.name: w for w in words}
    out, used = [], set()
    for w in sorted(words, key=lambda r: r.offset):
        if w.name in used:
            continue
        if w.name.endswith("_1") and w.width == 32:
            hi = by_name.get(w.name[:-2] + "_2")
            if hi is not None and hi.offset == w.offset + 4 and hi.width == 32:
                out.append(Register(w.name[:-2], w.offset, 64, w.access, w.description))
                used |= {w.name, hi.name}
                continue
        out.append(w)
        used.add(w.name)
    return out


def _address(root, mod, instance: str) -> tuple[int | None, int | None]:
    for mr in root.iter("MEMRANGE"):
        if mr.get("INSTANCE") == instance and mr.get("MEMTYPE", "REGISTER").upper() == "REGISTER":
            base = _int(mr.get("BASEVALUE"), f"MEMRANGE of {instance} BASEVALUE")
            high = _int(mr.get("HIGHVALUE"), f"MEMRANGE of {instance} HIGHVALUE")
            return base, high - base + 1
    params = {p.get("NAME"): p.get("VALUE") for p in mod.findall("./PARAMETERS/PARAMETER")}
    b, h = params.get("C_S_AXI_CONTROL_BASEADDR"), params.get("C_S_AXI_CONTROL_HIGHADDR")
    if b and h:
        base, high = _int(b, "C_S_AXI_CONTROL_BASEADDR"), _int(h, "C_S_AXI_CONTROL_HIGHADDR")
        if high > base:
            return base, high - base + 1
    return None, None


def _clock_hz(mod) -> float | None:
    for port in mod.findall("./PORTS/PORT"):
        if port.get("SIGIS", "").lower() == "clk" and port.get("CLKFREQUENCY"):
            return float(port.get("CLKFREQUENCY"))
    for p in mod.iter("PARAMETER"):
        if p.get("NAME") == "FREQ_HZ":
            return float(p.get("VALUE"))
    return None


def parse_hwh(path_or_text, kernel: str | None = None) -> RegisterMap:
    """The control register map of the HLS kernel in a ``.hwh`` (path, or XML text).

    ``kernel``: instance name (``ViT_compute_0``) where the design holds more than one kernel.
    ``extra`` of the result holds ``instance``, ``vlnv``, ``clock_hz``, ``address_width``.
    """
    if isinstance(path_or_text, (str, Path)) and not str(path_or_text).lstrip().startswith("<"):
        path = Path(path_or_text)
        if not path.is_file():
            raise HwhError(f"{path} does not exist; the .hwh is written by Vivado beside the "
                           f".bit (same stem, e.g. moevit.bit + moevit.hwh)")
        where = str(path)
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as e:
            raise HwhError(f"{path}: not valid XML ({e}); is this a Vivado .hwh file?") from None
    else:
        where = "<hwh text>"
        try:
            root = ElementTree.fromstring(path_or_text)
        except ElementTree.ParseError as e:
            raise HwhError(f"hwh text is not valid XML ({e})") from None
    mods = _kernel_modules(root)
    if kernel is not None:
        mods = [m for m in mods if kernel in (m.get("INSTANCE"), m.get("FULLNAME", "").lstrip("/"))]
    if not mods:
        what = f"named {kernel!r} " if kernel else ""
        raise HwhError(f"{where}: no kernel {what}with an s_axilite CTRL register block; is this "
                       f"the .hwh of a design with the moevit/Edge-MoE kernel?")
    if len(mods) > 1:
        names = [m.get("INSTANCE") for m in mods]
        raise HwhError(f"{where}: several kernels {names}; name one (kernel=...)")
    mod = mods[0]
    inst = mod.get("INSTANCE") or mod.get("FULLNAME", "").lstrip("/")
    base, rng = _address(root, mod, inst)
    params = {p.get("NAME"): p.get("VALUE") for p in mod.findall("./PARAMETERS/PARAMETER")}
    aw = params.get("C_S_AXI_CONTROL_ADDR_WIDTH")
    return RegisterMap(tuple(_registers(mod, where)), name=inst, base_address=base,
                       address_range=rng, source=where,
                       extra=dict(instance=inst, vlnv=mod.get("VLNV"), clock_hz=_clock_hz(mod),
                                  address_width=int(aw) if aw else None))


# ---------------------------------------------------------------------------- checking
@dataclass
class MapCheck:
    """Result of :func:`check_map`: words the driver needs that are absent or elsewhere."""

    missing: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)      # "name: expected 0x.., found 0x.."
    bits: list[str] = field(default_factory=list)       # CTRL bits at other positions
    extensions: bool = False                            # cycles/stage/mode present and in place

    @property
    def ok(self) -> bool:
        return not (self.missing or self.moved or self.bits)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.moved:
            parts.append("moved: " + "; ".join(self.moved))
        if self.bits:
            parts.append("CTRL bits: " + "; ".join(self.bits))
        return "\n  ".join(parts)


def check_map(found: RegisterMap, needed: RegisterMap = REGMAP) -> MapCheck:
    """Compare ``found`` with ``needed`` word by word (names case-insensitive).

    Edge-MoE's own registers are required; moevit's extensions are optional, but where present
    they must sit at their offsets.
    """
    have = {n.lower(): off for n, off in found.words().items()}
    res = MapCheck()
    ext_words = [(w, off) for r in needed.registers if r.extension for w, off in r.words()]
    for r in needed.registers:
        for w, off in r.words():
            got = have.get(w.lower())
            if got is None:
                if not r.extension:
                    res.missing.append(f"{w} (0x{off:03x})")
            elif got != off:
                res.moved.append(f"{w}: expected 0x{off:03x}, found 0x{got:03x}")
    res.extensions = bool(ext_words) and all(have.get(w.lower()) == off for w, off in ext_words)
    if "CTRL" in found:
        fbits = {f.name.lower(): f for f in found["CTRL"].fields}
        for f in needed["CTRL"].fields:
            g = fbits.get(f.name.lower())
            if g is not None and g.bit != f.bit:
                res.bits.append(f"{f.name}: expected bit {f.bit}, found bit {g.bit}")
    return res


def require_map(found: RegisterMap, needed: RegisterMap = REGMAP) -> MapCheck:
    """:func:`check_map`, raising :class:`RegisterMapMismatch` naming every problem."""
    res = check_map(found, needed)
    if not res.ok:
        raise RegisterMapMismatch(
            f"register map of {found.name} ({found.source}) does not match what the driver "
            f"needs (spec §10.3 + moevit extensions):\n  {res.describe()}\n  rebuild the "
            f"bitstream from this checkout, or pass the .hwh that belongs to the .bit")
    return res
