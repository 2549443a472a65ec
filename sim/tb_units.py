"""cocotb testbench shared by the stream arithmetic units (exp, gelu, recip, div, sqrt,
rsqrt, softmax).  Parameters come from :func:`moevit.sim.runner.tb_params`:

``unit``      key of :data:`moevit.sim.vectors.VECTOR_SPECS`
``vectors``   random vectors (items) in total; the corner cases come on top
``seed``      seed of the vectors and of the back-pressure pattern
``p_valid``, ``p_ready``  source/sink probabilities of the back-pressure phase
``rate_items``  random items of the full-rate phase (no back-pressure; measures latency and
              items/cycle); taken out of ``vectors``
``opts``      extra keyword arguments of the vector spec (e.g. ``rows`` for softmax)
``pattern``   back-pressure of phase 1: ``bernoulli`` (default; ``p_valid``/``p_ready``),
              ``bursts`` or ``stalls`` (long stalls), see :mod:`moevit.sim.tb_stream`
``idle_cycles``  cycles the sink stays ready after each phase's last expected output
``corrupt``   harness self-test: one wrong expectation (the run must fail)

Phase 1 sends the corner cases and most random vectors with random valid/ready
back-pressure; phase 2 streams the rest with source and sink always ready.  After each
phase the sink stays ready for ``idle_cycles`` with no input: anything that still arrives is
an extra output and fails the run.  Every output is compared with the golden model; the
metrics go to :func:`moevit.sim.runner.write_metrics`: besides the mismatches, the counts
the DUT produced (``inputs_taken``, ``outputs_received``, ``extra_outputs``) next to what
was sent and expected.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from moevit.sim.runner import tb_config, tb_params, write_metrics
from moevit.sim.tb_stream import (IDLE_CYCLES, Bursts, LongStalls, StreamMonitor, StreamTB,
                                  measure)
from moevit.sim.vectors import VECTOR_SPECS, concat_fields


def _compare(spec, cfg, vec, got, opts, limit=10):
    exp = vec.expected
    bad = [k for k in range(min(len(exp), len(got))) if exp[k] != got[k]]
    bad += list(range(min(len(exp), len(got)), max(len(exp), len(got))))
    lines = []
    if bad:
        dg = spec.decode_out(cfg, [got[k] for k in bad[:limit] if k < len(got)], **opts)
        de = spec.decode_out(cfg, [exp[k] for k in bad[:limit] if k < len(exp)], **opts)
        for j, k in enumerate(bad[:limit]):
            i = int(vec.out_to_in[k]) if k < len(vec.out_to_in) else -1
            inp = {n: int(a[i]) for n, a in vec.fields.items()} if i >= 0 else {}
            g = {n: int(a[j]) for n, a in dg.items()} if j < len(next(iter(dg.values()), [])) \
                else "missing"
            e = {n: int(a[j]) for n, a in de.items()} if j < len(next(iter(de.values()), [])) \
                else "nothing (extra output)"
            src = f"input {i} {inp}" if i >= 0 else f"beyond the {len(exp)} expected"
            lines.append(f"output {k} ({src}): got {g}, expected {e}")
    return len(bad), lines


def back_pressure(p: dict):
    """(source pattern, sink pattern) of the back-pressure phase from the parameters."""
    pv, pr = float(p.get("p_valid", 0.7)), float(p.get("p_ready", 0.7))
    kind = p.get("pattern", "bernoulli")
    if kind == "bursts":
        return Bursts(on=12, off=6), Bursts(on=10, off=10)
    if kind == "stalls":
        return LongStalls(p=pv), LongStalls(p=pr, every=300, length=120)
    if kind != "bernoulli":
        raise ValueError(f"unknown back-pressure pattern {kind!r}; "
                         "use bernoulli, bursts or stalls")
    return pv, pr


@cocotb.test()
async def stream_unit(dut):
    """Corner cases + random vectors with back-pressure, then a full-rate phase."""
    p = tb_params()
    cfg = tb_config()
    spec = VECTOR_SPECS[p["unit"]]
    opts = p.get("opts", {})
    seed = int(p.get("seed", 1))
    n = int(p.get("vectors", 1000))
    n_rate = int(p.get("rate_items", min(max(n // 10, 64), 4096)))
    n_rate = min(n_rate, n)
    rng = np.random.default_rng(seed)

    corners = spec.corners(cfg, **opts)
    rnd1 = spec.random(cfg, n - n_rate, rng, **opts) if n - n_rate > 0 else None
    f1 = concat_fields(spec.name, corners, rnd1) if rnd1 is not None else corners
    v1 = spec.make(cfg, f1)
    v2 = spec.make(cfg, spec.random(cfg, n_rate, rng, **opts)) if n_rate > 0 else None
    if p.get("corrupt"):  # harness self-test: one wrong expectation must fail the run
        v1.expected[0] ^= 1

    idle = int(p.get("idle_cycles", IDLE_CYCLES))
    tb = StreamTB(dut)
    await tb.start()
    t0 = time.monotonic()
    pv, pr = back_pressure(p)
    mon = StreamMonitor(tb.inp)  # a passive observer of the input port, not the driver
    r1 = await tb.run(v1.inputs, len(v1.expected), p_valid=pv, p_ready=pr, seed=seed + 1,
                      monitors=[mon])
    extra1 = await tb.expect_idle(idle, fail=False)
    mism, lines = _compare(spec, cfg, v1, r1.outputs + extra1, opts)
    n_corner = len(spec.make(cfg, corners).inputs)
    m = {"unit": spec.name, "vectors": len(v1.inputs), "mismatches": mism,
         "backpressure_cycles": r1.cycles, "pattern": p.get("pattern", "bernoulli"),
         "inputs_taken": len(mon.seen), "outputs_received": len(r1.outputs) + len(extra1),
         "extra_outputs": len(extra1)}
    if v2 is not None:
        r2 = await tb.run(v2.inputs, len(v2.expected), seed=seed + 2)
        extra2 = await tb.expect_idle(idle, fail=False)
        mism2, lines2 = _compare(spec, cfg, v2, r2.outputs + extra2, opts)
        m["vectors"] += len(v2.inputs)
        m["mismatches"] += mism2
        m["inputs_taken"] += len(r2.in_cycles)
        m["outputs_received"] += len(r2.outputs) + len(extra2)
        m["extra_outputs"] += len(extra2)
        lines += lines2
        m.update(measure(r2, v2.out_to_in))
        m["rate_items"] = len(v2.inputs)
    m["corner_vectors"] = n_corner
    m["random_vectors"] = m["vectors"] - n_corner   # items generated, not the parameter
    m["outputs"] = len(v1.expected) + (len(v2.expected) if v2 is not None else 0)
    m["tb_seconds"] = round(time.monotonic() - t0, 2)
    m["mismatch_examples"] = lines
    write_metrics(m)
    assert m["mismatches"] == 0, (f"{m['mismatches']} mismatches in {m['outputs']} outputs"
                                  f" ({m['extra_outputs']} extra):\n" + "\n".join(lines))
    assert m["inputs_taken"] == m["vectors"], f"{m['inputs_taken']} of {m['vectors']} inputs taken"
    assert [v for _, v in mon.seen] == v1.inputs[:len(mon.seen)], \
        "the input port carried other items than the source sent"
