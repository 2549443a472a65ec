"""Registry of simulatable units: name -> how to build the component and which cocotb
module tests it.  ``moevit sim UNIT`` and the pytest suites read :data:`UNITS`, an explicit
table (:data:`_BUILTIN_UNITS`, :data:`_TESTBENCH_UNITS`); a new unit adds its row there.

The options of ``moevit sim`` are declared once in :data:`SIM_OPTIONS` (type, range, where
the value goes); each unit names the options its testbench reads (:data:`UNIT_OPTIONS`,
default :data:`STREAM_OPTIONS`).  The command line validates every option against its
declaration before anything is built, refuses a unit-specific option on a unit that lacks
it, and warns about a general option the unit ignores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError


#: at most this many random vectors per run (the testbench keeps them all in memory, a few
#: hundred bytes each)
MAX_SIM_VECTORS = 5_000_000


@dataclass(frozen=True)
class SimOption:
    """One option of ``moevit sim``: ``--<name with dashes>``.

    ``low``/``high`` bound the value (``low_open``: the bound itself is excluded);
    ``target`` says where a given value goes: ``"run"`` (a keyword of :func:`run_unit`),
    ``"opts"`` (component/testbench options, through ``expand`` if set) or ``"params"``
    (testbench parameters).  ``unit_specific`` options are an error on a unit that does not
    declare them; the others are only warned about there.
    """

    name: str
    type: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    target: str = "run"
    unit_specific: bool = False
    expand: Callable[[object], dict] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str):
        """The value of ``text``, or :class:`ConfigError` naming the flag, the value and the range."""
        try:
            value = self.type(text)
        except (TypeError, ValueError):
            kind = "a whole number" if self.type is int else "a number"
            raise ConfigError(f"{self.flag} {text!r} is not {kind}; pass {self.range_text()}") \
                from None
        return self.check(value)

    def check(self, value):
        """``value`` if it is in range, else :class:`ConfigError` naming flag, value and range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (self.type is int and not float(value).is_integer()):
            raise ConfigError(f"{self.flag} {value!r} is not "
                              f"{'a whole number' if self.type is int else 'a number'}; pass "
                              f"{self.range_text()}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.flag} {value} is not a finite number; pass "
                              f"{self.range_text()}")
        value = self.type(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else
                                            value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high:
            raise ConfigError(f"{self.flag} {value} is out of range; pass {self.range_text()}")
        return value

    def range_text(self) -> str:
        kind = "a whole number" if self.type is int else "a number"
        num = (lambda v: str(int(v))) if self.type is int else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            lo = "(" if self.low_open else "["
            return f"{kind} in {lo}{num(self.low)}, {num(self.high)}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {num(self.low)}"
        return kind

    def routed(self, value) -> dict:
        """``{key: value}`` entries this value adds to its target."""
        return self.expand(value) if self.expand else {self.name: value}


def _softmax_rows(rows: int) -> dict:
    from moevit.hw.units.softmax import MIN_INTERLEAVE
    return {"rows": rows, "full_rate": rows >= MIN_INTERLEAVE}


#: every option any unit's testbench reads
SIM_OPTIONS: dict[str, SimOption] = {o.name: o for o in (
    SimOption("vectors", int, 10000, "random vectors (default 10000; corner vectors come on top)",
              low=1, high=MAX_SIM_VECTORS),
    SimOption("seed", int, 1, "random seed (default 1)", low=0),
    SimOption("p_valid", float, 0.7, "source valid probability in the back-pressure phase "
              "(0 < p <= 1, default 0.7)", low=0, high=1, low_open=True),
    SimOption("p_ready", float, 0.7, "sink ready probability in the back-pressure phase "
              "(0 < p <= 1, default 0.7)", low=0, high=1, low_open=True),
    SimOption("rows", int, None, "softmax only: interleaved rows (default P x head lanes)",
              low=1, high=1024, target="opts", unit_specific=True, expand=_softmax_rows),
    SimOption("layers", int, 1, "attention only: layers run back to back (default 1)",
              low=1, high=64, target="params", unit_specific=True),
)}

#: options of the stream units' testbench (moevit.sim.tb_units)
STREAM_OPTIONS = ("vectors", "seed", "p_valid", "p_ready")
#: units whose testbench reads other options than STREAM_OPTIONS (a new unit adds its row)
UNIT_OPTIONS: dict[str, tuple[str, ...]] = {
    "softmax": STREAM_OPTIONS + ("rows",),
    "attention": ("seed", "p_valid", "p_ready", "layers"),
}


def unit_options(name: str) -> tuple[str, ...]:
    """The :data:`SIM_OPTIONS` keys unit ``name``'s testbench reads."""
    return get_unit(name).options


def check_options(name: str, given: dict) -> list[str]:
    """Validate the options ``given`` (key -> value) for unit ``name`` before anything runs.

    Raises :class:`ConfigError` for a value out of range or a unit-specific option on a unit
    that does not read it; returns warnings for general options the unit ignores."""
    reads = unit_options(name)
    warnings = []
    for key, value in given.items():
        opt = SIM_OPTIONS.get(key)
        if opt is None:
            raise ConfigError(f"unknown sim option {key!r}; known: {', '.join(SIM_OPTIONS)}")
        opt.check(value)
        if key not in reads:
            flags = ", ".join(SIM_OPTIONS[k].flag for k in reads)
            if opt.unit_specific:
                users = [u for u in sorted(UNITS) if key in UNITS[u].options]
                raise ConfigError(f"{opt.flag} applies to {', '.join(users)} only; unit {name!r} "
                                  f"has no such option (it reads {flags}); drop {opt.flag}")
            warnings.append(f"{opt.flag} is ignored by unit {name!r} (its testbench reads "
                            f"{flags})")
    return warnings


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
    #: keys of :data:`SIM_OPTIONS` the testbench reads
    options: tuple = STREAM_OPTIONS


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
    for key, value in (("vectors", vectors), ("seed", seed), ("p_valid", p_valid),
                       ("p_ready", p_ready)):
        SIM_OPTIONS[key].check(value)  # before anything is built
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
    ("linear", "moevit.hw.units.linear", "Linear",
     "unified linear engine: ping/pong weight tiles + patch bank, direct/gather/scatter/"
     "score-accumulate, GELU (spec §4.3), pixel mode = the patch embedding (spec §4.1)",
     "moevit.sim.tb_linear", ()),
    ("patch_embed", "moevit.hw.units.patch_embed", "PatchEmbed",
     "patch embedding on the linear engine: uint8 pixels, cls row, pos_embed (spec §4.1)",
     "moevit.sim.tb_patch_embed", ()),
    ("layernorm", "moevit.hw.units.layernorm", "LayerNorm",
     "LayerNorm: one-pass pre-scaled statistics, sqrt + trunc0 rstd, gain, bias (spec §4.2)",
     "moevit.sim.tb_layernorm", ("tokens",)),
    ("residual", "moevit.hw.units.residual", "Residual",
     "residual add wrap32(x + y), one 8-wide block per clock (spec §4.7)",
     "moevit.sim.tb_residual", ()),
    ("moe_gate", "moevit.hw.units.moe_gate", "MoeGate",
     "MoE gate: logits, online softmax, strict top-k, trunc0 probabilities, expert queues "
     "(spec §4.6)", "moevit.sim.tb_moe_gate", ()),
]
for _name, _mod, _cls, _desc in _BUILTIN_UNITS:
    register_unit(UnitSpec(_name, _lazy(_mod, _cls), description=_desc,
                           options=UNIT_OPTIONS.get(_name, STREAM_OPTIONS)))
for _name, _mod, _cls, _desc, _tb, _opts in _TESTBENCH_UNITS:
    register_unit(UnitSpec(_name, _lazy(_mod, _cls), test_module=_tb, description=_desc,
                           component_opts=_opts,
                           options=UNIT_OPTIONS.get(_name, ("seed", "p_valid", "p_ready"))))
for _name in UNIT_OPTIONS:
    if _name not in UNITS:
        raise ConfigError(f"UNIT_OPTIONS names unit {_name!r}, which is not in the unit table")
    for _opt in UNIT_OPTIONS[_name]:
        if _opt not in SIM_OPTIONS:
            raise ConfigError(f"unit {_name!r} declares option {_opt!r}, which SIM_OPTIONS lacks")

#: the stream arithmetic units registered here, without the harness self-test "delay"
STREAM_UNITS = tuple(name for name, *_ in _BUILTIN_UNITS if name != "delay")
