"""Compile small C++ programs against the Xilinx ``ap_fixed`` headers that hls4ml ships.

The headers live in ``<site-packages>/hls4ml/templates/vivado/ap_types``; they are located
through :mod:`importlib` without importing hls4ml itself (which pulls in heavy frameworks).
Builds are cached under ``build/cxx/<hash>/`` where the hash covers the source texts, the
files named in ``depends`` (headers), the compiler, the defines, include directories and
flags, so a second call is a file lookup.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

from moevit.errors import ToolNotFoundError
from moevit.tools import build_root

__all__ = ["ap_types_include", "compile_cxx", "find_gxx", "CompileError"]

_INSTALL_HINT_GXX = "install it with `sudo apt-get install g++` (or set CXX to a C++17 compiler)"
_INSTALL_HINT_HLS4ML = "install it with `.venv/bin/pip install hls4ml==1.3.0` (`make setup` does this)"


class CompileError(RuntimeError):
    """g++ rejected a source; the message carries the compiler's output."""


def ap_types_include() -> Path:
    """Folder holding ``ap_fixed.h``/``ap_int.h`` as shipped by hls4ml.

    Raises ToolNotFoundError when hls4ml is not installed or ships no ap_types.
    """
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise ToolNotFoundError(
            f"the ap_fixed headers come with the Python package hls4ml, which is not installed: "
            f"{_INSTALL_HINT_HLS4ML}")
    for loc in spec.submodule_search_locations:
        inc = Path(loc) / "templates" / "vivado" / "ap_types"
        if (inc / "ap_fixed.h").is_file():
            return inc
    raise ToolNotFoundError(
        f"hls4ml is installed at {list(spec.submodule_search_locations)} but has no "
        f"templates/vivado/ap_types/ap_fixed.h; reinstall it: {_INSTALL_HINT_HLS4ML}")


def find_gxx() -> str:
    """Path of the C++ compiler (``$CXX`` or ``g++``); ToolNotFoundError when absent."""
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise ToolNotFoundError(f"C++ compiler {cxx!r} not found on PATH: {_INSTALL_HINT_GXX}")
    return path


@lru_cache(maxsize=None)
def _compiler_id(gxx: str) -> str:
    try:
        out = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else gxx
    except (OSError, subprocess.SubprocessError):
        return gxx


def compile_cxx(name: str, sources: Iterable[str | os.PathLike], *,
                defines: Mapping[str, object] | None = None,
                include_dirs: Iterable[str | os.PathLike] = (),
                flags: Iterable[str] = ("-O2",),
                depends: Iterable[str | os.PathLike] = ()) -> Path:
    """Compile ``sources`` into an executable named ``name`` and return its path.

    The ap_types folder is always on the include path (first user dirs, then ap_types).
    ``defines`` become ``-DKEY=VALUE`` (``None`` value: ``-DKEY``). The result is cached in
    ``build/cxx/<hash>/name``; the hash covers the bytes of every source and of every file in
    ``depends`` (the headers the sources include: g++ does not report them, so list them
    here), the compiler version, defines, include dirs (paths only) and flags. Raises
    ToolNotFoundError (no g++ or no headers), FileNotFoundError (a source or dependency is
    missing) or CompileError (g++ failed).
    """
    gxx = find_gxx()
    ap_inc = ap_types_include()
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise ValueError("compile_cxx needs at least one source file")
    for s in srcs:
        if not s.is_file():
            raise FileNotFoundError(f"C++ source {s} does not exist")
    deps = [Path(d).resolve() for d in depends]
    for d in deps:
        if not d.is_file():
            raise FileNotFoundError(f"C++ dependency {d} does not exist")
    incs = [Path(d).resolve() for d in include_dirs] + [ap_inc]
    dflags = []
    for k, v in sorted((defines or {}).items()):
        dflags.append(f"-D{k}" if v is None else f"-D{k}={v}")
    flags = list(flags)

    h = hashlib.sha256()
    h.update(_compiler_id(gxx).encode())
    for group in (srcs, deps):
        for s in group:
            h.update(str(s).encode() + b"\0" + s.read_bytes() + b"\0")
        h.update(b"\2")
    for part in (dflags, [str(i) for i in incs], flags, [name]):
        h.update("\0".join(part).encode() + b"\1")
    digest = h.hexdigest()[:16]

    outdir = build_root() / "cxx" / digest
    exe = outdir / name
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    outdir.mkdir(parents=True, exist_ok=True)
    # Build to a temporary name and rename, so concurrent callers never see a partial binary.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=outdir)
    os.close(fd)
    cmd = [gxx, "-std=c++17", *flags, *dflags, *[f"-I{i}" for i in incs],
           *[str(s) for s in srcs], "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise CompileError(
            f"g++ failed ({proc.returncode}) building {name} from {[str(s) for s in srcs]}:\n"
            f"{' '.join(cmd)}\n{proc.stderr[-4000:]}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, exe)
    (outdir / "command.txt").write_text(" ".join(cmd) + "\n")
    return exe
