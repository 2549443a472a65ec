"""Helpers of the command-line tests (see conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, module: str = "moevit.cli", timeout: float = 300, cwd=None):
    """``python -m moevit.cli ARGS`` (or another ``module``); returns the CompletedProcess."""
    env = dict(os.environ, PYTHONWARNINGS="default", COLUMNS="200")
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO, env=env)


def assert_usage_error(proc, pattern: str, prog: str | None = None) -> str:
    """Exit 2, no traceback, nothing on stdout, and exactly one error line on stderr whose
    message (after ``prog: error:``) matches ``pattern`` (re.search).  Returns that line."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w .-]+: error: ", ln)]
    assert len(errors) == 1 and lines[-1] == errors[0], f"want one error line, got:\n{err}"
    if prog is not None:
        assert errors[0].startswith(f"{prog}: error: "), errors[0]
    msg = errors[0].split(": error: ", 1)[1]
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg


def assert_nothing_left(folder: Path, before: set | None = None) -> None:
    """No staging leftovers (``.name.*.tmp``) and nothing new in ``folder``."""
    now = {p.name for p in folder.iterdir()}
    assert not [n for n in now if n.endswith(".tmp")], now
    if before is not None:
        assert now == before, now - before
