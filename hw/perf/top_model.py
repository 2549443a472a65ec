"""Cycle model of the RTL top (:mod:`moevit.hw.top.core`): the sequenced core as built.

The core runs the program of :func:`moevit.hw.top.program.program` strictly one stage after
another, every tensor through DRAM.  A linear stage's weights and biases stream on the weight
reader during the stage *before* it (into the engine's other bank; ``weight_prefetch=False``
models the earlier core that loaded them at the stage's start, before its first step), and
the MoE stage zero-fills its output, runs the gate over the LN2 rows, then per non-empty
expert FC1 (weights, rows gathered by token, GELU, rows scattered to ``tmp_hidden``) and FC2
(weights, gathered rows, score-accumulate into ``tmp3``), each pass waiting for its writes.
K and V are fetched once per attention stage and replayed on chip once per query block
(:class:`~moevit.hw.top.program.Replay`): the replays cost cycles at one beat per cycle, no
DRAM bytes.

This module replays that timeline from the unit models (``linear_schedule.pass_cycles``,
``layernorm_cycles``, ``attention_schedule.cycles_per_layer``, ``moe_gate.gate_model``,
``patch_gather``, ``residual_cycles``) and a :class:`Memory`:

* :meth:`Memory.ideal`: the RTL testbenches' cocotbext-axi ``AxiRam`` (one beat per cycle
  per port, bursts back to back, AR→first R beat 2 cycles, last W→B 2 cycles; measured by
  ``sim/tb_top_trace.py``, recorded in ``bench/top_tiny_cycles.json``);
* :meth:`Memory.board`: the ZCU104 (``hp_port_width``-bit HP ports at the kernel clock, so a
  ``axi_width``-bit beat takes ``axi_width/hp_port_width`` cycles per port; PS DDR4 at
  ``dram_peak_gbs`` x ``dram_efficiency`` shared by all ports, :class:`~.dram.DramModel`;
  latencies assumed, see :data:`BOARD_READ_LATENCY_NS`).

Every fixed overhead below is a named constant tied to the RTL state it counts.  Timelines
are absolute cycles: 0 is the first cycle after ``ap_start`` (the PRELOAD state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.perf.dram import DramModel
from moevit.hw.top import program as prog
from moevit.hw.units import linear_schedule as LS
from moevit.hw.units.moe_gate_geometry import READ_STAGES, MoeGateGeometry
from moevit.hw.units.patch_gather import READ_LATENCY as GATHER_READ_LATENCY
from moevit.hw.units.patch_gather import gather_geometry

# ------------------------------------------------------------------------ sequencer constants
#: FETCH and START states between two stages (ROM entry latched, ``start`` pulse)
STAGE_ENTRY = 2
#: a stage's descriptor generator loads its first slot the cycle after ``start`` (loading),
#: so its first descriptor is valid one cycle into RUN
DESC_LOAD = 1
#: AxiBurstReader/Writer: the splitter latches an accepted descriptor (1) and issues its
#: first burst into the AR/AW holding register (1); the burst's address handshake follows
READ_ISSUE = 2
#: AxiBurstWriter: descriptor latched (1), burst issued into AW and its length FIFO (1), the
#: length FIFO (SyncFIFOBuffered) readable one cycle later (1): W beats flow from then
WRITE_ISSUE = 3
#: a reader's/writer's ``busy`` drops the cycle after its last R beat / B response (the
#: outstanding counter is a register)
BUSY_CLEAR = 1
#: the sequencer's ``settle`` counter: the channels must be quiet 3 cycles in a row
SETTLE = 3
#: ``stage_done`` seen in RUN -> the next state (FETCH or DONE) one cycle later
STAGE_EXIT = 1
#: the PRELOAD state (one cycle) before PRELOAD_WAIT offers the patch-weight descriptors
PRELOAD_ENTRY = 1
#: the ``cycles`` register counts the ``ap_start`` cycle (IDLE) and the DONE cycle
RUN_EDGES = 2
#: linear engine: the bank's full flag is set the cycle after its last weight/bias beat and
#: the first tile step issues on it
BANK_FULL = 1
#: MoE gate: its weights (reader C) load before it takes the first LN2 row; the first row
#: handshake is the cycle after the last weight beat
GATE_WEIGHTS_FIRST = 1
#: MoE scatter: an output row's W_OUT descriptor is offered with its first beat (and only
#: after the previous row is written); its beats pass only once the writer has the burst's
#: length, :data:`WRITE_ISSUE` cycles later (hidden when the row's out-tiles drain apart)
SCATTER_ROW_EXTRA = WRITE_ISSUE
#: MoE gather loop per row: rd_req handshake, the gate's queue read (READ_STAGES), the A/B
#: descriptor register, the reader's handshake -- then the next rd_req
GATHER_ROW_CYCLES = READ_STAGES + 2
#: MoE pass end: ``rows_written`` registers the last row (1), then the FSM waits for 8 quiet
#: cycles (``moe_wait`` counts to 7) before PASS_END
PASS_QUIET = 1 + 8
#: MoE FSM: PASS_END -> PASS (the next pass), and PASS_END -> RELEASE -> IDLE, which lets
#: the stage end the next cycle
PASS_NEXT, MOE_EXIT = 1, 3
#: the pre-streamer core (before main d77c3f0; see :func:`top_cycles`): FC2 -> the next
#: expert went PASS_END -> GATE -> PASS, and PASS_END (release) -> IDLE -> FETCH
PASS_NEXT_EXPERT_PRE, MOE_EXIT_PRE = 2, 2
#: MoE weight streamer: the first load's descriptor one cycle after PASS is entered (the
#: streamer starts on ``streaming``, its descriptor registered); a next load is offered
#: LOAD_NEXT cycles after the previous load's last beat (its counters registered)
LOAD_START, LOAD_NEXT = 0, 1
#: linear engine: a bank is free again the cycle after its pass's last step
BANK_CLEAR = 1
#: MoE gather: PASS_RUN -> the first gathered row's descriptor handshake (rd_req, the gate's
#: queue read, the A descriptor register) and the reader's issue; + memory latency = first
#: beat
GATHER_FIRST_BEAT = READ_STAGES + 1 + READ_ISSUE
#: linear engine: an input row is usable from the cycle of its last beat, one cycle earlier
#: than a bank after its last weight beat (pass_cycles: in_beats + 1 against max(w, b) + 2)
ROW_FULL = 0

#: board assumptions (no board measurement yet): PS DDR4 read latency through an HP port
#: and the interconnect, and the write-response latency
BOARD_READ_LATENCY_NS = 200.0
BOARD_WRITE_LATENCY_NS = 100.0


# ------------------------------------------------------------------------------ memory
@dataclass(frozen=True)
class Memory:
    """What the memory ports do: cycles from an address handshake to the first R beat
    (``read_latency``) and from the last W beat to B (``write_latency``), kernel cycles per
    ``axi_width``-bit beat on one port (``beat_cycles``, may be fractional) and the DRAM's
    shared bytes per cycle (``shared_bytes_per_cycle``; ``inf``: no shared limit)."""

    name: str
    read_latency: float
    write_latency: float
    beat_cycles: float
    shared_bytes_per_cycle: float
    note: str

    @classmethod
    def ideal(cls, read_latency: int = 2, write_latency: int = 2) -> "Memory":
        """The RTL testbench memory (cocotbext-axi AxiRam, no pauses)."""
        return cls("ideal", read_latency, write_latency, 1.0, math.inf,
                   "cocotbext-axi AxiRam per port: 1 beat/cycle, bursts back to back, "
                   f"AR->R {read_latency} cycles, W->B {write_latency} cycles (measured)")

    @classmethod
    def board(cls, cfg: AcceleratorConfig) -> "Memory":
        """The ZCU104: HP ports at the kernel clock, PS DDR4 shared (see module doc)."""
        d = DramModel.from_config(cfg)
        per_port_bytes = cfg.hp_port_width / 8
        beat = max(1.0, (cfg.axi_width / 8) / per_port_bytes)
        ns = 1e9 / cfg.clock_hz
        return cls("board", round(BOARD_READ_LATENCY_NS / ns), round(BOARD_WRITE_LATENCY_NS / ns),
                   beat, d.ddr_bytes_per_cycle,
                   f"{cfg.mem_ports} x {cfg.hp_port_width}-bit HP ports at "
                   f"{cfg.clock_hz / 1e6:g} MHz ({beat:g} cycles per {cfg.axi_width}-bit beat); "
                   f"PS DDR {d.peak_gbs} GB/s peak x {d.efficiency} efficiency = "
                   f"{d.ddr_bytes_per_cycle:.1f} B/cycle shared (assumed); latencies assumed "
                   f"{BOARD_READ_LATENCY_NS:g} ns read, {BOARD_WRITE_LATENCY_NS:g} ns write")

    def stream(self, beats: int) -> float:
        """Cycles a stream of ``beats`` beats occupies its port (first to last beat)."""
        return beats * self.beat_cycles

    def shared(self, nbytes: int) -> float:
        """Cycles the shared DRAM needs for ``nbytes``."""
        return nbytes / self.shared_bytes_per_cycle

    def describe(self) -> dict:
        return dict(name=self.name, read_latency=self.read_latency,
                    write_latency=self.write_latency, beat_cycles=self.beat_cycles,
                    shared_bytes_per_cycle=(None if math.isinf(self.shared_bytes_per_cycle)
                                            else round(self.shared_bytes_per_cycle, 2)),
                    note=self.note)


def _memory(cfg, memory) -> Memory:
    if isinstance(memory, Memory):
        return memory
    if memory == "ideal":
        return Memory.ideal()
    if memory == "board":
        return Memory.board(cfg)
    raise ConfigError(f"memory {memory!r}: use 'ideal' (the RTL testbench), 'board' (the "
                      f"ZCU104 model) or a moevit.hw.perf.top_model.Memory")


# ------------------------------------------------------------------------------ results
@dataclass
class StageTime:
    """One stage of one image: ``cycles`` from its FETCH to the next stage's FETCH."""

    name: str
    kind: str
    layer: int | None
    debug_id: int
    image: int
    cycles: float
    compute_cycles: float      # the unit(s) working (with data at full rate)
    memory_cycles: float       # waiting for DRAM with no compute overlapping
    bytes_read: int
    bytes_written: int
    end: float = 0.0           # absolute cycle of the next FETCH (DONE for the last stage)
    #: ``end`` of a run stopped here (``debug_id``): the stop stage loads nothing ahead
    stop_end: float = 0.0

    @property
    def overhead_cycles(self) -> float:
        """Sequencer states, descriptor issue, memory latencies, settle."""
        return self.cycles - self.compute_cycles - self.memory_cycles

    @property
    def bound(self) -> str:
        return "memory" if self.memory_cycles > self.compute_cycles else "compute"

    def row(self) -> dict:
        return dict(name=self.name, kind=self.kind, layer=self.layer, debug_id=self.debug_id,
                    image=self.image, cycles=round(self.cycles),
                    compute_cycles=round(self.compute_cycles),
                    memory_cycles=round(self.memory_cycles),
                    overhead_cycles=round(self.overhead_cycles), bound=self.bound,
                    bytes_read=self.bytes_read, bytes_written=self.bytes_written,
                    stop_cycles=round(self.end + RUN_EDGES))


@dataclass
class TopResult:
    cfg_name: str
    clock_hz: float
    memory: dict
    routing: str
    num_images: int
    preload_cycles: float
    stages: list = field(repr=False)
    preload_stream_cycles: float = 0.0
    preload_bytes: int = 0

    @property
    def cycles(self) -> float:
        """The ``cycles`` register at ``ap_done``."""
        return (self.stages[-1].end if self.stages else self.preload_cycles) + RUN_EDGES

    @property
    def ms_per_image(self) -> float:
        return 1e3 * self.cycles / self.clock_hz / self.num_images

    @property
    def images_per_s(self) -> float:
        return 1e3 / self.ms_per_image

    def stop_cycles(self) -> dict[int, float]:
        """The ``cycles`` register a run stopped at each debug id (image 0) would read."""
        return {s.debug_id: s.stop_end + RUN_EDGES for s in self.stages if s.image == 0}

    def by_kind(self) -> dict:
        """Cycles, compute / DRAM wait / overhead and DRAM bytes per stage kind; ``preload``:
        the patch-embedding weights loaded before the first image."""
        out: dict = {}
        if self.preload_cycles:
            out["preload"] = dict(cycles=self.preload_cycles, compute=0.0,
                                  memory=self.preload_stream_cycles,
                                  overhead=self.preload_cycles - self.preload_stream_cycles,
                                  bytes=self.preload_bytes)
        for s in self.stages:
            d = out.setdefault(s.kind, dict(cycles=0.0, compute=0.0, memory=0.0,
                                            overhead=0.0, bytes=0))
            d["cycles"] += s.cycles
            d["compute"] += s.compute_cycles
            d["memory"] += s.memory_cycles
            d["overhead"] += s.overhead_cycles
            d["bytes"] += s.bytes_read + s.bytes_written
        return {k: {kk: round(vv) for kk, vv in v.items()} for k, v in out.items()}

    def summary(self) -> dict:
        b = {"compute": 0, "memory": 0}
        for s in self.stages:
            b[s.bound] += 1
        rd = sum(s.bytes_read for s in self.stages)
        wr = sum(s.bytes_written for s in self.stages)
        return dict(preset=self.cfg_name, clock_mhz=self.clock_hz / 1e6,
                    num_images=self.num_images, cycles=round(self.cycles),
                    preload_cycles=round(self.preload_cycles),
                    ms_per_image=round(self.ms_per_image, 4),
                    images_per_s=round(self.images_per_s, 2),
                    dram_mb_read_per_image=round(rd / self.num_images / 1e6, 3),
                    dram_mb_written_per_image=round(wr / self.num_images / 1e6, 3),
                    stages_compute_bound=b["compute"], stages_memory_bound=b["memory"],
                    memory=self.memory, routing=self.routing)


# ------------------------------------------------------------------------------ routing
def uniform_routing(cfg: AcceleratorConfig) -> dict[int, list[int]]:
    """Tokens per expert when the T x top_k assignments split as evenly as possible."""
    n = cfg.tokens * cfg.top_k
    base, extra = divmod(n, cfg.num_experts)
    counts = [base + (e < extra) for e in range(cfg.num_experts)]
    return {L: list(counts) for L in cfg.moe_layers}


def golden_routing(cfg: AcceleratorConfig, images, weights, task: int = 0) -> list[dict]:
    """Tokens per expert of each MoE layer for each image of ``images`` (uint8 [N,C,H,W])
    from the golden model: one ``{layer: [E counts]}`` per image."""
    from moevit.golden.model import GoldenModel
    res = GoldenModel(cfg, weights).run(images, task=task)
    n = len(next(iter(res.routing.values()))["tokens_per_expert"]) if res.routing else 1
    return [{L: [int(v) for v in r["tokens_per_expert"][i]] for L, r in res.routing.items()}
            for i in range(n)]


def _check_routing(cfg, routing) -> dict[int, list[int]]:
    if set(routing) != set(cfg.moe_layers):
        raise ConfigError(f"routing has layers {sorted(routing)}; the config's MoE layers are "
                          f"{list(cfg.moe_layers)} (tokens per expert per MoE layer)")
    out = {}
    for L, counts in routing.items():
        c = [int(v) for v in np.asarray(counts).reshape(-1)]
        if (len(c) != cfg.num_experts or min(c) < 0 or max(c) > cfg.tokens
                or sum(c) != cfg.tokens * cfg.top_k):
            raise ConfigError(f"routing of layer {L}: need {cfg.num_experts} token counts in "
                              f"0..{cfg.tokens} (a token picks distinct experts) summing to "
                              f"tokens x top_k = {cfg.tokens * cfg.top_k} (got {c})")
        out[L] = c
    return out


# ------------------------------------------------------------------------------ unit models
@lru_cache(maxsize=16)
def _attention(cfg: AcceleratorConfig) -> tuple[int, int]:
    from moevit.hw.units.attention_schedule import cycles_per_layer
    c = cycles_per_layer(cfg)
    return c["qk_cycles"], c["av_cycles"]


@lru_cache(maxsize=16)
def _gate(cfg: AcceleratorConfig) -> dict:
    from moevit.hw.units.moe_gate import gate_model
    return gate_model(cfg)


def _layernorm(cfg) -> int:
    from moevit.hw.units.layernorm import layernorm_cycles
    return layernorm_cycles(cfg)["cycles"]


def _residual(cfg) -> int:
    from moevit.hw.units.residual import residual_cycles
    return residual_cycles(cfg, cfg.tokens * cfg.feature_blocks)


def _after_first_step(p: LS.PassCycles, tokens: int, ot: int, it: int, obpt: int,
                      per_token: float) -> float:
    """Cycles from a pass's first tile step to its last output beat (``pass_cycles``'
    steady state and tail, with ``per_token`` possibly slowed by the memory)."""
    return (tokens - 1) * per_token + ot * max(it, obpt) + p.tail


# ------------------------------------------------------------------------------ the model
class _Timeline:
    def __init__(self, cfg: AcceleratorConfig, mem: Memory, streamer: bool = True,
                 kv_replay: bool = True, patch_on_linear: bool = True):
        self.cfg, self.mem, self.streamer, self.kv_replay = cfg, mem, streamer, kv_replay
        self.patch_on_linear = patch_on_linear
        self.beat_bytes = cfg.axi_width // 8
        self.lr, self.lw = mem.read_latency, mem.write_latency

    # a stream stage: a unit fed by readers at full rate, its output to W_OUT
    def first_beat(self) -> float:
        """RUN-relative cycle of a stage's first read beat."""
        return DESC_LOAD + READ_ISSUE + self.lr

    def write_tail(self) -> float:
        """Last W beat -> the next FETCH: B, busy clear, settle, exit."""
        return self.lw + BUSY_CLEAR + SETTLE + STAGE_EXIT

    def replayed(self, st: prog.Stage, ch: int) -> bool:
        """Reader ``ch`` of ``st`` goes through the K/V replay buffer (read from DRAM once;
        ``kv_replay=False``: the core before it, which read it once per pass)."""
        return self.kv_replay and st.replay is not None and st.replay.channel == ch

    def dram_beats(self, st: prog.Stage, ch: int) -> int:
        """Beats reader ``ch`` of ``st`` fetches from DRAM."""
        return (sum(d.total_beats for d in st.reads.get(ch, ())) if self.replayed(st, ch)
                else st.unit_beats(ch))

    def port_bound(self, st: prog.Stage) -> float:
        """Cycles the busiest port of a stage needs for its own beats (1/cycle ideal); a
        replayed channel: its DRAM pass at the port's rate, the replays at one beat per cycle;
        a load ahead on the weight reader runs beside them (:meth:`ahead_end`)."""
        per_port: dict[int, float] = {}
        for ch in st.reads:
            if ch == prog.R_WEIGHTS and st.wload_ahead:
                continue
            t = self.mem.stream(self.dram_beats(st, ch))
            if self.replayed(st, ch):
                t += st.unit_beats(ch) - self.dram_beats(st, ch)
            per_port[prog.READ_PORT[ch]] = per_port.get(prog.READ_PORT[ch], 0) + t
        rd = max(per_port.values(), default=0)
        wr = max((sum(d.total_beats for d in ds) for ds in st.writes.values()), default=0)
        return max(rd, self.mem.stream(wr))

    def stage_bytes(self, st: prog.Stage) -> tuple[int, int]:
        rd = sum(self.dram_beats(st, ch) for ch in st.reads) * self.beat_bytes
        wr = sum(d.total_beats for ds in st.writes.values() for d in ds) * self.beat_bytes
        return rd, wr

    def ahead_end(self, st: prog.Stage) -> float:
        """RUN-relative cycle of the last beat of a load ahead (the next stage's weights,
        taken by the engine's free bank one per cycle), or -inf without one."""
        if not st.wload_ahead:
            return -math.inf
        beats = sum(d.total_beats for d in st.reads[prog.R_WEIGHTS])
        return self.first_beat() + self.mem.stream(beats) - 1

    def stage_end(self, st: prog.Stage, last_write: float) -> float:
        """Cycles of a stage whose last W beat is at RUN-relative ``last_write``: the
        writer's B response or the load ahead's last beat, then busy clear, settle, exit."""
        return STAGE_ENTRY + max(last_write + self.lw, self.ahead_end(st)) + (
            BUSY_CLEAR + SETTLE + STAGE_EXIT)

    def stream_stage(self, st: prog.Stage, unit: float) -> tuple[float, float, float]:
        """(cycles, compute, memory) of a stream stage whose unit needs ``unit`` cycles from
        its first input beat to its last output beat (both counted); the unit and its
        streams overlap (a replayed input: :meth:`port_bound`)."""
        rd, wr = self.stage_bytes(st)
        mem_bound = max(self.port_bound(st), self.mem.shared(rd + wr))
        busy = max(unit, mem_bound)
        cycles = self.stage_end(st, self.first_beat() + busy - 1)
        return cycles, unit, busy - unit

    def linear_stage(self, st: prog.Stage) -> tuple[float, float, float]:
        cfg, op = self.cfg, st.linear
        g = LS.geometry(cfg)
        n_in, n_out = op.in_tiles * g.tile_in, op.out_tiles * g.tile_out
        p = LS.pass_cycles(g, n_in, n_out, op.tokens, gelu=op.gelu)
        if st.wload is op:                      # loads its own weights first
            w_beats = sum(d.total_beats for d in st.reads[prog.R_WEIGHTS])
            w_last = self.first_beat() + self.mem.stream(w_beats) - 1
        else:                                   # loaded during the stage before
            w_last = -math.inf
        x_row = self.first_beat() + self.mem.stream(g.in_beats(n_in)) - 1
        first_step = max(w_last + BANK_FULL, x_row + ROW_FULL)
        out_row = self.mem.stream(op.out_tiles * g.out_beats_per_tile)
        per_token = max(p.per_token, self.mem.stream(g.in_beats(n_in)), out_row)
        after = _after_first_step(p, op.tokens, op.out_tiles, op.in_tiles,
                                  g.out_beats_per_tile, per_token)
        last = first_step + after
        cycles = self.stage_end(st, last)
        compute = _after_first_step(p, op.tokens, op.out_tiles, op.in_tiles,
                                    g.out_beats_per_tile, p.per_token)
        return cycles, compute, (first_step - self.first_beat()) + (after - compute)

    def patch_stage(self, st: prog.Stage) -> tuple[float, float, float]:
        """The patch embedding on the linear engine (pixel mode, weights kept in the patch
        bank): the gather's zero cls row leaves once the image's first beat is in, patch
        rows once their strip is; the engine takes a row into a free slot of its
        double-buffered row cache and steps a token once its row is in."""
        if not self.patch_on_linear:
            return self._separate_patch_stage(st)
        cfg, op = self.cfg, st.linear
        g = LS.geometry(cfg)
        n_in, n_out = op.in_tiles * g.tile_in, op.out_tiles * g.tile_out
        p = LS.pass_cycles(g, n_in, n_out, op.tokens, pixel=True)
        gg = gather_geometry(cfg)
        R, steps = gg.patch_beats, op.out_tiles * op.in_tiles
        S = self.mem.stream(gg.strip_beats)
        F = self.first_beat()                 # the image's first pix beat (RUN-relative)
        # the gather's next free read: its zero row issues from the cycle of the image's
        # first pix beat (measured: tiny and tiny-e8 equal at every stop with this, one
        # cycle more with F + 1)
        t_r = F
        strip_ready, read_end = [], []        # per strip: readable from; its last read
        firsts: list[float] = []
        for k in range(op.tokens):
            if k == 0:                        # the zero row: no strip needed
                start = t_r
            else:
                s, j = divmod(k - 1, gg.grid_w)
                if j == 0:                    # strip s written after s-1, into a free half
                    w = max(F + S * s if s == 0 else strip_ready[s - 1],
                            read_end[s - 2] + 1 if s >= 2 else 0.0)
                    strip_ready.append(w + S)
                start = max(t_r, strip_ready[s])
            last = start + R - 1 + GATHER_READ_LATENCY
            if k >= 2:                        # the row's cache slot frees at token k-2's end
                last = max(last, firsts[k - 2] + steps + R - 1)
            t_r = last - GATHER_READ_LATENCY + 1
            if k >= 1 and (k - 1) % gg.grid_w == gg.grid_w - 1:
                read_end.append(t_r - 1)
            firsts.append(max(last + 1, firsts[-1] + steps) if firsts else last + 1)
        last_out = firsts[-1] + op.out_tiles * max(op.in_tiles, g.out_beats_per_tile) + p.tail
        cycles = STAGE_ENTRY + last_out + self.write_tail()
        compute = p.cycles - p.first_step
        return cycles, compute, last_out - F - compute

    def _separate_patch_stage(self, st: prog.Stage) -> tuple[float, float, float]:
        """The core before the patch embedding moved onto the linear engine: a separate
        patch engine (no GELU lanes) over tokens 1..T-1, the cls row passed by its front."""
        cfg, op = self.cfg, st.linear
        g = LS.geometry(cfg)
        n_in, n_out = op.in_tiles * g.tile_in, op.out_tiles * g.tile_out
        p = LS.pass_cycles(g, n_in, n_out, op.tokens - 1, pixel=True, gelu_latency=0)
        gg = gather_geometry(cfg)
        # the gather's first strip is written (pix at the port rate), then its rows leave
        # GATHER_READ_LATENCY after their reads; pass_cycles counts x from its cycle 1
        strip = self.mem.stream(gg.strip_beats) + GATHER_READ_LATENCY - 1
        per_token = max(p.per_token, self.mem.stream(gg.strip_beats) / gg.grid_w)
        unit = strip + p.cycles + (op.tokens - 1) * (per_token - p.per_token)
        cycles = STAGE_ENTRY + self.first_beat() + unit - 1 + self.write_tail()
        return cycles, p.cycles, unit - p.cycles

    def preload_beats(self) -> int:
        return sum(d.beats for d in prog.patch_weight_load(self.cfg))

    def preload(self) -> float:
        """PRELOAD + PRELOAD_WAIT: the patch weights and biases on the weight reader."""
        beats = self.preload_beats()
        return (PRELOAD_ENTRY + READ_ISSUE + self.lr + self.mem.stream(beats) - 1
                + BUSY_CLEAR + STAGE_EXIT)

    # ------------------------------------------------------------------ MoE
    def moe_stage(self, st: prog.Stage, counts: list[int]) -> tuple[float, float, float,
                                                                     int, int]:
        cfg, mem = self.cfg, self.mem
        T, D, Dh, E = cfg.tokens, cfg.dim, cfg.expert_hidden, cfg.num_experts
        fb, bb = cfg.feature_block, self.beat_bytes
        row = D // fb
        g = LS.geometry(cfg)
        rd = wr = 0
        compute = memory = 0.0
        # ZERO: T rows of zeros on W_OUT, then wait for the writer
        zero = mem.stream(T * row)
        t = WRITE_ISSUE + zero - 1 + self.lw + BUSY_CLEAR + 1       # GATE entered
        wr += T * row * bb
        memory += zero
        # GATE: gate weights (C) first, then the LN2 rows (A) into the gate
        gg = MoeGateGeometry.from_config(cfg)
        gm = _gate(cfg)
        w_gate = prog.wt_beats(cfg, E * D)
        x0 = t + READ_ISSUE + self.lr + mem.stream(w_gate) - 1 + GATE_WEIGHTS_FIRST
        gate_unit = gm["cycles"] + max(0.0, mem.stream(T * gg.feature_blocks)
                                       - T * gg.feature_blocks)
        rd += (w_gate + T * row) * bb
        compute += gate_unit
        memory += mem.stream(w_gate)
        used = [(e, n) for e, n in enumerate(counts) if n]
        # GATE takes the whole expert list (one meta a cycle, the scan registered); the
        # last one starts the weight streamer and the first pass (pre-streamer core: the
        # first meta starts the first pass)
        meta = used[-1][0] if self.streamer else used[0][0]
        p = x0 + gate_unit - 1 - E + meta + 1 + 1                # PASS of pass 0
        passes = [(n, fc2) for _, n in used for fc2 in (False, True)]
        # weight streamer: load k (pass k's weights + biases, bank k % 2) is offered once
        # load k-1's beats are all in; its beats flow once bank k % 2 is free (pass k-2's
        # last step issued)
        desc = p + 1 + LOAD_START
        bank_free = [-math.inf, -math.inf]
        w_last = []
        for k, (n, fc2) in enumerate(passes):
            n_in, n_out = (Dh, D) if fc2 else (D, Dh)
            w = prog.wt_beats(cfg, n_in * n_out) + prog.wt_beats(cfg, n_out)
            rd += w * bb
            q = p + 1                                   # PASS_RUN
            if self.streamer:
                first = max(desc + READ_ISSUE + self.lr, bank_free[k % 2])
            else:                                       # loaded at the pass's start
                first = q + READ_ISSUE + self.lr
            w_last.append(first + mem.stream(w) - 1)
            desc = w_last[-1] + 1 + LOAD_NEXT
            p_end, last_step, c, m = self._moe_pass(g, q, n_in, n_out, n, fc2, w_last[k])
            bank_free[k % 2] = last_step + BANK_CLEAR
            compute += c
            memory += m
            rd += (n * (n_in // fb) + (n * row if fc2 else 0)) * bb
            wr += n * (n_out // fb) * bb
            if self.streamer:
                p = p_end + PASS_NEXT
            else:
                p = p_end + (PASS_NEXT_EXPERT_PRE if fc2 else PASS_NEXT)
        end = p_end + (MOE_EXIT if self.streamer else MOE_EXIT_PRE)   # next FETCH (RUN-relative)
        cycles = STAGE_ENTRY + end
        return cycles, compute, memory, rd, wr

    def _moe_pass(self, g, q: float, n_in: int, n_out: int, n: int, fc2: bool,
                  w_last: float):
        """One FC pass whose PASS_RUN starts at ``q`` and whose weights' last beat is at
        ``w_last``; returns (PASS_END cycle, last step, compute, memory wait)."""
        cfg, mem = self.cfg, self.mem
        it, ot = n_in // g.tile_in, n_out // g.tile_out
        pc = LS.pass_cycles(g, n_in, n_out, n, gelu=not fc2)
        in_beats = n_in // cfg.feature_block
        x_row = q + GATHER_FIRST_BEAT + self.lr + mem.stream(in_beats) - 1
        first_step = max(w_last + BANK_FULL, x_row + ROW_FULL)
        # rows arrive one per gather loop, and each at its port's rate (FC2: the hidden row
        # on A and the accumulated tmp3 row on B, in parallel)
        gather = max(GATHER_ROW_CYCLES, mem.stream(in_beats),
                     mem.stream(cfg.dim // cfg.feature_block) if fc2 else 0)
        per_token = max(pc.per_token, gather)
        # the engine's output beats unthrottled: out-tile j of token i drains its
        # out_beats_per_tile beats after its in-tiles, max(it, obpt) cycles apart; the
        # scatter offers a row's descriptor with its first beat (once the previous row is
        # written) and its beats pass SCATTER_ROW_EXTRA cycles later, one per port beat
        obpt = g.out_beats_per_tile
        spacing = max(it, obpt)
        written = -math.inf
        for i in range(n):
            e_i = first_step + i * per_token + ot * spacing + pc.tail
            t = -math.inf
            for j in range(ot):
                for b in range(obpt):
                    avail = e_i - (ot - 1 - j) * spacing - (obpt - 1 - b)
                    if j == 0 and b == 0:
                        t = max(avail, written + 1) + SCATTER_ROW_EXTRA - mem.beat_cycles
                    t = max(avail, t + mem.beat_cycles)
            written = t
        end = max(written + PASS_QUIET, written + self.lw + BUSY_CLEAR + 1)
        last_step = first_step + (n - 1) * per_token + ot * it - 1
        compute = _after_first_step(pc, n, ot, it, g.out_beats_per_tile, pc.per_token)
        return end, last_step, compute, max(0.0, first_step - (x_row + ROW_FULL))


def top_cycles(cfg: AcceleratorConfig, *, memory: str | Memory = "ideal",
               routing: dict | None = None, num_images: int = 1, debug_id: int = 0,
               reload: bool = True, moe_weight_streamer: bool = True,
               weight_prefetch: bool = True, kv_replay: bool = True,
               patch_on_linear: bool = True) -> TopResult:
    """Model one ``ap_start`` of the RTL top for ``num_images`` images.

    ``memory``: ``"ideal"`` (the RTL testbench memory), ``"board"`` (the ZCU104) or a
    :class:`Memory`.  ``routing``: tokens per expert per MoE layer ({layer: [E counts]}) for
    every image, or a list of those, one per image (:func:`golden_routing`); None assumes
    the uniform top-k split (:func:`uniform_routing`) and says so in the result.  ``debug_id``: stop after that stage
    of image 0 (as the RTL does), 0 = run to the end.  ``reload``: the patch weights are
    loaded first (``reload_one_time_weights``).  ``moe_weight_streamer=False`` models the
    core before main d77c3f0 (each MoE pass loaded its weights at its start), on which
    ``bench/top_edge_moe.json`` (a whole edge-moe image) was recorded: kept to check the
    model at edge-moe shapes.  The older cores, for their recordings: ``kv_replay=False``
    (K and V read from DRAM once per query block), ``patch_on_linear=False`` (a separate
    patch engine), ``weight_prefetch=False`` (each linear stage loads its own weights at its
    start)."""
    if num_images < 1:
        raise ConfigError(f"num_images must be >= 1 (got {num_images})")
    mem = _memory(cfg, memory)
    label = "given" if routing is not None else "uniform top-k split (assumed)"
    per_image = routing if isinstance(routing, (list, tuple)) else [routing] * num_images
    if len(per_image) < num_images:
        raise ConfigError(f"routing: {len(per_image)} per-image routings for {num_images} "
                          f"images; give one per image or one dict for all")
    routes = [_check_routing(cfg, uniform_routing(cfg) if r is None else r)
              for r in per_image[:num_images]]
    stages = prog.program(cfg, prefetch=weight_prefetch)
    if debug_id and debug_id not in {s.debug_id for s in stages}:
        raise ConfigError(f"debug_id {debug_id} is no stage of config {cfg.name!r}; see "
                          f"moevit.hw.top.program.program(cfg) for the stage ids")
    tl = _Timeline(cfg, mem, moe_weight_streamer, kv_replay, patch_on_linear)
    t = tl.preload() if reload else 0.0
    preload = t
    pre_beats = tl.preload_beats() if reload else 0

    def result(images):
        return TopResult(cfg.name, cfg.clock_hz, mem.describe(), label, images, preload, out,
                         mem.stream(pre_beats), pre_beats * tl.beat_bytes)
    out: list[StageTime] = []

    def stage(st, image):
        """(cycles, compute, memory, bytes read, bytes written) of one stage."""
        rd, wr = tl.stage_bytes(st)
        if st.kind == "linear":
            return (*tl.linear_stage(st), rd, wr)
        if st.kind == "patch":
            return (*tl.patch_stage(st), rd, wr)
        if st.kind == "moe":
            return tl.moe_stage(st, routes[image][st.layer])
        unit = {"ln": _layernorm, "residual": _residual}.get(st.kind)
        if unit is not None:
            u = unit(cfg)
        else:
            qk, av = _attention(cfg)
            u = qk if st.kind == "qk" else av
        return (*tl.stream_stage(st, u), rd, wr)

    for image in range(num_images):
        for st in stages:
            stop = debug_id and image == 0 and st.debug_id == debug_id
            if stop:
                st = prog.without_prefetch(st)      # the stop loads nothing ahead
            cyc, comp, memc, rd, wr = stage(st, image)
            stop_end = t + (cyc if not st.wload_ahead or image else
                            stage(prog.without_prefetch(st), image)[0])
            t += cyc
            out.append(StageTime(st.name, st.kind, st.layer, st.debug_id, image, cyc, comp,
                                 memc, rd, wr, end=t, stop_end=stop_end))
            if stop:
                return result(1)
    return result(num_images)


def held_out_config() -> AcceleratorConfig:
    """The second config the model is checked on in RTL (bench/top_tiny_cycles.json): tiny
    with 8 experts, FC1 scatter-bound (64-wide hidden rows) and FC2 engine-bound."""
    from moevit.config import preset
    return preset("tiny").replace(name="tiny-e8", expert_hidden=64, num_experts=8,
                                  mlp_hidden=128)


__all__ = ["Memory", "StageTime", "TopResult", "top_cycles", "uniform_routing",
           "golden_routing", "held_out_config"]
