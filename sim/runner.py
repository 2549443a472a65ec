"""Build Verilog from Amaranth components and run cocotb testbenches on Verilator or Icarus.

Host side::

    from moevit.sim.runner import run_testbench
    metrics = run_testbench(Exp(cfg), cfg, unit="exp", test_module="moevit.sim.tb_units",
                            params={"vectors": 1000, "seed": 1}, sim="verilator")

* Verilog goes to ``build/<cfg.digest>/<unit>/<unit>-<vhash>.v``; ``vhash`` hashes the
  generated text, so an unchanged design reuses the compiled simulator (Verilator builds
  take tens of seconds on 2 cores) and a changed one gets a fresh build directory.
* Each run gets its own directory under ``.../runs/`` (results.xml, logs, waves, metrics).
* Any failing cocotb test raises :class:`SimulationError` (results.xml is read; cocotb's
  runner does not fail by itself).  The error quotes the failure from the log.

Testbench side (inside the simulator process)::

    from moevit.sim.runner import tb_params, tb_config, write_metrics
    p = tb_params(); cfg = tb_config(); ...; write_metrics({"vectors": n, ...})
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import time
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

from moevit.config import AcceleratorConfig
from moevit.errors import MoevitError
from moevit.tools import build_root
from moevit.hw.verilog import verilog_text
from moevit import tools

TIMESCALE = ("1ns", "1ps")  # Amaranth emits no `timescale

ENV_PARAMS = "MOEVIT_TB_PARAMS"   # JSON file with the testbench parameters
ENV_CONFIG = "MOEVIT_TB_CONFIG"   # pickled AcceleratorConfig
ENV_METRICS = "MOEVIT_TB_METRICS"  # JSON file the testbench writes
ENV_SIM = "MOEVIT_TB_SIM"          # simulator name (icarus needs Clock(impl="gpi"))

VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")


class SimulationError(MoevitError, RuntimeError):
    """A simulator build failed, the simulation crashed, or a cocotb test failed.

    ``kind`` says which: ``"build"``, ``"crash"`` (no results) or ``"failed"`` (a cocotb
    test failed: the hardware disagreed with its expectation).  ``metrics`` holds what the
    testbench recorded before failing (may be empty)."""

    metrics: dict = {}

    def __init__(self, message: str, kind: str = "failed"):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------- Verilog
def unit_dir(cfg: AcceleratorConfig, unit: str) -> Path:
    """``build/<cfg.digest>/<unit>/``."""
    return build_root() / cfg.digest / unit


def generate_verilog(component, cfg: AcceleratorConfig, unit: str, *,
                     toplevel: str | None = None) -> Path:
    """Write the component's Verilog to ``build/<digest>/<unit>/<unit>-<vhash>.v`` (cached).

    ``component`` may also be a zero-argument callable returning the component.
    """
    toplevel = toplevel or unit
    if callable(component) and not hasattr(component, "elaborate"):
        component = component()
    text = verilog_text(component, toplevel)
    vhash = hashlib.sha256(text.encode()).hexdigest()[:12]
    out = unit_dir(cfg, unit) / f"{toplevel}-{vhash}.v"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(out)
    return out


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@contextmanager
def _outside_pytest():
    """cocotb's runner calls sys.exit() on failures when it sees PYTEST_CURRENT_TEST;
    hide it so that we read results.xml ourselves and raise a proper error."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved


def sources_key(sources: list[Path], *parts: str) -> str:
    """12 hex digits over ``parts`` and every source's name and content: an edited file
    (e.g. re-exported HLS Verilog under the same names) gets a fresh simulator build."""
    h = hashlib.sha256("|".join(parts).encode())
    for src in sources:
        h.update(f"|{src.name}|".encode())
        h.update(hashlib.sha256(src.read_bytes()).digest())
    return h.hexdigest()[:12]


def build_simulator(verilog: Path | list[Path], toplevel: str, *, sim: str = "verilator",
                    waves: bool = False, verbose: bool = False,
                    build_parent: Path | None = None,
                    public: list[str] | None = None) -> Path:
    """Compile the Verilog for ``sim`` once; returns the build directory.

    The directory (under ``build_parent``, default the first source's folder) is keyed by
    the sources' names and contents (:func:`sources_key`), the simulator, the top and the
    waves flag; a ``.built`` stamp marks a finished build, so reruns skip the compiler
    entirely.  Concurrent callers (pytest -n) serialise on a lock file.

    ``public`` (Verilator only): make only these signals of ``toplevel`` visible to cocotb
    instead of cocotb's blanket ``--public-flat-rw``.  Every public signal may be written
    through VPI, so Verilator re-evaluates all logic downstream of one on every eval; with
    only the top's ports public, long runs are several times faster (the testbench then
    sees nothing inside the design).
    """
    from cocotb_tools.runner import get_runner

    sources = [Path(v) for v in ([verilog] if isinstance(verilog, (str, Path)) else verilog)]
    tools.find_simulator(sim)
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise SimulationError(f"Verilog source(s) not found: {', '.join(missing)}", kind="build")
    public = list(public) if public is not None and sim == "verilator" else None
    key = sources_key(sources, sim, str(waves), toplevel,
                      *(["public"] + public if public is not None else []))
    parent = Path(build_parent) if build_parent is not None else sources[0].parent
    bdir = parent / f"{sim}-{key}"
    stamp = bdir / ".built"
    with _locked(parent / f".{sim}-{key}.lock"):
        if stamp.exists():
            return bdir
        log = bdir.parent / f"{bdir.name}.build.log"
        bdir.mkdir(parents=True, exist_ok=True)
        build_args = list(VERILATOR_ARGS) if sim == "verilator" else []
        build_sources = list(sources)
        if public is not None:
            build_sources.append(_public_config(bdir, toplevel, public))
        with tools.simulator_environment(), _outside_pytest():
            runner = get_runner(sim)
            if public is not None:
                _drop_public_flat_rw(runner)
            t0 = time.monotonic()
            try:
                runner.build(sources=build_sources, hdl_toplevel=toplevel, build_dir=bdir,
                             build_args=build_args, timescale=TIMESCALE, waves=waves,
                             always=True, verbose=verbose,
                             log_file=None if verbose else log)
            except (Exception, SystemExit) as exc:
                raise SimulationError(f"{sim} build of {toplevel} failed ({exc}); log "
                                      f"{log}:\n{_tail(log)}", kind="build") from None
        stamp.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1),
                                     "sources": [str(s) for s in sources]}))
    return bdir


def _public_config(bdir: Path, toplevel: str, names: list[str]) -> Path:
    """A Verilator control file making ``names`` of ``toplevel`` public (read/write)."""
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{toplevel}" -var "{n}"' for n in names]
    path = bdir / "public.vlt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _drop_public_flat_rw(runner) -> None:
    """Remove ``--public-flat-rw`` from the cocotb Verilator runner's build command."""
    build_command = runner._build_command

    def without_public():
        cmds = build_command()
        return [[a for a in cmd if a != "--public-flat-rw"] for cmd in cmds]
    runner._build_command = without_public


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    if not results_xml.is_file():
        raise SimulationError(f"simulation terminated abnormally: {results_xml} not written",
                              kind="crash")
    tests, failed = 0, []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            failed.append(f"{case.get('name')}: {bad.get('message') or bad.text or 'failed'}")
    return tests, failed


def run_testbench(component, cfg: AcceleratorConfig, unit: str, test_module: str, *,
                  sim: str = "verilator", params: dict | None = None, waves: bool = False,
                  seed: int | None = None, toplevel: str | None = None,
                  testcase: str | None = None, verbose: bool = False) -> dict:
    """Generate Verilog, build (cached), run ``test_module``'s cocotb tests; return metrics.

    ``params`` (JSON-serialisable) reach the testbench through :func:`tb_params`; the config
    through :func:`tb_config`.  Returns the dict the testbench passed to
    :func:`write_metrics` (empty if none), plus ``simulator``, ``simulator_version``,
    ``wall_s``, ``build_dir``, ``run_dir``, ``waves`` (path or None).  Raises
    :class:`SimulationError` when any cocotb test fails.
    """
    toplevel = toplevel or unit
    vfile = generate_verilog(component, cfg, unit, toplevel=toplevel)
    bdir = build_simulator(vfile, toplevel, sim=sim, waves=waves, verbose=verbose)
    return run_built(bdir, cfg, unit, test_module, sim=sim, params=params, waves=waves,
                     seed=seed, toplevel=toplevel, testcase=testcase, verbose=verbose)


def run_built(bdir: Path, cfg: AcceleratorConfig, unit: str, test_module: str, *,
              sim: str = "verilator", params: dict | None = None, waves: bool = False,
              seed: int | None = None, toplevel: str | None = None,
              testcase: str | None = None, verbose: bool = False,
              plusargs: list[str] | None = None) -> dict:
    """Run ``test_module``'s cocotb tests on a simulator built by :func:`build_simulator`
    (``bdir``, with top ``toplevel``, default ``unit``); the run directory goes under
    ``build/<cfg.digest>/<unit>/runs/`` (the simulator's working directory).  ``plusargs``
    (e.g. ``["+SIM_MEM_INIT=/path/image.hex"]``) go to the simulator's command line.
    Returns and raises as :func:`run_testbench`."""
    from cocotb_tools.runner import get_runner

    toplevel = toplevel or unit
    run_dir = unit_dir(cfg, unit) / "runs" / f"{sim}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    pfile, cfile, mfile = run_dir / "params.json", run_dir / "config.pkl", run_dir / "metrics.json"
    pfile.write_text(json.dumps(params or {}))
    cfile.write_bytes(pickle.dumps(cfg))
    env = {ENV_PARAMS: str(pfile), ENV_CONFIG: str(cfile), ENV_METRICS: str(mfile),
           ENV_SIM: sim}
    env.setdefault("COCOTB_LOG_LEVEL", os.environ.get("COCOTB_LOG_LEVEL", "WARNING"))
    # Icarus dumps into the build folder unless told otherwise: keep each run's own waves
    plusargs = list(plusargs or []) + ([f"+dumpfile_path={run_dir / (toplevel + '.fst')}"]
                                       if waves and sim == "icarus" else [])
    log = run_dir / "sim.log"
    results = run_dir / "results.xml"
    t0 = time.monotonic()
    with tools.simulator_environment(), _outside_pytest():
        runner = get_runner(sim)
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel,
                        hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=run_dir,
                        results_xml=str(results), extra_env=env, waves=waves, seed=seed,
                        testcase=testcase, timescale=TIMESCALE, verbose=verbose,
                        log_file=None if verbose else log, plusargs=plusargs)
        except SystemExit as exc:
            if not results.is_file():
                raise SimulationError(f"{sim} simulation of {unit} exited with {exc.code}; "
                                      f"log {log}:\n{_tail(log)}", kind="crash") from None
    wall = time.monotonic() - t0
    tests, failed = _failures(results)
    if tests == 0:
        raise SimulationError(f"no cocotb tests ran from {test_module} (testcase={testcase!r}); "
                              f"log {log}:\n{_tail(log)}", kind="crash")
    if failed:
        err = SimulationError(f"{len(failed)} of {tests} cocotb tests failed for {unit} on "
                              f"{sim}:\n  " + "\n  ".join(failed) + f"\n(full log: {log})")
        err.metrics = json.loads(mfile.read_text()) if mfile.exists() else {}
        err.metrics.update(simulator=sim, unit=unit, run_dir=str(run_dir))
        raise err
    metrics = json.loads(mfile.read_text()) if mfile.exists() else {}
    wave_file = None
    if waves:
        found = sorted(run_dir.glob("*.vcd")) + sorted(run_dir.glob("*.fst"))
        wave_file = str(found[0]) if found else None
    metrics.update(simulator=sim, simulator_version=tools.simulator_version(sim),
                   wall_s=round(wall, 2), build_dir=str(bdir), run_dir=str(run_dir),
                   waves=wave_file, unit=unit, config=cfg.name, config_digest=cfg.digest)
    return metrics


# ---------------------------------------------------------------------------- TB side
def tb_params() -> dict:
    """Parameters passed to :func:`run_testbench` (inside the simulator process)."""
    path = os.environ.get(ENV_PARAMS)
    return json.loads(Path(path).read_text()) if path else {}


def tb_config() -> AcceleratorConfig:
    """The AcceleratorConfig the design was built from (inside the simulator process)."""
    return pickle.loads(Path(os.environ[ENV_CONFIG]).read_bytes())


def tb_simulator() -> str:
    return os.environ.get(ENV_SIM, "verilator")


def write_metrics(metrics: dict) -> None:
    """Record testbench measurements; merged across the tests of one run."""
    path = os.environ.get(ENV_METRICS)
    if not path:
        return
    p = Path(path)
    old = json.loads(p.read_text()) if p.exists() else {}
    old.update(metrics)
    p.write_text(json.dumps(old, indent=1, default=_jsonable))


def _jsonable(o):
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

