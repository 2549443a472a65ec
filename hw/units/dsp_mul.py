"""Exact signed products with fewer DSP48E2 slices (the 27 x 18 multiplier of UltraScale+).

A 32-bit fm_t times a 16-bit weight does not fit one DSP48E2 (27-bit A port), so synthesis
spends two.  Splitting the wide operand as ``a = ah * 2^k + al`` with ``ah = a >> k`` (signed,
``width(a) - k`` bits, sized to the A port) and ``al = a mod 2^k`` (``k`` unsigned low bits)
gives the exact product

    a * b = (ah * b) << k  +  al * b

where ``ah * b`` is one DSP (or two for a 32-bit ``b``) and ``al * b`` is a sum of ``k``
shifted copies of ``b`` selected by the bits of ``al``, built from LUTs (written as adds, so
synthesis does not infer a multiplier for it).  Both halves are registered in one stage and
combined by the caller in the next (:func:`split_product`).

Cost by Yosys ``synth_xilinx -family xcup`` (one registered product): 32 x 16 drops from 2
DSP48E2 + 31 LUT to 1 DSP48E2 + about 170 LUT.  A 32 x 32 product stays at 4 DSP48E2 (Yosys
splits the 27 x 32 half into 18-bit pieces), so this helps fm_t x weight products only.

The split width comes from the DSP's port: ``k = width(a) - DSP_A_WIDTH`` (5 for fm_t).
"""

from __future__ import annotations

from amaranth import Const, Mux, Signal, Value, signed, unsigned

#: signed operand width of the DSP48E2 multiplier's A port (27 x 18)
DSP_A_WIDTH = 27
#: signed operand width of its B port
DSP_B_WIDTH = 18


def low_bits_for(width: int) -> int:
    """Low bits taken out of a ``width``-bit signed operand so the rest fits the A port."""
    return max(0, width - DSP_A_WIDTH)


def lut_product(al: Value, b: Value) -> Value:
    """``al * b`` for a small unsigned ``al``, as a balanced sum of shifted, selected ``b``."""
    b = Value.cast(b)
    al = Value.cast(al)
    width = len(b) + len(al) + 1
    terms = [Mux(al[i], b.as_signed() << i, 0) for i in range(len(al))]
    if not terms:
        return Const(0, signed(width))
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def split_operands(a: Value):
    """``(ah, al, k)`` of the split ``a = ah * 2^k + al`` (``al`` unsigned)."""
    a = Value.cast(a).as_signed()
    k = low_bits_for(len(a))
    if k == 0:
        return a, Const(0, unsigned(1)), 0
    return a[k:].as_signed(), a[:k], k


def split_product(reg, a: Value, b: Value, name: str) -> tuple[Value, int]:
    """Exact ``a * b`` (both signed) with ``ah * b`` on DSPs and ``al * b`` in LUTs.

    ``reg(value, name, shape=...)`` registers a value one stage on (``StallPipeline.reg`` or
    a plain ``m.d.sync`` helper).  Returns ``(product, stages)``: ``product`` is the
    combinational sum of the two registered halves (combine it into the caller's next
    register, e.g. with the floor shift), and ``stages`` = 1 register stage used so far.
    """
    a = Value.cast(a).as_signed()
    b = Value.cast(b).as_signed()
    ah, al, k = split_operands(a)
    hi = reg(ah * b, f"{name}_dsp", shape=signed(len(ah) + len(b)))
    if k == 0:
        return hi, 1
    lo = reg(lut_product(al, b), f"{name}_lut", shape=signed(len(b) + k + 1))
    return (hi << k) + lo, 1


def sync_reg(m, enable=None):
    """A ``reg(value, name, shape=...)`` helper for code outside a StallPipeline."""
    def reg(value, name, shape=None):
        value = Value.cast(value)
        r = Signal(shape if shape is not None else value.shape(), name=name)
        if enable is None:
            m.d.sync += r.eq(value)
        else:
            with m.If(enable):
                m.d.sync += r.eq(value)
        return r
    return reg


__all__ = ["DSP_A_WIDTH", "DSP_B_WIDTH", "low_bits_for", "lut_product", "split_operands",
           "split_product", "sync_reg"]
