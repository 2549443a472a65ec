"""Test vectors and golden expectations for the stream units (corner cases + seeded random).

Each :class:`VectorSpec` turns field arrays into packed input words, computes the packed
expected output words with the golden model (``moevit.golden``), and knows which input
item each output belongs to.  The cocotb module :mod:`moevit.sim.tb_units` drives them.
Payload packing follows Amaranth's ``StructLayout`` order: first field in the low bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden.exp import hls_exp
from moevit.golden.fixed import div_fm, recip, rsqrt_ln, sqrt_rhu
from moevit.golden.kernels import GeluSpec, gelu, online_softmax
from moevit.hw.units.softmax import default_rows

def _u(v, width=32):
    return np.asarray(v, dtype=np.int64) & np.int64((1 << width) - 1)


def _pack(fields: list[tuple[np.ndarray, int]]) -> list[int]:
    """Pack (array, width) fields, first field lowest, into Python ints."""
    out = [0] * len(fields[0][0])
    shift = 0
    for arr, width in fields:
        vals = _u(arr, width).tolist()
        out = [o | (v << shift) for o, v in zip(out, vals)]
        shift += width
    return out


def _unpack(words, widths: list[int], signed: list[bool]) -> list[np.ndarray]:
    words = [int(w) for w in words]
    res, shift = [], 0
    for width, sgn in zip(widths, signed):
        vals = np.array([(w >> shift) & ((1 << width) - 1) for w in words], dtype=np.int64)
        if sgn:
            vals = np.where(vals >= (1 << (width - 1)), vals - (1 << width), vals)
        res.append(vals)
        shift += width
    return res


@dataclass
class Vectors:
    """Input words, expected output words, output->input index map, and field views."""

    inputs: list[int]
    expected: list[int]
    out_to_in: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)


def _concat_arrays(a: dict, b: dict) -> dict:
    """Join two field dicts key by key (the fields are per-item arrays)."""
    return {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])]) for k in a}


@dataclass
class VectorSpec:
    """How to test one stream unit against the golden model."""

    name: str
    corners: Callable[[AcceleratorConfig], dict]
    random: Callable[[AcceleratorConfig, int, np.random.Generator], dict]
    make: Callable[[AcceleratorConfig, dict], Vectors]
    decode_out: Callable[[AcceleratorConfig, list[int]], dict]
    #: joins two field dicts of this spec (corners + random)
    concat: Callable[[dict, dict], dict] = _concat_arrays


# ---------------------------------------------------------------------------- scalar units
def _scalar_spec(name, golden, corners, random, out_signed=True):
    def make(cfg, f):
        x = np.asarray(f["x"], dtype=np.int64)
        y = golden(cfg, x)
        return Vectors(_pack([(x, 32)]), _pack([(y, 32)]), np.arange(len(x)), {"x": x})

    def decode(cfg, words):
        return {"y": _unpack(words, [32], [out_signed])[0]}
    return VectorSpec(name, corners, random, make, decode)


def _edges(*centres, radius=2):
    """Each centre +- radius, kept inside the 32-bit range."""
    return [c + d for c in centres for d in range(-radius, radius + 1)
            if -(1 << 31) <= c + d < (1 << 31)]


def _fm_limits():
    return [0, 1, -1, 2, -2, (1 << 31) - 1, -(1 << 31), (1 << 31) - 2, -(1 << 31) + 1,
            1 << 22, -(1 << 22), (1 << 22) + 1, (1 << 22) - 1]


def _clip32(v):
    v = np.asarray(v, dtype=np.int64)
    return v[(v >= -(1 << 31)) & (v < (1 << 31))]


def _mix_random(rng, n, near: list[tuple[int, int]]):
    """Half uniform over all 32-bit values, half uniform in the given [lo, hi) ranges."""
    full = rng.integers(-(1 << 31), 1 << 31, size=n - n // 2)
    parts = []
    k = n // 2
    for j, (lo, hi) in enumerate(near):
        cnt = k // len(near) + (1 if j < k % len(near) else 0)
        parts.append(rng.integers(lo, hi, size=cnt))
    v = np.concatenate([full] + parts).astype(np.int64)
    rng.shuffle(v)
    return v


def _exp_corners(cfg):
    one = 1 << 22
    x = np.arange(-(1 << 31), (1 << 31), 1 << 24, dtype=np.int64)  # coarse full sweep
    # the saturation edge: smallest x giving 2^31-1 (x >= ln 512)
    grid = np.arange(int(6.2 * one), int(6.3 * one), dtype=np.int64)
    sat = int(grid[np.argmax(hls_exp(grid) == (1 << 31) - 1)])
    edges = _edges(0, one, -one, -16 * one, 16 * one, 15 * one + (0x78A014 >> 1), sat,
                   -(1 << 31), (1 << 31) - 1, -int(0.5 * one), int(np.log(2) * one),
                   radius=3)
    return {"x": np.concatenate([np.array(_fm_limits() + edges, dtype=np.int64), x])}


def _exp_random(cfg, n, rng):
    one = 1 << 22
    return {"x": _clip32(_mix_random(rng, n, [(-17 * one, 7 * one), (-one, one),
                                              (-16 * one, 0)]))}


def _gelu_golden(cfg, x):
    return gelu(x, GeluSpec.from_config(cfg))


def _gelu_corners(cfg):
    spec = GeluSpec.from_config(cfg)
    c = spec.cutoff_raw
    step = 1 << spec.index_shift
    e = _edges(c, -c, 0, step, -step, (spec.entries - 2) * step, -(spec.entries - 2) * step,
               24 * step, -24 * step, radius=3)
    return {"x": np.array(_fm_limits() + e, dtype=np.int64)}


def _gelu_random(cfg, n, rng):
    spec = GeluSpec.from_config(cfg)
    c = spec.cutoff_raw
    return {"x": _clip32(_mix_random(rng, n, [(-c - 4096, c + 4096), (-(1 << 22), 1 << 22)]))}


def _div_corners_list():
    one = 1 << 22
    return _fm_limits() + _edges(1 << 13, -(1 << 13), one, -one, 3, -3, radius=2) + \
        [1 << 9, (1 << 13) + 1, 12345, -12345, one * 100]


def _recip_corners(cfg):
    return {"x": np.array(_div_corners_list(), dtype=np.int64)}


def _recip_random(cfg, n, rng):
    one = 1 << 22
    return {"x": _clip32(_mix_random(rng, n, [(-(1 << 14), 1 << 14), (one // 4, 512 * one),
                                              (-512 * one, -one // 4)]))}


def _sqrt_corners(cfg):
    one = 1 << 22
    sq = [k * k for k in range(0, 50)]  # exact squares near zero
    near_const = list(range(0, 64)) + [cfg.layernorm_eps_raw + d for d in range(-4, 5)]
    return {"x": np.array(_fm_limits() + sq + near_const + _edges(one, 4 * one, 1 << 9,
                                                                 1 << 18, radius=2),
                          dtype=np.int64)}


def _sqrt_random(cfg, n, rng):
    return {"x": _clip32(_mix_random(rng, n, [(0, 1 << 31), (0, 1 << 16), (0, 64)]))}


# ---------------------------------------------------------------------------- divide
def _div_make(cfg, f):
    a = np.asarray(f["a"], dtype=np.int64)
    b = np.asarray(f["b"], dtype=np.int64)
    y = div_fm(a, b)
    return Vectors(_pack([(a, 32), (b, 32)]), _pack([(y, 32)]), np.arange(len(a)),
                   {"a": a, "b": b})


def _div_corners(cfg):
    vals = np.array(_div_corners_list(), dtype=np.int64)
    a, b = np.meshgrid(vals, vals)
    return {"a": a.ravel(), "b": b.ravel()}


def _div_random(cfg, n, rng):
    one = 1 << 22
    # gate use: e in [0, 1.0], S in [1.0, 16]; plus full-range signed pairs and small divisors
    k = n // 3
    a = np.concatenate([rng.integers(0, one + 1, k), rng.integers(-(1 << 31), 1 << 31, k),
                        rng.integers(-(1 << 31), 1 << 31, n - 2 * k)])
    b = np.concatenate([rng.integers(one, 16 * one, k), rng.integers(-(1 << 31), 1 << 31, k),
                        rng.integers(-(1 << 12), 1 << 12, n - 2 * k)])
    p = rng.permutation(n)
    return {"a": a[p], "b": b[p]}


# ---------------------------------------------------------------------------- online softmax
def _row_bits(rows: int) -> int:
    """Width of the ``row`` field (as :class:`moevit.hw.units.softmax.OnlineSoftmax`)."""
    return max(1, (rows - 1).bit_length())


def _softmax_groups(rng, n_items, rows, *, max_len=40, scale=4 << 22):
    """Random groups of ``rows`` interleaved rows, each of random length; scores ~ N(0, scale)
    with some ties, big values and format limits mixed in."""
    groups, total = [], 0
    while total < n_items:
        length = int(rng.integers(1, max_len + 1))
        kind = rng.integers(0, 4)
        if kind == 0:
            s = rng.normal(0, scale, (rows, length))
        elif kind == 1:  # many ties
            s = rng.integers(-3, 3, (rows, length)) * (1 << 21)
        elif kind == 2:  # full range
            s = rng.integers(-(1 << 31), 1 << 31, (rows, length))
        else:  # increasing runs (every step a new maximum)
            s = np.cumsum(rng.integers(0, 1 << 22, (rows, length)), axis=1) - (8 << 22)
        groups.append(np.clip(np.asarray(s, dtype=np.float64), -(1 << 31),
                              (1 << 31) - 1).astype(np.int64))
        total += rows * length
    return groups


def _softmax_corner_groups(cfg, rows):
    lo, hi = -(1 << 31), (1 << 31) - 1
    one = 1 << 22
    g = [np.full((rows, 1), 0), np.full((rows, 3), lo), np.full((rows, 3), hi),
         np.array([[lo, hi, lo, hi]] * rows), np.array([[hi, lo, 0, 5]] * rows),
         np.tile(np.array([[one, one, one, 2 * one, 2 * one]]), (rows, 1)),
         np.array([[lo + 1, 0, 1]] * rows),
         np.arange(rows * 6).reshape(rows, 6) * (one // 3) - 3 * one]
    return [np.asarray(x, dtype=np.int64) for x in g]


def _softmax_from_groups(cfg, groups, rows):
    rb = _row_bits(rows)
    score, row, first, last = [], [], [], []
    recip_e, max_e, row_e, out_to_in = [], [], [], []
    idx = 0
    for g in groups:
        n_rows, length = g.shape
        _, mx, rc = online_softmax(g)
        for k in range(length):
            for r in range(n_rows):
                score.append(g[r, k])
                row.append(r)
                first.append(k == 0)
                last.append(k == length - 1)
                if k == length - 1:
                    recip_e.append(rc[r])
                    max_e.append(mx[r])
                    row_e.append(r)
                    out_to_in.append(idx)
                idx += 1
    f = {"score": np.array(score, np.int64), "row": np.array(row, np.int64),
         "first": np.array(first, np.int64), "last": np.array(last, np.int64)}
    inputs = _pack([(f["score"], 32), (f["row"], rb), (f["first"], 1), (f["last"], 1)])
    expected = _pack([(np.array(recip_e, np.int64), 32), (np.array(max_e, np.int64), 32),
                      (np.array(row_e, np.int64), rb)])
    return Vectors(inputs, expected, np.array(out_to_in, np.int64), f)


def _softmax_corners(cfg, rows=None, **_):
    rows = rows or default_rows(cfg)
    return {"groups": _softmax_corner_groups(cfg, rows), "rows": rows}


def _softmax_random(cfg, n, rng, rows=None, **_):
    rows = rows or default_rows(cfg)
    return {"groups": _softmax_groups(rng, n, rows), "rows": rows}


def _softmax_concat(a, b):
    return {"groups": a["groups"] + b["groups"], "rows": a["rows"]}


def _softmax_make(cfg, f):
    return _softmax_from_groups(cfg, f["groups"], f["rows"])


def _softmax_decode(cfg, words, rows=None, **_):
    rows = rows or default_rows(cfg)
    rb = _row_bits(rows)
    rc, mx, row = _unpack(words, [32, 32, rb], [True, True, False])
    return {"recip": rc, "max": mx, "row": row}


# ---------------------------------------------------------------------------- registry
VECTOR_SPECS: dict[str, VectorSpec] = {
    "delay": _scalar_spec("delay", lambda cfg, x: x, lambda cfg: {"x": np.array(
        _fm_limits(), np.int64)}, lambda cfg, n, rng: {"x": rng.integers(
            -(1 << 31), 1 << 31, n)}),
    "exp": _scalar_spec("exp", lambda cfg, x: hls_exp(x), _exp_corners, _exp_random),
    "gelu": _scalar_spec("gelu", _gelu_golden, _gelu_corners, _gelu_random),
    "recip": _scalar_spec("recip", lambda cfg, x: recip(x), _recip_corners, _recip_random),
    "sqrt": _scalar_spec("sqrt", lambda cfg, x: sqrt_rhu(x), _sqrt_corners, _sqrt_random),
    "rsqrt": _scalar_spec("rsqrt", lambda cfg, x: rsqrt_ln(x), _sqrt_corners, _sqrt_random),
    "div": VectorSpec("div", _div_corners, _div_random, _div_make,
                      lambda cfg, w: {"y": _unpack(w, [32], [True])[0]}),
    "softmax": VectorSpec("softmax", _softmax_corners, _softmax_random, _softmax_make,
                          _softmax_decode, _softmax_concat),
}


def concat_fields(spec_name: str, a: dict, b: dict) -> dict:
    """Join two field dicts of the same spec (corners + random): ``VectorSpec.concat``."""
    return VECTOR_SPECS[spec_name].concat(a, b)

