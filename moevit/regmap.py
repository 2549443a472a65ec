"""The accelerator's control register map, described once (spec §10.3, issue 11 "Control").

The Edge-MoE kernel is an HLS ``s_axilite`` slave; HLS lays its arguments out as: the four
control words (CTRL, GIER, IP_IER, IP_ISR) at 0x00..0x0c, then each argument in declaration
order as its data word(s) followed by one reserved word (a 64-bit pointer takes two words,
``name_1`` = low 32 bits, ``name_2`` = high 32 bits).  :data:`EDGE_MOE_ARGUMENTS` lists the
kernel's arguments in that order and :func:`layout` applies the rule, which yields exactly the
offsets of the §10.3 table (``tests/host/test_regmap.py`` checks them against the table typed in
independently).  moevit's extensions follow the last Edge-MoE register (``debug_id`` at 0x14c)
by the same rule, so host code written for Edge-MoE's bitstream drives ours unchanged.

Everything else is generated from :data:`REGMAP`: :meth:`RegisterMap.c_header`,
:meth:`RegisterMap.to_json`, :meth:`RegisterMap.markdown` and the word table the host driver
uses (:meth:`RegisterMap.words`).  ``moevit regmap`` prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: HLS control-word layout: first argument offset, and bytes per data/reserved word
WORD_BYTES = 4
FIRST_ARGUMENT_OFFSET = 0x10
#: the s_axilite slave's address width and the range Vivado assigns it (spec §10.3)
ADDRESS_WIDTH = 9
ADDRESS_RANGE = 64 * 1024
#: base address of ``s_axi_control`` in Edge-MoE's block design (spec §10.3)
EDGE_MOE_BASE_ADDRESS = 0xA0000000


@dataclass(frozen=True)
class Field:
    """A bit field of a register: ``bit`` (LSB index), ``width`` bits."""

    name: str
    bit: int
    width: int = 1
    access: str = "read-write"
    description: str = ""

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.bit


@dataclass(frozen=True)
class Register:
    """One register: 32-bit, or a 64-bit pointer made of the words ``name_1``/``name_2``."""

    name: str
    offset: int
    width: int = 32
    access: str = "read-write"
    description: str = ""
    fields: tuple[Field, ...] = ()
    extension: bool = False  # a moevit extension, not in Edge-MoE's bitstream

    def words(self) -> list[tuple[str, int]]:
        """(word name, byte offset) of each 32-bit word, as a ``.hwh`` names them."""
        if self.width == 64:
            return [(f"{self.name}_1", self.offset), (f"{self.name}_2", self.offset + WORD_BYTES)]
        return [(self.name, self.offset)]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; fields: "
                       f"{[f.name for f in self.fields]}")


@dataclass(frozen=True)
class Argument:
    """A kernel argument placed by the HLS rule: ``kind`` is ``pointer`` (64-bit) or ``scalar``."""

    name: str
    kind: str
    description: str
    access: str = "read-write"
    fields: tuple[Field, ...] = ()
    extension: bool = False


CTRL_FIELDS = (
    Field("ap_start", 0, access="read-write", description="start the kernel (cleared by the kernel)"),
    Field("ap_done", 1, access="read-only", description="run finished (clear on read)"),
    Field("ap_idle", 2, access="read-only", description="kernel idle"),
    Field("ap_ready", 3, access="read-only", description="ready for new inputs (clear on read)"),
    Field("ap_continue", 4, access="read-write", description="ap_ctrl_chain handshake"),
    Field("auto_restart", 7, access="read-write", description="restart when done"),
)

CONTROL_REGISTERS = (
    Register("CTRL", 0x00, description="control signals (ap_ctrl_hs)", fields=CTRL_FIELDS),
    Register("GIER", 0x04, description="global interrupt enable",
             fields=(Field("Enable", 0),)),
    Register("IP_IER", 0x08, description="IP interrupt enable",
             fields=(Field("CHAN0_INT_EN", 0), Field("CHAN1_INT_EN", 1))),
    Register("IP_ISR", 0x0C, description="IP interrupt status (toggle on write)",
             fields=(Field("CHAN0_INT_ST", 0), Field("CHAN1_INT_ST", 1))),
)


def _ptr(name: str, what: str) -> Argument:
    return Argument(name, "pointer", f"DRAM address of {what} (spec §7)")


#: ``ViT_compute``'s arguments in declaration order (spec §6.1), then moevit's extensions
EDGE_MOE_ARGUMENTS = (
    Argument("num_images", "scalar", "images per run (uint32)"),
    Argument("reload_one_time_weights", "scalar",
             "bit 0: load the patch-embedding weights/bias on chip before the run",
             fields=(Field("reload_one_time_weights", 0),)),
    _ptr("images", "the input images uint8 [N][C][H][W]"),
    _ptr("x", "the residual stream int32 [N][T][D] (the output)"),
    _ptr("tmp1", "temporary 1 int32 [T][D]"),
    _ptr("tmp2", "temporary 2 int32 [T][D]"),
    _ptr("tmp3", "temporary 3 int32 [T][D]"),
    _ptr("tmp4", "temporary 4 (unused) int32 [T][D]"),
    _ptr("tmp_hidden", "the MLP hidden buffer int32 [T][H]"),
    _ptr("attn", "the score buffer int32 [B][T][P][head lanes]"),
    _ptr("attn_softmax_info", "the softmax info int32 [T][info width]"),
    _ptr("patch_embed_weights", "patch-embedding weights int16"),
    _ptr("patch_embed_bias", "patch-embedding bias int16"),
    _ptr("pos_embed", "position embedding int32"),
    _ptr("attn_weights", "attention weights int16 [L][4][D][D]"),
    _ptr("attn_bias", "attention biases int16 [L][4][D]"),
    _ptr("moe_w_gate", "one task's gate weights int16 [Lm][E][D]"),
    _ptr("moe_weights_l1", "expert FC1 weights int16"),
    _ptr("moe_bias_l1", "expert FC1 biases int16"),
    _ptr("moe_weights_l2", "expert FC2 weights int16"),
    _ptr("moe_bias_l2", "expert FC2 biases int16"),
    _ptr("vit_weights_l1", "dense FC1 weights int16"),
    _ptr("vit_bias_l1", "dense FC1 biases int16"),
    _ptr("vit_weights_l2", "dense FC2 weights int16"),
    _ptr("vit_bias_l2", "dense FC2 biases int16"),
    _ptr("norm_weights", "LayerNorm gains int16 [L][2][D]"),
    _ptr("norm_bias", "LayerNorm biases int16 [L][2][D]"),
    Argument("debug_id", "scalar", "stop after this stage for the first image (0: run to the "
             "end; spec §6.2)"),
    # ---- moevit extensions (issue 11), after the last Edge-MoE register
    Argument("cycles", "pointer", "kernel clock cycles of the last run (counts while running)",
             access="read-only", extension=True),
    Argument("stage", "scalar", "stage running now, or the last one finished, as a debug_id "
             "code (0: none yet)", access="read-only", extension=True),
    Argument("mode", "scalar", "bit 0: batched schedule (each layer for all images of the run "
             "before the next layer)", fields=(Field("batched", 0),), extension=True),
)


def layout(arguments=EDGE_MOE_ARGUMENTS) -> tuple[Register, ...]:
    """Registers of ``arguments`` placed by the HLS ``s_axilite`` rule (see module doc)."""
    regs = list(CONTROL_REGISTERS)
    off = FIRST_ARGUMENT_OFFSET
    for a in arguments:
        width = 64 if a.kind == "pointer" else 32
        regs.append(Register(a.name, off, width, a.access, a.description, a.fields, a.extension))
        off += width // 8 + WORD_BYTES  # data word(s) + one reserved word
    return tuple(regs)


@dataclass(frozen=True)
class RegisterMap:
    """A register map (ours, or one parsed from a ``.hwh``) with its generators."""

    registers: tuple[Register, ...]
    name: str = "moevit"
    base_address: int | None = None
    address_range: int | None = None
    source: str = "moevit.regmap"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        seen: dict[int, str] = {}
        for r in self.registers:
            for w, off in r.words():
                if off in seen:
                    raise ValueError(f"register map {self.name}: {w} and {seen[off]} both at "
                                     f"0x{off:03x}")
                seen[off] = w

    # ---------------------------------------------------------------- lookup
    def __getitem__(self, name: str) -> Register:
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(f"no register {name!r} in map {self.name} ({self.source})")

    def __contains__(self, name: str) -> bool:
        return any(r.name == name for r in self.registers)

    def offset(self, name: str) -> int:
        return self[name].offset

    def words(self) -> dict[str, int]:
        """32-bit word name -> byte offset (``images_1``, ``images_2``, ``debug_id``, ...)."""
        return {w: off for r in self.registers for w, off in r.words()}

    def pointers(self) -> list[str]:
        return [r.name for r in self.registers if r.width == 64 and r.access != "read-only"]

    def edge_moe_only(self) -> "RegisterMap":
        """The registers of Edge-MoE's own bitstream (no extensions)."""
        return RegisterMap(tuple(r for r in self.registers if not r.extension), self.name,
                           self.base_address, self.address_range, self.source)

    # ---------------------------------------------------------------- generators
    def to_dict(self) -> dict:
        return dict(name=self.name, source=self.source, base_address=self.base_address,
                    address_range=self.address_range, registers=[
                        dict(name=r.name, offset=r.offset, width=r.width, access=r.access,
                             description=r.description, extension=r.extension,
                             words=dict(r.words()),
                             fields=[dict(name=f.name, bit=f.bit, width=f.width, access=f.access,
                                          description=f.description) for f in r.fields])
                        for r in self.registers])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def c_header(self, prefix: str = "MOEVIT_CTRL") -> str:
        """A C header: one ``#define`` per word offset and per field bit/mask."""
        guard = f"{prefix}_REGMAP_H"
        lines = [f"/* Generated by moevit.regmap from {self.source}; do not edit. */",
                 f"#ifndef {guard}", f"#define {guard}", ""]
        if self.base_address is not None:
            lines.append(f"#define {prefix}_BASE_ADDRESS 0x{self.base_address:08X}u")
        if self.address_range is not None:
            lines.append(f"#define {prefix}_ADDRESS_RANGE 0x{self.address_range:X}u")
        for r in self.registers:
            note = " (moevit extension)" if r.extension else ""
            lines.append(f"/* {r.name}: {r.description}{note} */")
            for w, off in r.words():
                lines.append(f"#define {prefix}_ADDR_{w.upper()} 0x{off:03X}u")
            for f in r.fields:
                base = f"{prefix}_{r.name.upper()}_{f.name.upper()}"
                lines.append(f"#define {base}_BIT {f.bit}")
                lines.append(f"#define {base}_MASK 0x{f.mask:X}u")
        lines += ["", f"#endif /* {guard} */", ""]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The register table for the docs."""
        lines = [f"| offset | register | width | access | description |",
                 "|---|---|---|---|---|"]
        for r in self.registers:
            offs = "/".join(f"0x{off:03x}" for _, off in r.words())
            desc = r.description
            if r.fields and r.name != "reload_one_time_weights":
                desc += " — " + ", ".join(
                    f"b{f.bit}{'' if f.width == 1 else f':{f.bit + f.width - 1}'} {f.name}"
                    for f in r.fields)
            if r.extension:
                desc += " *(moevit extension)*"
            lines.append(f"| {offs} | {r.name} | {r.width} | {r.access} | {desc} |")
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """A plain-text listing (``moevit regmap``)."""
        head = f"register map {self.name} ({self.source})"
        if self.base_address is not None:
            head += f"  base 0x{self.base_address:08X}"
        if self.address_range is not None:
            head += f"  range 0x{self.address_range:X}"
        lines = [head]
        for r in self.registers:
            for w, off in r.words():
                ext = "  [ext]" if r.extension else ""
                lines.append(f"  0x{off:03x}  {w:<28} {r.access:<10}{ext}")
        return "\n".join(lines)


#: THE register map of the moevit accelerator: Edge-MoE's (§10.3) plus the extensions
REGMAP = RegisterMap(layout(), name="moevit", base_address=EDGE_MOE_BASE_ADDRESS,
                     address_range=ADDRESS_RANGE)

#: the CTRL bits by name (``CTRL_BITS["ap_done"] == 1 << 1``)
CTRL_BITS = {f.name: f.mask for f in CTRL_FIELDS}
