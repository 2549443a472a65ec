"""Atomic outputs: every file and folder the command line writes goes through here.

- :func:`check_output_dir` / :func:`check_output_file` reject a bad output path (empty, an
  existing file where a folder is wanted or the reverse, a path under a file, a place that
  cannot be written) *before* any work is done, with :class:`OutputPathError`.
- :func:`atomic_dir` stages a folder's files in a hidden temporary folder beside it and moves
  them in only when the ``with`` block succeeds; :func:`atomic_file` and :func:`write_text`
  do the same for one file.  A failed run leaves nothing partial behind and never clobbers
  an earlier result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from moevit.errors import MoevitError

__all__ = ["OutputPathError", "check_output_dir", "check_output_file", "atomic_dir",
           "atomic_file", "write_text", "describe_path"]


class OutputPathError(MoevitError, ValueError):
    """An output path that cannot be written (checked before the work starts)."""


def describe_path(path: Path) -> str:
    """What is at ``path``, as a predicate: "does not exist", "is a folder", "is a file",
    "is a broken symbolic link", "is a special file (device, socket or pipe)"."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link"
    if path.is_dir():
        return "is a folder"
    if path.is_file():
        return "is a file"
    if path.exists():
        return "is a special file (device, socket or pipe)"
    return "does not exist"


def _nonempty(path, option: str) -> Path:
    if path is None or str(path).strip() == "":
        raise OutputPathError(f"{option} is empty; pass a path (e.g. {option} runs/out)")
    return Path(path)


def _check_parent(path: Path, option: str, kind: str, start: Path | None = None) -> None:
    """The nearest existing one of ``start`` (default ``path.parent``) and its ancestors is a
    writable folder (``path`` is only named in the messages)."""
    anc = start if start is not None else path.parent
    while not anc.exists() and not anc.is_symlink():
        anc = anc.parent
    if not anc.is_dir():
        raise OutputPathError(
            f"{option} {str(path)!r}: {str(anc)!r} {describe_path(anc)}, not a folder, so "
            f"the {kind} cannot be created under it; choose a path inside a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {str(path)!r}: folder {str(anc)!r} is not writable; "
                              f"choose a {kind} path you can write to")
    try:  # access() is not enough under root or on read-only/pseudo file systems
        fd, probe = tempfile.mkstemp(prefix=".moevit-probe-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{option} {str(path)!r}: cannot write in {str(anc)!r} "
                              f"({exc.strerror or exc}); choose a {kind} path you can write "
                              f"to") from None


def check_output_dir(path, option: str = "--out") -> Path:
    """``path`` can be written as an output folder: raise :class:`OutputPathError` if not."""
    p = _nonempty(path, option)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{option} {str(p)!r} {describe_path(p)}, expected a folder "
                              f"(new or existing); remove it or choose another path")
    # an existing folder must itself be writable; a new one needs a writable ancestor
    _check_parent(p, option, "folder", start=p if p.is_dir() else p.parent)
    return p


def check_output_file(path, option: str = "--json") -> Path:
    """``path`` can be written as an output file: raise :class:`OutputPathError` if not."""
    p = _nonempty(path, option)
    if p.is_dir():
        raise OutputPathError(f"{option} {str(p)!r} is a folder, expected a file name; "
                              f"e.g. {option} {str(p / 'summary.json')!r}")
    if p.exists() and not p.is_file():
        raise OutputPathError(f"{option} {str(p)!r} {describe_path(p)}, expected a regular "
                              f"file; choose another path")
    _check_parent(p, option, "file")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, exc: OSError) -> OutputPathError:
    return OutputPathError(f"cannot write {str(path)!r} ({exc.strerror or exc}); check the "
                           f"space and permissions there, or choose another output path")


@contextmanager
def atomic_dir(path, option: str = "--out") -> Iterator[Path]:
    """Yield a staging folder; on success move its files into ``path`` (created if needed).

    Files already in ``path`` that this run does not write are kept; those it writes are
    replaced one by one with :func:`os.replace`.  On error the staging folder is removed and
    ``path`` is untouched.
    """
    final = check_output_dir(path, option)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; the result gets normal rights
    try:
        yield stage
        if not final.exists():
            os.rename(stage, final)
            return
        for item in sorted(stage.iterdir()):
            dest = final / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(item, dest)
    except OSError as exc:
        raise _write_error(final, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def atomic_file(path, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds."""
    final = check_output_file(path, option)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise _write_error(final, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str, option: str = "--out") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_file(path, option) as tmp:
        tmp.write_text(text)
    return Path(path)
