"""Registry of simulatable units: name -> how to build the component and which cocotb
module tests it.  ``moevit sim UNIT`` and the pytest suites read :data:`UNITS`, an explicit
table (:data:`_BUILTIN_UNITS`); a new unit adds its row there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError


@dataclass(frozen=True)
class UnitSpec:
    """One unit: ``build(cfg, **opts)`` returns the Amaranth component; ``test_module`` is
    the cocotb module run against it."""

    name: str
    build: Callable[..., object]
    test_module: str = "moevit.sim.tb_units"
    description: str = ""
    #: keys of ``opts`` that are passed to ``build`` (the rest reach the testbench only)
    component_opts: tuple = ("rows", "full_rate", "stages")


UNITS: dict[str, UnitSpec] = {}


def register_unit(spec: UnitSpec) -> UnitSpec:
    UNITS[spec.name] = spec
    return spec


def get_unit(name: str) -> UnitSpec:
    try:
        return UNITS[name]
    except KeyError:
        raise ConfigError(f"unknown unit {name!r}; known units: {', '.join(sorted(UNITS))}") \
            from None


def unit_latency(name: str, cfg: AcceleratorConfig, **opts) -> int | None:
    """The design latency (cycles) a unit declares, without elaborating it."""
    from moevit.hw.units.common import silence
    comp = get_unit(name).build(cfg, **opts)
    silence(comp)  # built only to read an attribute
    return getattr(comp, "latency", None)


def run_unit(name: str, cfg: AcceleratorConfig, *, sim: str = "verilator", vectors: int = 1000,
             seed: int = 1, waves: bool = False, p_valid: float = 0.7, p_ready: float = 0.7,
             rate_items: int | None = None, opts: dict | None = None,
             params: dict | None = None, verbose: bool = False) -> dict:
    """Build unit ``name`` for ``cfg``, run its testbench, return the metrics dict.

    Raises :class:`moevit.sim.runner.SimulationError` on any mismatch or failed test.
    """
    from moevit.sim.runner import run_testbench

    spec = get_unit(name)
    opts = dict(opts or {})
    p = {"unit": name, "vectors": int(vectors), "seed": int(seed), "p_valid": p_valid,
         "p_ready": p_ready, "opts": opts}
    if rate_items is not None:
        p["rate_items"] = int(rate_items)
    p.update(params or {})
    comp_opts = {k: v for k, v in opts.items() if k in spec.component_opts}
    metrics = run_testbench(lambda: spec.build(cfg, **comp_opts), cfg, name,
                            spec.test_module, sim=sim, params=p, waves=waves, seed=seed,
                            verbose=verbose)
    metrics.setdefault("seed", seed)
    return metrics


def _lazy(module: str, cls: str):
    def build(cfg, **kw):
        import importlib
        return getattr(importlib.import_module(module), cls)(cfg, **kw)
    return build


#: (name, module, class, description, cocotb test module, options passed to the constructor)
_BUILTIN_UNITS = [
    ("delay", "moevit.hw.units.delay", "Delay", "identity pipeline (harness self-test)"),
    ("exp", "moevit.hw.units.exp", "Exp", "hls::exp for fm_t (spec Appendix B)"),
    ("gelu", "moevit.hw.units.gelu", "Gelu", "table GELU with interpolation (spec §4.4)"),
    ("recip", "moevit.hw.units.divide", "Reciprocal", "hls::recip: trunc0(2^44/X), 0 for 0"),
    ("div", "moevit.hw.units.divide", "Divide", "fm_t division trunc0(a*2^22/b), 0 for b=0"),
    ("sqrt", "moevit.hw.units.sqrt", "Sqrt", "hls::sqrt, round half up at 2^-22"),
    ("rsqrt", "moevit.hw.units.sqrt", "Rsqrt", "LayerNorm rstd trunc0(2^44/sqrt(var))"),
    ("softmax", "moevit.hw.units.softmax", "OnlineSoftmax",
     "online softmax statistics (1/sum, max) per interleaved row (spec §4.5.3)"),
]
#: units with their own testbench: (name, module, class, description, test module, options)
_TESTBENCH_UNITS = [
    ("attention", "moevit.hw.units.attention", "Attention",
     "multi-head attention: Q·Kᵀ, staggered P lanes, online softmax, softmax·V (spec §4.5)",
     "moevit.sim.tb_attention", ()),
    ("moe_gate", "moevit.hw.units.moe_gate", "MoeGate",
     "MoE gate: logits, online softmax, strict top-k, trunc0 probabilities, expert queues "
     "(spec §4.6)", "moevit.sim.tb_moe_gate", ()),
]
for _name, _mod, _cls, _desc in _BUILTIN_UNITS:
    register_unit(UnitSpec(_name, _lazy(_mod, _cls), description=_desc))
for _name, _mod, _cls, _desc, _tb, _opts in _TESTBENCH_UNITS:
    register_unit(UnitSpec(_name, _lazy(_mod, _cls), test_module=_tb, description=_desc,
                           component_opts=_opts))

#: the stream arithmetic units registered here, without the harness self-test "delay"
STREAM_UNITS = tuple(name for name, *_ in _BUILTIN_UNITS if name != "delay")
