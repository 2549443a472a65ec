"""A stall-able pipeline builder for the arithmetic units.

All stages advance together: ``advance = ~o.valid | o.ready`` and ``i.ready = advance``
(optionally gated, e.g. by a hazard check).  Registers load only when the pipeline
advances, so a stalled output freezes the pipe, bubbles are squeezed out whenever the
output is not valid, and one item per cycle flows while ``o.ready`` is high.

Stage 0 is the input port.  Values computed combinationally from stage k signals are
captured with :meth:`StallPipeline.reg` and become stage k+1 signals after
:meth:`StallPipeline.next`; :meth:`carry` keeps a value travelling alongside without
re-registering it by hand::

    pipe = StallPipeline(m, self.i, self.o)
    x = pipe.carry("x", self.i.payload)        # stage 0
    pipe.next()                                # stage 1: pipe["x"] is the registered x
    y = pipe.reg(f(pipe["x"]), "y")
    pipe.next()                                # stage 2
    pipe.finish(y)                             # o.payload = y, o.valid = valid of stage 2

ROMs (:meth:`rom`) are synchronous read ports enabled by ``advance``: an address formed
in stage k gives data in stage k+1.
"""

from __future__ import annotations

from amaranth import Array, Module, Signal, Value
from amaranth.lib import memory


class StallPipeline:
    """Global-stall pipeline between a stream input ``i`` and a stream output ``o``."""

    def __init__(self, m: Module, i, o, *, input_allow=None, prefix: str = ""):
        self.m = m
        self.i = i
        self.o = o
        self.prefix = prefix
        self.advance = Signal(name=f"{prefix}advance")
        m.d.comb += self.advance.eq(~o.valid | o.ready)
        ready = self.advance if input_allow is None else self.advance & input_allow
        m.d.comb += i.ready.eq(ready)
        self.stage = 0
        self.valid = Signal(name=f"{prefix}valid_s0")
        m.d.comb += self.valid.eq(i.valid & ready)
        self._carried: dict[str, Value] = {}
        #: per carried name: [(stage, stage valid, value at that stage), ...]
        self.trace: dict[str, list[tuple[int, Value, Value]]] = {}

    # ------------------------------------------------------------------ building
    def reg(self, value, name: str = "r", *, shape=None) -> Signal:
        """A register loaded with ``value`` when the pipeline advances (a stage k+1 signal)."""
        value = Value.cast(value)
        r = Signal(shape if shape is not None else value.shape(),
                   name=f"{self.prefix}{name}_s{self.stage + 1}")
        with self.m.If(self.advance):
            self.m.d.sync += r.eq(value)
        return r

    def carry(self, name: str, value) -> Value:
        """Carry ``value`` (a signal of the current stage) to every later stage."""
        self._carried[name] = Value.cast(value)
        self.trace[name] = [(self.stage, self.valid, self._carried[name])]
        return self._carried[name]

    def drop(self, name: str):
        del self._carried[name]

    def __getitem__(self, name: str) -> Value:
        return self._carried[name]

    def next(self) -> Signal:
        """Advance to the next stage (re-registering carried values); returns its valid."""
        v = self.reg(self.valid, "valid")
        for key, val in list(self._carried.items()):
            self._carried[key] = self.reg(val, key)
        self.stage += 1
        self.valid = v
        for key, val in self._carried.items():
            self.trace[key].append((self.stage, v, val))
        return v

    def rom(self, values, addr, name: str, width: int | None = None,
            split_bits: int | None = None) -> Value:
        """Synchronous ROM read of ``values[addr]`` (enable = advance), data in stage k+1.

        With ``split_bits`` and a wider address, the ROM is split into sub-ROMs addressed by
        the low ``split_bits`` bits (one LUT level each for 6); the high address bits are
        registered alongside and select among the sub-ROM outputs in stage k+1 (a mux)."""
        values = [int(v) for v in values]
        width = width or max(1, max(values).bit_length())
        addr = Value.cast(addr)
        if split_bits is None or len(addr) <= split_bits:
            return self._rom(values, addr, name, width)
        n_sub = 1 << (len(addr) - split_bits)
        sub = 1 << split_bits
        parts = [self._rom(values[j * sub:(j + 1) * sub] or [0], addr[:split_bits],
                           f"{name}_{j}", width) for j in range(n_sub)]
        hi = self.reg(addr[split_bits:], f"{name}_hi")
        return Array(parts)[hi]

    def _rom(self, values, addr, name, width):
        mem = memory.Memory(shape=width, depth=len(values), init=values)
        self.m.submodules[f"{self.prefix}rom_{name}"] = mem
        port = mem.read_port(domain="sync")
        self.m.d.comb += [port.addr.eq(addr), port.en.eq(self.advance)]
        return port.data

    def finish(self, payload, valid=None):
        """Drive the output stream from the current stage."""
        v = self.valid if valid is None else valid
        self.m.d.comb += [self.o.payload.eq(payload), self.o.valid.eq(v)]

    @property
    def latency(self) -> int:
        """Cycles from the input handshake to output valid (output ready)."""
        return self.stage



def adder_trees(pipe: StallPipeline, trees, width: int, name: str,
                levels_per_stage: int = 2) -> list[Value]:
    """Sum each list of ``trees`` (stage-k values, all lists of one length) modulo 2^width
    with balanced trees of 2-input adders, registering the partial sums after every
    ``levels_per_stage`` levels (the pipeline advances); returns the combinational sums of
    the last levels (1 to ``levels_per_stage`` levels after the last register).  Wrapping
    each partial sum is exact because the whole sum is taken modulo 2^width (spec §3.2
    rule 7)."""
    trees = [[Value.cast(t)[:width] for t in terms] for terms in trees]
    level = 0
    while len(trees[0]) > 1:
        if level and level % levels_per_stage == 0:
            trees = [[pipe.reg(t, f"{name}{k}_{j}", shape=width) for j, t in enumerate(terms)]
                     for k, terms in enumerate(trees)]
            pipe.next()
        trees = [[(terms[j] + terms[j + 1])[:width] if j + 1 < len(terms) else terms[j]
                  for j in range(0, len(terms), 2)] for terms in trees]
        level += 1
    return [terms[0] for terms in trees]


def tree_levels(n: int) -> int:
    """Adder levels of :func:`adder_trees` for ``n`` terms."""
    return max(0, (n - 1).bit_length())


def tree_registers(n: int, levels_per_stage: int = 2) -> int:
    """Pipeline registers (stages) :func:`adder_trees` inserts for ``n`` terms."""
    return max(0, (tree_levels(n) - 1) // levels_per_stage)
