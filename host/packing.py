"""Pack a weight set into the accelerator's DRAM layouts (spec §7), cached by content hash.

:func:`pack_weights` floors float :class:`moevit.golden.weights.Weights` into the fixed-point
formats exactly as the golden model does (:meth:`Weights.quantize`, wrap reports included) and
lays every kernel argument out as little-endian integers: int16 weights, int32 ``pos_embed``,
one ``moe_w_gate`` array per task.  Packed images are kept in memory and under
``build/host/packed/<hash>.npz`` keyed by a hash of the config and the weight contents, so a
second run with the same weights skips the quantisation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden.weights import Weights
from moevit.host.layout import GATE_POINTER, weight_layout
from moevit.tools import build_root

_MEMORY: dict[str, "PackedWeights"] = {}


@dataclass
class PackedWeights:
    """Weight pointer -> packed array (``moe_w_gate`` absent: see ``gates``)."""

    arrays: dict[str, np.ndarray]
    gates: list[np.ndarray]             # per task, [Lm][E][D] int16
    key: str
    wraps: dict[str, str] = field(default_factory=dict)   # tensor -> QuantReport.describe()
    from_cache: str = ""                # "", "memory" or "disk"

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) + sum(g.nbytes for g in self.gates)

    def wrap_lines(self) -> list[str]:
        return list(self.wraps.values())


def content_key(weights: Weights, cfg: AcceleratorConfig) -> str:
    """sha256 over the config digest and every weight tensor's dtype, shape and bytes."""
    h = hashlib.sha256(f"{cfg.digest}|raw={weights.raw}".encode())
    for name, a in weights.items():
        a = np.ascontiguousarray(a)
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def _pack(weights: Weights, cfg: AcceleratorConfig):
    wraps = {}
    if weights.raw:
        raw = weights.validate(cfg)
    else:
        raw, reports = weights.quantize(cfg)
        wraps = {n: r.describe(n) for n, r in reports.items() if not r.ok}
    layout = weight_layout(cfg)
    arrays = {n: np.ascontiguousarray(getattr(raw, n), dtype=layout[n][1])
              for n in layout if n != GATE_POINTER}
    gdt = layout[GATE_POINTER][1]
    gates = [np.ascontiguousarray(g, dtype=gdt) for g in raw.moe_w_gate_per_task]
    return arrays, gates, wraps


def pack_weights(weights: Weights, cfg: AcceleratorConfig, *, cache: bool = True) -> PackedWeights:
    """Packed DRAM images of ``weights`` (float: floored with wrap reports; or raw)."""
    weights.validate(cfg)
    key = content_key(weights, cfg)
    if cache and key in _MEMORY:
        p = _MEMORY[key]
        return PackedWeights(p.arrays, p.gates, key, p.wraps, "memory")
    path = build_root() / "host" / "packed" / f"{key}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            arrays = {n[2:]: z[n] for n in z.files if n.startswith("w_")}
            gates = [z[f"g_{t}"] for t in range(cfg.num_tasks)]
            wraps = {str(n): str(t) for n, t in zip(z["wrap_names"], z["wrap_texts"])}
        packed = PackedWeights(arrays, gates, key, wraps, "disk")
    else:
        arrays, gates, wraps = _pack(weights, cfg)
        packed = PackedWeights(arrays, gates, key, wraps)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **{f"w_{n}": a for n, a in arrays.items()},
                     **{f"g_{t}": g for t, g in enumerate(gates)},
                     wrap_names=np.array(list(wraps), dtype=str),
                     wrap_texts=np.array(list(wraps.values()), dtype=str))
            tmp.replace(path)
    if cache:
        _MEMORY[key] = packed
    return packed


def clear_memory_cache() -> None:
    _MEMORY.clear()
