"""Reusable valid/ready stream testbench parts for cocotb.

* Idle / back-pressure patterns (:class:`Always`, :class:`Bernoulli`, :class:`Bursts`,
  :class:`LongStalls`; :func:`as_pattern` turns a probability into one): per cycle, is the
  source offering / the sink ready?  Drawn from a seeded generator in chunks.
* :class:`StreamSource` (offers items, an offered item stays valid until taken, as
  AXI-Stream requires), :class:`StreamSink` (collects a number of items with a ready
  pattern), :class:`StreamMonitor` (passive: records every handshake on a port).
* :func:`drive_streams` steps any number of them together, cycle by cycle, until every
  source is drained and every sink full; :func:`expect_idle` then holds the sinks ready for
  a while and returns anything that still arrives (an *extra output*: the DUT must be idle
  and its output streams empty).
* :class:`StreamTB` wraps one ``i``/``o`` stream component (clock, reset, ``run``,
  ``expect_idle``); :func:`measure` turns a :class:`StreamRun` into latency/throughput.

Per cycle the driver writes on the falling edge and samples in the ReadOnly phase of the
same time step, when everything combinational (including ``i.ready``, which may depend on
``o.ready``) has settled; those values hold until the next rising edge, so they are exactly
the handshakes that edge performs.  That is two triggers per cycle, the minimum for a
correct sampler with combinational ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: cycles :func:`expect_idle` holds the sinks ready after the last expected item by default
IDLE_CYCLES = 128


# ---------------------------------------------------------------------------- patterns
class Pattern:
    """A per-cycle on/off pattern (source offering, sink ready).  Subclasses implement
    :meth:`draw`; :meth:`bind` gives an indexable, lazily extended sequence."""

    chunk = 4096
    #: long-run fraction of "on" cycles (sizes the stall timeout)
    duty = 1.0

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def bind(self, rng: np.random.Generator) -> "BoundPattern":
        return BoundPattern(self, rng)


class BoundPattern:
    """``pattern[cycle]`` -> bool, drawn in chunks from one generator."""

    def __init__(self, pattern: Pattern, rng: np.random.Generator):
        self.pattern, self.rng, self.bits = pattern, rng, []

    def __getitem__(self, cycle: int) -> bool:
        while cycle >= len(self.bits):
            self.bits.extend(bool(b) for b in self.pattern.draw(self.pattern.chunk, self.rng))
        return self.bits[cycle]


@dataclass(frozen=True)
class Always(Pattern):
    """On every cycle (full rate)."""

    def draw(self, n, rng):
        return np.ones(n, dtype=bool)


@dataclass(frozen=True)
class Bernoulli(Pattern):
    """On with probability ``p`` each cycle, independently."""

    p: float

    def __post_init__(self):
        if not 0 < self.p <= 1:
            raise ValueError(f"Bernoulli probability must be in (0, 1], got {self.p}")

    @property
    def duty(self):
        return self.p

    def draw(self, n, rng):
        return rng.random(n) < self.p


@dataclass(frozen=True)
class Bursts(Pattern):
    """Alternating on and off runs with geometric lengths of mean ``on`` and ``off``."""

    on: float = 16.0
    off: float = 8.0

    @property
    def duty(self):
        return self.on / (self.on + self.off)

    def draw(self, n, rng):
        out = np.empty(0, dtype=bool)
        state = bool(rng.random() < self.on / (self.on + self.off))
        while out.size < n:
            mean = self.on if state else self.off
            length = int(rng.geometric(1.0 / max(mean, 1.0)))
            out = np.concatenate([out, np.full(length, state)])
            state = not state
        return out[:n]


@dataclass(frozen=True)
class LongStalls(Pattern):
    """Bernoulli(``p``) with, on average every ``every`` cycles, a stall of ``length``
    cycles (longer than any pipeline here, so every stage fills and freezes)."""

    p: float = 0.9
    every: int = 400
    length: int = 150

    @property
    def duty(self):
        return self.p * max(0.05, 1 - self.length / self.every)

    def draw(self, n, rng):
        out = rng.random(n) < self.p
        starts = np.flatnonzero(rng.random(n) < 1.0 / self.every)
        for s in starts:
            out[s:s + self.length] = False
        return out


def as_pattern(p) -> Pattern:
    """A :class:`Pattern` from a pattern or a probability (1.0 -> :class:`Always`)."""
    if isinstance(p, Pattern):
        return p
    p = float(p)
    return Always() if p >= 1.0 else Bernoulli(p)


# ---------------------------------------------------------------------------- ports
class Port:
    """The valid, ready and payload handles of one stream port."""

    def __init__(self, valid, ready, payload, name: str = ""):
        self.valid, self.ready, self.payload, self.name = valid, ready, payload, name

    @classmethod
    def amaranth(cls, dut, name: str) -> "Port":
        """Amaranth stream port ``name`` (``name__valid``, ``name__ready``, ``name__payload``)."""
        return cls(*(getattr(dut, f"{name}__{s}") for s in ("valid", "ready", "payload")),
                   name=name)


class StreamSource:
    """Offers ``items`` (ints) on ``port`` when its pattern says so; an offered item stays
    valid until taken.  ``cycles`` records the cycle of every handshake."""

    def __init__(self, port: Port, items=(), pattern=1.0, rng=None):
        self.port = port
        self.items = [int(v) for v in items]
        self.pattern = as_pattern(pattern).bind(rng if rng is not None else
                                                np.random.default_rng(0))
        self.idx, self.offering, self.cycles = 0, False, []

    @property
    def done(self) -> bool:
        return self.idx >= len(self.items) and not self.offering

    def drive(self, cycle: int) -> None:
        if self.offering:
            return
        if self.idx < len(self.items) and self.pattern[cycle]:
            self.port.payload.value = self.items[self.idx]
            self.port.valid.value = 1
            self.offering = True
        else:
            self.port.valid.value = 0

    def sample(self, cycle: int) -> None:
        if self.offering and self.port.ready.value:
            self.cycles.append(cycle)
            self.idx += 1
            self.offering = False

    def idle(self) -> None:
        self.port.valid.value = 0


class StreamSink:
    """Collects ``n`` items from ``port`` (unsigned payload ints in ``items``, handshake
    cycles in ``cycles``), ready when its pattern says so and it still wants items."""

    def __init__(self, port: Port, n: int, pattern=1.0, rng=None):
        self.port, self.n = port, int(n)
        self.pattern = as_pattern(pattern).bind(rng if rng is not None else
                                                np.random.default_rng(1))
        self.items, self.cycles, self._ready = [], [], None

    @property
    def done(self) -> bool:
        return len(self.items) >= self.n

    def drive(self, cycle: int) -> None:
        r = len(self.items) < self.n and self.pattern[cycle]
        if r is not self._ready:
            self.port.ready.value = int(r)
            self._ready = r

    def sample(self, cycle: int) -> None:
        if self._ready and self.port.valid.value:
            self.items.append(self.port.payload.value.to_unsigned())
            self.cycles.append(cycle)

    def idle(self) -> None:
        self.port.ready.value = 0
        self._ready = False


class StreamMonitor:
    """Passive: records (cycle, payload) of every handshake seen on ``port``."""

    def __init__(self, port: Port):
        self.port, self.seen = port, []

    done = True

    def drive(self, cycle: int) -> None:
        pass

    def sample(self, cycle: int) -> None:
        if self.port.valid.value and self.port.ready.value:
            self.seen.append((cycle, self.port.payload.value.to_unsigned()))

    def idle(self) -> None:
        pass


# ---------------------------------------------------------------------------- drivers
#: cycles the drivers keep offering inputs after every sink is full (a unit that produced
#: all its outputs without taking all inputs is then reported by the caller's input count)
SETTLE_CYCLES = 32


class _Stop:
    """Done when every sink is full and every source drained, or SETTLE_CYCLES after the
    sinks filled up."""

    def __init__(self, parts):
        self.sinks = [p for p in parts if isinstance(p, (StreamSink, SimSink))]
        self.sources = [p for p in parts if p not in self.sinks]
        self.full_since = None

    def __call__(self, cycle: int) -> bool:
        if not self.sinks:  # sources only (e.g. a weight load): done when they are drained
            return all(p.done for p in self.sources)
        if not all(p.done for p in self.sinks):
            return False
        if self.full_since is None:
            self.full_since = cycle
        return all(p.done for p in self.sources) or cycle - self.full_since >= SETTLE_CYCLES


async def drive_streams(clk, parts, *, max_cycles: int, first_cycle: int = 0,
                        what: str = "streams") -> int:
    """Step sources, sinks and monitors together until every sink is full and every source
    drained (or :data:`SETTLE_CYCLES` after the sinks filled up, leaving inputs untaken:
    compare the sources' handshake counts); returns the cycle count.  Raises TimeoutError
    after ``max_cycles``."""
    from cocotb.triggers import FallingEdge, ReadOnly

    fall, ro = FallingEdge(clk), ReadOnly()
    active = [p for p in parts if not isinstance(p, StreamMonitor)]
    cycle = first_cycle
    stop = _Stop(active)
    while not stop(cycle):
        if cycle - first_cycle >= max_cycles:
            state = ", ".join(_state(p) for p in active)
            raise TimeoutError(f"{what} stalled after {cycle - first_cycle} cycles: {state}")
        await fall
        for p in parts:
            p.drive(cycle)
        await ro
        for p in parts:
            p.sample(cycle)
        cycle += 1
    await fall
    for p in parts:
        p.idle()
    return cycle - first_cycle


def _state(p) -> str:
    if isinstance(p, StreamSource):
        return f"{p.port.name or 'source'} {p.idx}/{len(p.items)} in"
    return f"{p.port.name or 'sink'} {len(p.items)}/{p.n} out"


async def expect_idle(clk, ports, cycles: int = IDLE_CYCLES) -> list[tuple[str, int, int]]:
    """Hold every output ``port`` ready for ``cycles`` cycles (inputs must be idle) and
    return what still arrives as (port name, cycle, payload): each is an *extra output*.
    Ready is dropped again at the end."""
    from cocotb.triggers import FallingEdge, ReadOnly

    fall, ro = FallingEdge(clk), ReadOnly()
    extra = []
    await fall
    for p in ports:
        p.ready.value = 1
    for cycle in range(cycles):
        await ro
        for p in ports:
            if p.valid.value:
                extra.append((p.name, cycle, p.payload.value.to_unsigned()))
        await fall
    for p in ports:
        p.ready.value = 0
    return extra


def extra_output_message(extra, limit: int = 5) -> str:
    """'extra output: ...' for a non-empty :func:`expect_idle` result."""
    shown = ", ".join(f"{n or 'o'}@+{c}={v:#x}" for n, c, v in extra[:limit])
    more = f" (+{len(extra) - limit} more)" if len(extra) > limit else ""
    return (f"extra output: {len(extra)} item(s) after the last expected one while the "
            f"sink held ready: {shown}{more}")


async def start_clock_reset(clk, rst, *, active: int = 1, period_ns: int = 10) -> None:
    """Start a ``period_ns`` clock on ``clk`` (``impl="gpi"`` on Icarus), hold ``rst`` at
    ``active`` for three rising edges, release it and wait one more edge."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    from moevit.sim.runner import tb_simulator
    kw = {"impl": "gpi"} if tb_simulator() == "icarus" else {}
    cocotb.start_soon(Clock(clk, period_ns, unit="ns", **kw).start())
    rst.value = active
    for _ in range(3):
        await RisingEdge(clk)
    rst.value = 1 - active
    await RisingEdge(clk)


# ---------------------------------------------------------------------------- one-stream TB
@dataclass
class StreamRun:
    outputs: list = field(default_factory=list)   # raw output payloads (unsigned ints)
    in_cycles: list = field(default_factory=list)  # cycle of each input handshake
    out_cycles: list = field(default_factory=list)  # cycle of each output handshake
    cycles: int = 0


class StreamTB:
    """Owns the clock/reset of an Amaranth stream component (ports ``i__*``, ``o__*``)."""

    def __init__(self, dut, *, period_ns: int = 10, inp: str = "i", out: str = "o"):
        self.dut = dut
        self.clk = dut.clk
        self.rst = dut.rst
        self.inp = Port.amaranth(dut, inp)
        self.out = Port.amaranth(dut, out)
        self.i_valid, self.i_ready, self.i_payload = self.inp.valid, self.inp.ready, \
            self.inp.payload
        self.o_valid, self.o_ready, self.o_payload = self.out.valid, self.out.ready, \
            self.out.payload
        self.period_ns = period_ns

    async def start(self):
        self.i_valid.value = 0
        self.o_ready.value = 0
        self.i_payload.value = 0
        await start_clock_reset(self.clk, self.rst, period_ns=self.period_ns)

    async def run(self, inputs, n_out: int, *, p_valid=1.0, p_ready=1.0,
                  seed: int = 0, max_cycles: int | None = None,
                  monitors=()) -> StreamRun:
        """Send ``inputs`` (unsigned ints) and collect ``n_out`` outputs.

        ``p_valid`` / ``p_ready``: the source's offer and the sink's ready pattern, a
        probability (Bernoulli per cycle) or a :class:`Pattern` (bursts, long stalls).
        ``monitors``: :class:`StreamMonitor` s stepped along (e.g. on ``self.inp``).
        """
        pv, pr = as_pattern(p_valid), as_pattern(p_ready)
        if max_cycles is None:
            slack = max(min(pv.duty, pr.duty), 0.05)
            max_cycles = int((len(inputs) + n_out + 200) / slack * 2) + 1000
        rng = np.random.default_rng(seed)
        src = StreamSource(self.inp, inputs, pv, rng)
        snk = StreamSink(self.out, n_out, pr, rng)
        cycles = await drive_streams(self.clk, [src, snk, *monitors], max_cycles=max_cycles,
                                     what="stream")
        return StreamRun(outputs=snk.items, in_cycles=src.cycles, out_cycles=snk.cycles,
                         cycles=cycles)

    async def expect_idle(self, cycles: int = IDLE_CYCLES, *, fail: bool = True) -> list[int]:
        """After the last expected output: hold ``o.ready`` high for ``cycles`` cycles with
        no input offered; any valid output is an *extra output*.  Raises AssertionError
        (``fail=True``) or returns the extra payloads (``fail=False``)."""
        self.i_valid.value = 0
        extra = await expect_idle(self.clk, [self.out], cycles)
        if extra and fail:
            raise AssertionError(extra_output_message(extra))
        return [v for _, _, v in extra]


def measure(run: StreamRun, out_to_in=None) -> dict:
    """Latency (cycles from an item's input handshake to its output handshake, minimum over
    items) and throughput (input items per cycle from first to last input handshake)."""
    in_c = np.asarray(run.in_cycles)
    out_c = np.asarray(run.out_cycles)
    idx = np.arange(len(out_c)) if out_to_in is None else np.asarray(out_to_in)
    lat = out_c - in_c[idx] if len(out_c) else np.array([0])
    span = int(in_c[-1] - in_c[0] + 1) if len(in_c) > 1 else 1
    ospan = int(out_c[-1] - out_c[0] + 1) if len(out_c) > 1 else 1
    return {"latency_cycles": int(lat.min()), "latency_max_cycles": int(lat.max()),
            "items_per_cycle": round(len(in_c) / span, 4),
            "outputs_per_cycle": round(len(out_c) / ospan, 4), "cycles": run.cycles}


# ---------------------------------------------------------------------------- Amaranth simulator
class SimSource:
    """:class:`StreamSource` for Amaranth's own simulator (``amaranth.sim``): drives the
    ``stream`` interface (``valid``, ``ready``, ``payload``) of a component from an
    ``add_testbench`` coroutine.  Items are unsigned ints (packed payload bits)."""

    def __init__(self, stream, items=(), pattern=1.0, rng=None):
        from amaranth.hdl import Value
        self.stream = stream
        self.payload = Value.cast(stream.payload)
        self.width, self.signed = len(self.payload), self.payload.shape().signed
        self.items = [int(v) for v in items]
        self.pattern = as_pattern(pattern).bind(rng if rng is not None else
                                                np.random.default_rng(0))
        self.idx, self.offering, self.fire, self.cycles = 0, False, False, []

    @property
    def done(self) -> bool:
        return self.idx >= len(self.items) and not self.offering

    def drive(self, ctx, cycle: int) -> None:
        if self.offering:
            return
        if self.idx < len(self.items) and self.pattern[cycle]:
            w = self.items[self.idx]
            if self.signed and w >= 1 << (self.width - 1):
                w -= 1 << self.width
            ctx.set(self.payload, w)
            ctx.set(self.stream.valid, 1)
            self.offering = True
        else:
            ctx.set(self.stream.valid, 0)

    def sample(self, ctx, cycle: int) -> None:
        self.fire = self.offering and bool(ctx.get(self.stream.ready))
        if self.fire:
            self.cycles.append(cycle)

    def after_tick(self) -> None:
        if self.fire:
            self.idx += 1
            self.offering = False

    def idle(self, ctx) -> None:
        ctx.set(self.stream.valid, 0)


class SimSink:
    """:class:`StreamSink` for Amaranth's simulator: collects ``n`` unsigned payloads."""

    def __init__(self, stream, n: int, pattern=1.0, rng=None):
        from amaranth.hdl import Value
        self.stream, self.n = stream, int(n)
        self.payload = Value.cast(stream.payload)
        self.mask = (1 << len(self.payload)) - 1
        self.pattern = as_pattern(pattern).bind(rng if rng is not None else
                                                np.random.default_rng(1))
        self.items, self.cycles, self.ready = [], [], False

    @property
    def done(self) -> bool:
        return len(self.items) >= self.n

    def drive(self, ctx, cycle: int) -> None:
        self.ready = len(self.items) < self.n and self.pattern[cycle]
        ctx.set(self.stream.ready, self.ready)

    def sample(self, ctx, cycle: int) -> None:
        if self.ready and ctx.get(self.stream.valid):
            self.items.append(int(ctx.get(self.payload)) & self.mask)
            self.cycles.append(cycle)

    def after_tick(self) -> None:
        pass

    def idle(self, ctx) -> None:
        ctx.set(self.stream.ready, 0)


async def sim_drive_streams(ctx, parts, *, max_cycles: int, what: str = "streams") -> int:
    """:func:`drive_streams` for Amaranth's simulator (inside an ``add_testbench``
    coroutine): set, sample the settled handshakes, tick."""
    cycle = 0
    stop = _Stop(parts)
    while not stop(cycle):
        if cycle >= max_cycles:
            state = ", ".join(f"{len(p.items)}/{p.n} out" if isinstance(p, SimSink)
                              else f"{p.idx}/{len(p.items)} in" for p in parts)
            raise TimeoutError(f"{what} stalled after {cycle} cycles: {state}")
        for p in parts:
            p.drive(ctx, cycle)
        for p in parts:
            p.sample(ctx, cycle)
        await ctx.tick()
        for p in parts:
            p.after_tick()
        cycle += 1
    for p in parts:
        p.idle(ctx)
    return cycle


async def sim_expect_idle(ctx, streams, cycles: int = IDLE_CYCLES) -> list[tuple[int, int]]:
    """:func:`expect_idle` for Amaranth's simulator: hold ``ready`` on every output
    ``stream`` for ``cycles`` cycles; returns the (cycle, payload) of anything that arrives."""
    from amaranth.hdl import Value
    extra = []
    for s in streams:
        ctx.set(s.ready, 1)
    for cycle in range(cycles):
        for s in streams:
            if ctx.get(s.valid):
                p = Value.cast(s.payload)
                extra.append((cycle, int(ctx.get(p)) & ((1 << len(p)) - 1)))
        await ctx.tick()
    for s in streams:
        ctx.set(s.ready, 0)
    return extra
