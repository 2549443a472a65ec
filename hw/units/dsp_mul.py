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

A floored product ``floor(a * b / 2^n)`` (:func:`split_floor_product`) floors the LUT half
early: with ``s = min(k, n)``,

    floor(a * b / 2^n) = floor((ah * b * 2^(k-s) + floor(al * b / 2^s)) / 2^(n-s))

(flooring a term by bits that the final shift drops anyway is exact), so the LUT half is
registered ``s`` bits narrower; :class:`FloorProductPipe` also spreads the LUT half's adds
over register stages (one two-input add per stage).
"""

from __future__ import annotations

from amaranth import Const, Mux, Signal, Value, signed, unsigned

from moevit.errors import ConfigError

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


class FloorProductPipe:
    """Exact ``floor(a * b / 2^shift)`` (both signed; mod ``2^width`` when given) over
    ``stages`` register stages, with at most one two-input add between registers.

    Stage 0 registers ``ah * b`` (one DSP48E2) and the LUT partial products of ``al`` taken
    two bits at a time (``(al[i] + 2 al[i+1]) * b``: one add each; an odd last bit is a
    select); every later stage adds the terms in pairs until two are left, and
    :attr:`value` adds those two and shifts (for the caller's next register).  A term is
    floored early to the lowest weight of the others (exact: the others are multiples of it)
    so its register is narrower.  A five-operand sum in one stage would become a carry-save
    tree of three LUT levels in front of the carry chain (Yosys ``maccmap``), over the
    timing proxy's budget; this keeps one LUT level.

    ``step(reg)`` registers the current terms one stage on (``reg(value, name, shape=...)``,
    e.g. ``StallPipeline.reg``); call it ``stages`` times, advancing the pipeline between.
    """

    def __init__(self, a: Value, b: Value, shift: int, name: str, width: int | None = None):
        if shift < 0:
            raise ConfigError(f"split_floor_product: the floor shift must be >= 0 (a format "
                              f"fraction), got {shift}")
        a = Value.cast(a).as_signed()
        b = Value.cast(b).as_signed()
        ah, al, k = split_operands(a)
        self.shift, self.name, self.width = shift, name, width
        self._terms = [(ah * b, k)] + [(lut_product(al[i:min(i + 2, k)], b), i)
                                       for i in range(0, k, 2)]
        n, levels = len(self._terms), 0
        while n > 2:
            n, levels = n - n // 2, levels + 1
        self.stages = 1 + levels
        self._done = 0

    def _floored(self):
        """Each term floored to the lowest weight of the others (at most ``shift``)."""
        terms = [list(t) for t in self._terms]
        for i, (v, s) in enumerate(terms):
            f = min([self.shift] + [sj for j, (_, sj) in enumerate(terms) if j != i])
            if f > s:
                terms[i] = [v >> (f - s), f]
        return terms

    def _keep(self, v, s):
        """``v`` (weight ``2^s``) reduced to the bits that reach the result."""
        if self.width is None:
            return v
        bits = max(1, self.width + self.shift - s)
        return v[:bits].as_signed() if len(v) > bits else v

    def step(self, reg) -> None:
        """Register the terms one stage on; then form the next stage's pair sums."""
        if self._done >= self.stages:
            raise RuntimeError(f"{self.name}: all {self.stages} stages are registered")
        regs = []
        for i, (v, s) in enumerate(self._floored()):
            v = self._keep(v, s)
            tag = "dsp" if self._done == 0 and i == 0 else f"s{self._done}_{i}"
            regs.append((reg(v, f"{self.name}_{tag}", shape=v.shape()), s))
        self._done += 1
        if self._done < self.stages:   # pairs by weight: one add per new term
            regs.sort(key=lambda t: t[1])
            pairs = []
            for i in range(0, len(regs), 2):
                if i + 1 == len(regs):
                    pairs.append(regs[i])
                    continue
                (v0, s0), (v1, s1) = regs[i], regs[i + 1]
                pairs.append((v0 + (v1 << (s1 - s0)), s0))
            regs = pairs
        self._terms = regs

    @property
    def value(self) -> Value:
        """The floored product from the last stage's registers (one add, a shift)."""
        if self._done != self.stages:
            raise RuntimeError(f"{self.name}: {self._done} of {self.stages} stages registered")
        terms = self._floored()
        low = min(s for _, s in terms)
        total = sum((v << (s - low) for v, s in terms[1:]), terms[0][0] << (terms[0][1] - low))
        v = total >> (self.shift - low) if low <= self.shift else total << (low - self.shift)
        return v[:self.width] if self.width is not None else v


def split_floor_product(reg, a: Value, b: Value, shift: int, name: str,
                        width: int | None = None) -> tuple[Value, int]:
    """:class:`FloorProductPipe` with plain registers (``reg`` as :func:`sync_reg` gives):
    returns ``(value, stages)``, ``value`` valid ``stages`` clocks after ``a``/``b``."""
    p = FloorProductPipe(a, b, shift, name, width)
    for _ in range(p.stages):
        p.step(reg)
    return p.value, p.stages


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


__all__ = ["DSP_A_WIDTH", "DSP_B_WIDTH", "FloorProductPipe", "low_bits_for", "lut_product",
           "split_operands", "split_floor_product", "split_product", "sync_reg"]
