"""cocotb testbench: whole images through ``moevit_top`` (the sequenced core), bit for bit
against the golden model, driven as a host drives the board.

The host side: cocotbext-axi ``AxiLiteMaster`` on ``s_axi_control`` (register offsets from
:data:`moevit.regmap.REGMAP`), one ``AxiRam`` per memory port sharing one memory (the PS DDR),
every buffer of :func:`moevit.host.layout.buffer_layout` placed 4 KiB-aligned with guard gaps
between them, weights packed by :func:`moevit.host.packing.pack_weights`.

Checks:

* **runs**: each entry of ``runs`` is one ``ap_start`` ({task, num_images, reload,
  corrupt_patch_weights}); every image's ``x`` must equal the golden output.  A run with
  ``reload = 0`` after the patch weights in DRAM were overwritten must still use the on-chip
  copy (``reload_one_time_weights`` semantics); switching task changes only the gate pointer.
* **stops**: for each ``debug_id`` in ``stops`` (``"all"``: every stage of
  :func:`moevit.host.layout.stages`), a run with that ``debug_id`` must end with the stage's
  tensors in DRAM (spec §7 layouts) equal to the golden taps, and the ``stage`` register
  reading the stop.
* **AXI protocol** on every port: every burst lies inside one allocated buffer (reads of
  any buffer, writes only of activation buffers), never crosses 4 KiB, is at most 256 beats;
  after ``ap_done`` nothing is outstanding (no VALID from the masters, no response pending).
* inputs: seeded weights and random images from ``seed``, or ``weights_file`` (pickled
  Weights) and ``images_file`` (uint8 [N,C,H,W] .npy); the stops run task ``stop_task`` (0).
* random pauses on every AXI channel (``pause``) and a per-run cycle limit (a hang fails with
  the stage register's value instead of running forever).

Metrics: cycles per run (the ``cycles`` register) and per stop, for the cycle model check.
"""

from __future__ import annotations

import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from moevit.golden.model import GoldenModel
from moevit.golden.weights import seeded_weights
from moevit.host.layout import ACTIVATION_POINTERS, GATE_POINTER, stage_by_id, stages
from moevit.host.packing import pack_weights
from moevit.regmap import REGMAP
from moevit.sim import axil_regs
from moevit.sim.runner import tb_config, tb_params, tb_simulator, write_metrics
from moevit.sim.top_fast import PAGE, place_buffers

REGMAP_POINTERS = [r.name for r in REGMAP.registers if r.width == 64 and r.name != "cycles"]
BIT = {f.name: 1 << f.bit for f in REGMAP["CTRL"].fields}
MAX_BURST = 256


class Dram:
    """The buffers' placement (:func:`moevit.sim.top_fast.place_buffers`) in the shared AxiRam
    memory."""

    def __init__(self, cfg, batch: int, extra: dict | None = None):
        place = place_buffers(cfg, batch, extra)
        self.layout, self.addr = place.layout, dict(place.addr)
        self.size = 1 << max(20, (place.end - 1).bit_length())
        self.ram = None

    def nbytes(self, name) -> int:
        shape, dt = self.layout[name]
        return int(np.prod(shape)) * np.dtype(dt).itemsize

    def write(self, name, array):
        a = np.ascontiguousarray(array, dtype=self.layout[name][1])
        if a.nbytes > self.nbytes(name):
            raise ValueError(f"{name}: {a.nbytes} bytes exceed the buffer ({self.nbytes(name)})")
        self.ram.write(self.addr[name], a.tobytes())

    def read(self, name, shape=None):
        sh, dt = self.layout[name]
        shape = sh if shape is None else shape
        n = int(np.prod(shape)) * np.dtype(dt).itemsize
        return np.frombuffer(self.ram.read(self.addr[name], n), dtype=dt).reshape(shape)

    def owner(self, addr: int, length: int) -> str | None:
        for name, base in self.addr.items():
            if base <= addr and addr + length <= base + self.nbytes(name):
                return name
        return None


class Host:
    def __init__(self, dut, cfg, dram: Dram, pause: float, seed: int):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
        self.dut, self.cfg, self.dram = dut, cfg, dram
        self.ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk,
                                 dut.ap_rst_n, reset_active_level=False)
        self.rams, self.violations = [], []
        mem = None
        for k in range(cfg.mem_ports):
            ram = AxiRam(AxiBus.from_prefix(dut, f"m_axi_gmem{k}"), dut.ap_clk, dut.ap_rst_n,
                         reset_active_level=False, size=dram.size, mem=mem)
            mem = ram.mem
            self._guard(ram, k)
            self.rams.append(ram)
        dram.ram = self.rams[0]
        if pause:
            rng = random.Random(seed)
            for ram in self.rams:
                for ch in (ram.write_if.aw_channel, ram.write_if.w_channel,
                           ram.write_if.b_channel, ram.read_if.ar_channel,
                           ram.read_if.r_channel):
                    ch.set_pause_generator(iter(lambda r=rng: r.random() < pause, None))
        self.beat = cfg.axi_width // 8
        self.bursts = [0, 0]

    def _guard(self, ram, port):
        """Wrap the RAM's per-burst hooks with the protocol checks."""
        dram, beat = self.dram, self.cfg.axi_width // 8
        rd, wr = ram.read_if, ram.write_if
        orig_r, orig_w = rd._read, wr._write

        def check(kind, addr, length):
            name = dram.owner(addr, length)
            if name is None:
                self.violations.append(f"port {port} {kind} 0x{addr:x}+{length} outside every "
                                       f"buffer")
            elif kind == "write" and name not in ACTIVATION_POINTERS:
                self.violations.append(f"port {port} writes weight buffer {name} at 0x{addr:x}")
            if addr // PAGE != (addr + length - 1) // PAGE:
                self.violations.append(f"port {port} {kind} burst 0x{addr:x}+{length} crosses "
                                       f"a 4 KiB boundary")
            if length > MAX_BURST * beat:
                self.violations.append(f"port {port} {kind} burst of {length // beat} beats")

        async def _read(address, length):
            check("read", address, length)
            self.bursts[0] += 1
            return await orig_r(address, length)

        async def _write(address, data):
            check("write", address, len(data))
            self.bursts[1] += 1
            return await orig_w(address, data)
        rd._read, wr._write = _read, _write

    async def reg(self, name, value=None):
        return await axil_regs.access(self.ctl, name, value)

    async def run(self, *, num_images, debug_id=0, reload=1, max_cycles):
        await self.reg("num_images", num_images)
        await self.reg("debug_id", debug_id)
        await self.reg("reload_one_time_weights", reload)
        await self.reg("CTRL", BIT["ap_start"])
        dut = self.dut
        done = RisingEdge(dut.interrupt)
        timeout = ClockCycles(dut.ap_clk, max_cycles)
        if not dut.interrupt.value:
            got = await First(done, timeout)
            if got is timeout:
                stage = await self.reg("stage")
                raise AssertionError(f"no ap_done after {max_cycles} cycles (stage register "
                                     f"{stage}: {_stage_name(self.cfg, stage)})")
        ctrl = await self.reg("CTRL")
        assert ctrl & BIT["ap_done"], f"interrupt without ap_done (CTRL 0x{ctrl:x})"
        await self.reg("IP_ISR", 1)
        await self.quiet_check()
        return await self.reg("cycles"), await self.reg("stage")

    async def quiet_check(self, cycles: int = 64):
        """Nothing outstanding after ap_done: no VALID on any channel of any port for a while
        (a burst still in flight would show as RVALID/BVALID from the memory)."""
        dut = self.dut
        for _ in range(cycles // 8):
            await ClockCycles(dut.ap_clk, 8)
            for k in range(self.cfg.mem_ports):
                for s in ("ARVALID", "AWVALID", "WVALID", "RVALID", "BVALID"):
                    if getattr(dut, f"m_axi_gmem{k}_{s}").value:
                        self.violations.append(f"port {k} {s} high after ap_done")


def _load_weights(cfg, p: dict, seed: int):
    """``params["weights_file"]`` (a pickled Weights, e.g. from ``moevit sim top --protocol
    --weights DIR``), else the seeded weights."""
    if p.get("weights_file"):
        import pickle
        from pathlib import Path
        return pickle.loads(Path(p["weights_file"]).read_bytes())
    return seeded_weights(cfg, seed)


def _stage_name(cfg, code):
    s = stage_by_id(cfg, code)
    return s.name if s else "none"


def _mismatch(name, got, want) -> str | None:
    got, want = np.asarray(got, np.int64).reshape(-1), np.asarray(want, np.int64).reshape(-1)
    bad = np.flatnonzero(got != want)
    if bad.size == 0:
        return None
    i = int(bad[0])
    return (f"{name}: {bad.size}/{want.size} words differ; first at flat index {i}: "
            f"got {int(got[i])}, want {int(want[i])}")


@cocotb.test()
async def top_end_to_end(dut):
    cfg = tb_config()
    p = tb_params()
    seed = p.get("seed", 1)
    runs = p.get("runs", [{"task": 0, "num_images": 1, "reload": 1}])
    stops = p.get("stops", [])
    if stops == "all":
        stops = [s.debug_id for s in stages(cfg)]
    pause = p.get("pause", 0.0)
    max_cycles = p.get("max_cycles", 3_000_000)
    batch = max(r["num_images"] for r in runs) if runs else 1

    kw = {"impl": "gpi"} if tb_simulator() == "icarus" else {}
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns", **kw).start())
    dut.ap_rst_n.value = 0
    weights = _load_weights(cfg, p, seed)
    packed = pack_weights(weights, cfg, cache=False)
    # one gate array per task: the task switch moves the gate pointer only
    gate_names = [GATE_POINTER] + [f"{GATE_POINTER}@{t}" for t in range(1, len(packed.gates))]
    dram = Dram(cfg, batch, {gate_names[t]: (g.shape, g.dtype)
                             for t, g in enumerate(packed.gates) if t})
    host = Host(dut, cfg, dram, pause, seed)
    await ClockCycles(dut.ap_clk, 4)
    dut.ap_rst_n.value = 1
    await ClockCycles(dut.ap_clk, 2)

    model = GoldenModel(cfg, weights)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch, cfg.image_channels, cfg.image_height,
                                        cfg.image_width), dtype=np.uint8)
    if p.get("images_file"):
        images = np.load(p["images_file"])
        assert len(images) >= batch, f"{len(images)} images given, runs need {batch}"
    for name, arr in packed.arrays.items():
        dram.write(name, arr)
    dram.write("images", images)
    for name in REGMAP_POINTERS:
        await host.reg(name, dram.addr[name])
    gate_addr = {}
    for t, g in enumerate(packed.gates):
        dram.write(gate_names[t], g)
        gate_addr[t] = dram.addr[gate_names[t]]
    await host.reg("GIER", 1)
    await host.reg("IP_IER", 1)

    errors, metrics = [], {"runs": [], "stops": {}}
    golden_cache = {}

    def golden(task, n):
        key = (task, n)
        if key not in golden_cache:
            golden_cache[key] = model.run(images[:n], task=task, taps=True)
        return golden_cache[key]

    for r in runs:
        task, n = r["task"], r["num_images"]
        await host.reg(GATE_POINTER, gate_addr[task])
        if r.get("corrupt_patch_weights"):
            junk = rng.integers(-2 ** 15, 2 ** 15, size=packed.arrays["patch_embed_weights"].shape)
            dram.write("patch_embed_weights", junk)
        dram.write("x", np.zeros(dram.layout["x"][0], np.int32))
        cycles, stage = await host.run(num_images=n, reload=r.get("reload", 1),
                                       max_cycles=max_cycles * n)
        want = golden(task, n).output
        got = dram.read("x")[:n]
        msg = _mismatch(f"run {r}: x", got, want)
        if msg:
            errors.append(msg)
        metrics["runs"].append({**r, "cycles": cycles, "stage": stage,
                                "matched": msg is None})
        if r.get("corrupt_patch_weights"):
            dram.write("patch_embed_weights", packed.arrays["patch_embed_weights"])

    stop_task = p.get("stop_task", 0)
    await host.reg(GATE_POINTER, gate_addr[stop_task])
    ref = golden(stop_task, 1)
    for debug in stops:
        st = stage_by_id(cfg, debug)
        for tap, ptr in st.taps:
            dram.write(ptr, np.zeros(dram.layout[ptr][0], dram.layout[ptr][1]))
        cycles, stage = await host.run(num_images=1, debug_id=debug, reload=1,
                                       max_cycles=max_cycles)
        if stage != debug:
            errors.append(f"debug_id {debug}: stage register reads {stage}")
        ok = True
        for tap, ptr in st.taps:
            want = ref.taps[tap][0].reshape(-1)
            got = dram.read(ptr, (dram.layout[ptr][0][0], *dram.layout[ptr][0][1:]))
            got = got.reshape(-1)[:want.size]
            msg = _mismatch(f"debug_id {debug} ({tap} in {ptr})", got, want)
            if msg and p.get("dump"):
                np.savez(f"stop{debug}_{tap}.npz", got=got, want=want)
            if msg:
                errors.append(msg)
                ok = False
        metrics["stops"][str(debug)] = {"tap": st.name, "cycles": cycles, "ok": ok}

    metrics.update(violations=host.violations[:20], n_violations=len(host.violations),
                   reads=host.bursts[0], writes=host.bursts[1],
                   mismatches=len(errors), errors=errors[:20])
    write_metrics(metrics)
    assert not host.violations, "AXI protocol: " + "; ".join(host.violations[:5])
    assert not errors, "\n".join(errors[:10])
    await Timer(1, "ns")
