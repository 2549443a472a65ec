"""Whole images through ``moevit_top`` at simulator speed: the DRAM is the in-design memory model
(:mod:`moevit.sim.mem`), so no Python runs per clock cycle or per AXI beat.

The host flow is the one of :mod:`moevit.sim.tb_top_e2e` (buffers placed by
:func:`place_buffers`, weights packed by :func:`moevit.host.packing.pack_weights`, pointer
registers written through cocotbext-axi's ``AxiLiteMaster``, GIER/IP_IER, a wait on
``interrupt``), but everything the memory holds is prepared here, outside the simulator:

1. every weight buffer, the task's gate array and the images go into one ``$readmemh`` file,
   loaded at time 0 (``+SIM_MEM_INIT``); activation buffers start as zeros;
2. :mod:`moevit.sim.tb_top_fast` writes the registers, starts the run, waits for the interrupt
   (sampling the ``stage`` register every ``sample_every`` cycles, when asked, for per-stage
   cycles), and dumps the result buffers with ``$writememh``;
3. :func:`run_top_fast` compares the dumps with the golden model (``x`` for a full run; the
   stop's taps, in their spec §7 DRAM layouts, for a ``debug_id`` run).

The cocotbext-axi ``AxiRam`` run (:mod:`moevit.sim.tb_top_e2e`) stays the protocol-coverage
test; this one is for long runs (an ``edge-moe`` image).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, ShapeError

UNIT = "top_fast"
PAGE = 4096
GUARD = PAGE          # unallocated bytes between buffers: a stray access hits no buffer
FIRST_BUFFER = 0x10000
#: the smallest simulated memory (words of cfg.axi_width bits), whatever the buffers need
MIN_WORDS_LOG2 = 16


@dataclass(frozen=True)
class Placement:
    """Where each buffer lies in the simulated DRAM: ``addr[name]`` (4 KiB aligned, a guard
    page between buffers), ``layout[name] = (shape, dtype)``, ``end`` = first free byte."""

    layout: dict
    addr: dict
    end: int

    def nbytes(self, name: str) -> int:
        shape, dt = self.layout[name]
        return int(np.prod(shape)) * np.dtype(dt).itemsize

    def owner(self, addr: int, length: int) -> str | None:
        """The buffer holding bytes ``addr .. addr + length - 1`` entirely, or None."""
        for name, base in self.addr.items():
            if base <= addr and addr + length <= base + self.nbytes(name):
                return name
        return None


def place_buffers(cfg: AcceleratorConfig, batch: int, extra: dict | None = None) -> Placement:
    """Every buffer of :func:`moevit.host.layout.buffer_layout` for ``batch`` images (plus
    ``extra`` ``{name: (shape, dtype)}``), in order from :data:`FIRST_BUFFER`."""
    from moevit.host.layout import buffer_layout
    layout = {**buffer_layout(cfg, batch), **(extra or {})}
    addr, at = {}, FIRST_BUFFER
    for name, (shape, dt) in layout.items():
        addr[name] = at
        nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
        at = -(-(at + nbytes + GUARD) // PAGE) * PAGE
    return Placement(layout, addr, at)


def memory_words_log2(cfg: AcceleratorConfig, placement: Placement) -> int:
    """log2 of the simulated memory's word count that holds ``placement``."""
    words = -(-placement.end // (cfg.axi_width // 8))
    return max(MIN_WORDS_LOG2, (words - 1).bit_length())


# ---------------------------------------------------------------------------- results
@dataclass
class StageCycles:
    """One stage of a run, from the sampled ``stage`` register (which names the stage
    running): image ``image``'s stage ``debug_id`` (0: the one-time weight preload before the
    first stage) was first seen running at cycle ``start`` and ran ``cycles`` cycles, to
    within the sampling interval."""

    debug_id: int
    name: str
    image: int
    start: int
    cycles: int


@dataclass
class TopFastResult:
    """What :func:`run_top_fast` measured and compared."""

    preset: str
    task: int
    num_images: int
    debug_id: int
    cycles: int                          # the ``cycles`` register after ap_done
    stage: int                           # the ``stage`` register after ap_done
    mismatches: dict                     # tensor name -> None (bit-exact) or a description
    words: dict                          # tensor name -> words compared
    sim_wall_s: float                    # simulator process, start to end
    run_wall_s: float                    # ap_start to interrupt
    run_cpu_s: float                     # the same, CPU seconds of the simulator process
    build_s: float                       # Verilog export + simulator build (0: cached)
    prepare_s: float                     # packing, golden model, memory image
    stage_cycles: list = field(default_factory=list)
    sample_every: int = 0
    beats: dict = field(default_factory=dict)
    simulator: str = ""                  # name and version
    run_dir: str = ""

    @property
    def ok(self) -> bool:
        return all(v is None for v in self.mismatches.values())

    @property
    def khz(self) -> float:
        """Simulated kernel cycles per wall second of the run, in kHz."""
        return self.cycles / self.run_wall_s / 1e3 if self.run_wall_s else 0.0

    @property
    def khz_cpu(self) -> float:
        """Simulated kernel cycles per CPU second of the simulator process, in kHz (what the
        simulation costs without other load on the machine)."""
        return self.cycles / self.run_cpu_s / 1e3 if self.run_cpu_s else 0.0

    def modelled_ms(self, cfg: AcceleratorConfig) -> float:
        """The run's cycles at ``cfg``'s kernel clock, in ms."""
        return self.cycles / (cfg.clock_mhz * 1e3)

    def as_dict(self, cfg: AcceleratorConfig) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "stage_cycles"}
        out.update(bit_exact=self.ok, khz=round(self.khz, 2), khz_cpu=round(self.khz_cpu, 2),
                   modelled_ms=round(self.modelled_ms(cfg), 4), clock_mhz=cfg.clock_mhz,
                   stage_cycles=[s.__dict__ for s in self.stage_cycles])
        return out


def compare(name: str, got, want) -> str | None:
    """None when ``got`` equals ``want`` word for word, else a one-line description (count,
    first differing flat index, both values)."""
    got = np.asarray(got, np.int64).reshape(-1)
    want = np.asarray(want, np.int64).reshape(-1)
    if got.size != want.size:
        return f"{name}: {got.size} words read back, {want.size} expected"
    bad = np.flatnonzero(got != want)
    if bad.size == 0:
        return None
    i = int(bad[0])
    return (f"{name}: {bad.size}/{want.size} words differ; first at flat index {i}: got "
            f"{int(got[i])}, want {int(want[i])}")


def stage_cycles_from_trace(cfg: AcceleratorConfig, trace, start: int,
                            total: int) -> list[StageCycles]:
    """Per-stage cycles of one run from ``trace`` = [(memory cycle, stage register)] samples;
    the run started at memory cycle ``start`` and took ``total`` cycles.  The register names
    the stage running (0 before the first), so a stage lasts from the first sample naming it
    to the first sample naming the next.  A stage shorter than the sampling interval may be
    missed: its cycles then count to the stage before it."""
    from moevit.host.layout import PATCH_EMBED_DEBUG_ID, stages
    names = {s.debug_id: s.name for s in stages(cfg)}
    names[0] = "preload"
    segments = []                       # [code, start]
    for cyc, code in trace:
        if not segments or code != segments[-1][0]:
            segments.append([code, max(0, cyc - start)])
    if segments:
        segments[0][1] = 0              # the run starts in the first sampled state
    out, image, seen_patch = [], 0, False
    for i, (code, t0) in enumerate(segments):
        t1 = segments[i + 1][1] if i + 1 < len(segments) else total
        if code == PATCH_EMBED_DEBUG_ID:
            image += seen_patch
            seen_patch = True
        out.append(StageCycles(code, names.get(code, f"stage {code}"), image, t0, t1 - t0))
    return out


# ---------------------------------------------------------------------------- runner
def check_run(cfg: AcceleratorConfig, images: np.ndarray, task: int, debug_id: int) -> None:
    """Refuse inputs the run cannot take (before anything is built)."""
    from moevit.host.layout import stage_by_id, stages
    if debug_id and stage_by_id(cfg, debug_id) is None:
        ids = [s.debug_id for s in stages(cfg)]
        raise ConfigError(f"--debug-id {debug_id} is no stage of preset {cfg.name!r}; pass 0 "
                          f"(whole run) or one of {ids[0]} (patch embedding), "
                          f"{', '.join(map(str, ids[1:4]))}, ... {ids[-1]} "
                          f"(16*layer + step, see moevit.host.layout.stages)")
    if not 0 <= task < cfg.num_tasks:
        raise ConfigError(f"task {task} is not a task of preset {cfg.name!r}; pass 0.."
                          f"{cfg.num_tasks - 1}")
    shape = (cfg.image_channels, cfg.image_height, cfg.image_width)
    if images.ndim != 4 or images.shape[1:] != shape or images.dtype != np.uint8:
        raise ShapeError(f"images {images.dtype}{list(images.shape)} do not fit preset "
                         f"{cfg.name!r}: expected uint8 [N, {', '.join(map(str, shape))}]")


def default_sample_every(cfg: AcceleratorConfig, num_images: int = 1) -> int:
    """A sampling interval giving ~2,000 samples per run (cycle model estimate), >= 16."""
    return max(16, estimated_cycles(cfg) * num_images // 2000)


def estimated_cycles(cfg: AcceleratorConfig) -> int:
    """The whole-accelerator cycle model's cycles per image (batch 1)."""
    from moevit.hw.perf.cycle_model import run
    r = run(cfg)
    return int(round(r.ms_per_image * cfg.clock_mhz * 1e3))


def build_top_fast(cfg: AcceleratorConfig, words_log2: int, *, sim: str = "verilator",
                   waves: bool = False) -> tuple[Path, str, float]:
    """(build dir, toplevel, seconds) of ``moevit_top`` inside the simulated-DRAM top
    (cached by content: seconds is ~0 on a rebuild of the same sources)."""
    from moevit.hw.top.wrapper import TOP_NAME
    from moevit.sim.mem.top import SimMemSpec, build_sim_top
    from moevit.sim.top_run import top_verilog_file
    t0 = time.monotonic()
    text = top_verilog_file(cfg).read_text()
    bdir, top = build_sim_top(text, TOP_NAME, cfg, UNIT, mem=SimMemSpec(words_log2=words_log2),
                              sim=sim, waves=waves)
    return bdir, top, time.monotonic() - t0


def run_top_fast(cfg: AcceleratorConfig, weights, images: np.ndarray, *, task: int = 0,
                 debug_id: int = 0, reload: int = 1, stall: int = 0, latency: int = 0,
                 seed: int = 1, sample_every: int | None = 0, max_cycles: int | None = None,
                 sim: str = "verilator", waves: bool = False,
                 verbose: bool = False) -> TopFastResult:
    """Run ``images`` (uint8 [N,C,H,W]; N = ``num_images``) through ``moevit_top`` with the
    in-design DRAM and compare with the golden model (see module doc).

    ``weights``: a :class:`~moevit.golden.weights.Weights` (float or raw).  ``stall``,
    ``latency``, ``seed``: the memory's knobs (:class:`moevit.sim.mem.tb.SimMemTB`).
    ``sample_every``: cycles between reads of the ``stage`` register (0: none; None: about
    2,000 per run) for :attr:`TopFastResult.stage_cycles`.  ``max_cycles``: the run fails after
    this many (default: 5x the cycle model's estimate, at least 200,000).
    A failed cocotb check raises :class:`moevit.sim.runner.SimulationError`."""
    from moevit.golden.model import GoldenModel
    from moevit.host.layout import GATE_POINTER, stage_by_id
    from moevit.host.packing import pack_weights
    from moevit.regmap import REGMAP
    from moevit.sim.mem.image import write_image
    from moevit.sim.runner import run_built, unit_dir

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    check_run(cfg, images, task, debug_id)
    n = images.shape[0]
    t_prep = time.monotonic()
    packed = pack_weights(weights, cfg)
    place = place_buffers(cfg, n)
    words_log2 = memory_words_log2(cfg, place)
    regions = {place.addr[name]: arr for name, arr in packed.arrays.items()
               if name != GATE_POINTER}
    regions[place.addr[GATE_POINTER]] = packed.gates[task]
    regions[place.addr["images"]] = np.ascontiguousarray(images)
    stop = stage_by_id(cfg, debug_id) if debug_id else None
    taps = {t for t, _ in stop.taps} if stop else False
    ref = GoldenModel(cfg, weights).run(images[:1] if stop else images, task=task, taps=taps)
    # compared tensor -> (buffer it is left in, golden value)
    want = ({f"{t} ({ptr})": (ptr, ref.taps[t][0]) for t, ptr in stop.taps} if stop
            else {"x": ("x", ref.output)})
    d = unit_dir(cfg, UNIT) / "images"
    d.mkdir(parents=True, exist_ok=True)
    hexfile = d / f"load-{os.getpid()}-{time.monotonic_ns()}.hex"
    write_image(hexfile, regions, word_bytes=cfg.axi_width // 8, words=1 << words_log2)
    prepare_s = time.monotonic() - t_prep

    bdir, top, build_s = build_top_fast(cfg, words_log2, sim=sim, waves=waves)
    pointers = [r.name for r in REGMAP.registers if r.width == 64 and r.name != "cycles"]
    regs = [[name, place.addr[name]] for name in pointers]
    regs += [["num_images", n], ["debug_id", debug_id], ["reload_one_time_weights", reload]]
    if sample_every is None:
        sample_every = default_sample_every(cfg, n)
    if max_cycles is None:
        max_cycles = max(200_000, 5 * estimated_cycles(cfg) * n)
    params = {"regs": regs, "max_cycles": max_cycles, "sample_every": sample_every,
              "stall": stall, "latency": latency, "seed": seed,
              "dumps": [[ptr, place.addr[ptr], place.nbytes(ptr)] for ptr, _ in want.values()]}
    t0 = time.monotonic()
    try:
        m = run_built(bdir, cfg, UNIT, "moevit.sim.tb_top_fast", sim=sim, params=params,
                      waves=waves, toplevel=top, verbose=verbose,
                      plusargs=[f"+SIM_MEM_INIT={hexfile}"])
    finally:
        hexfile.unlink(missing_ok=True)     # tens of MB for edge-moe; rebuilt in seconds
    sim_wall = time.monotonic() - t0
    dumps = np.load(Path(m["run_dir"]) / "dumps.npz")
    mismatches, words = {}, {}
    for label, (ptr, ref_arr) in want.items():
        shape, dt = place.layout[ptr]
        got = np.frombuffer(dumps[ptr].tobytes(), dtype=dt)
        ref_flat = np.asarray(ref_arr).reshape(-1)
        got = got[:ref_flat.size] if stop else got.reshape(shape)[:n].reshape(-1)
        mismatches[label] = compare(label, got, ref_flat)
        words[label] = int(ref_flat.size)
    trace = [tuple(t) for t in m.get("stage_trace", [])]
    stages_out = (stage_cycles_from_trace(cfg, trace, m["start_cycle"], m["cycles"]) if trace
                  else [])
    return TopFastResult(
        preset=cfg.name, task=task, num_images=n, debug_id=debug_id, cycles=m["cycles"],
        stage=m["stage"], mismatches=mismatches, words=words, sim_wall_s=round(sim_wall, 2),
        run_wall_s=m["run_wall_s"], run_cpu_s=m["run_cpu_s"], build_s=round(build_s, 1),
        prepare_s=round(prepare_s, 2),
        stage_cycles=stages_out, sample_every=sample_every,
        beats={"read": m["rd_beats"], "written": m["wr_beats"]}, simulator=m["simulator_version"],
        run_dir=m["run_dir"])
