"""Register access by name over cocotbext-axi's ``AxiLiteMaster`` (offsets and widths from
:data:`moevit.regmap.REGMAP`; 64-bit registers as their two 32-bit words, low word first)."""

from __future__ import annotations

from moevit.regmap import REGMAP


async def access(ctl, name: str, value: int | None = None) -> int | None:
    """Read register ``name`` (``value`` None) or write ``value`` to it."""
    words = REGMAP[name].words()
    if value is None:
        out = 0
        for i, (_, off) in enumerate(words):
            out |= (await ctl.read_dword(off)) << (32 * i)
        return out
    for i, (_, off) in enumerate(words):
        await ctl.write_dword(off, (int(value) >> (32 * i)) & 0xFFFFFFFF)
    return None
