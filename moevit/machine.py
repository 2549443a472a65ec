"""Describe the machine a benchmark ran on (recorded beside every result)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the best platform guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(**versions: str) -> dict:
    """CPU, cores, load average, platform, python, date, plus the given package versions."""
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return dict(cpu=cpu_model(), cores=os.cpu_count(), load_average=load,
                platform=platform.platform(), python=platform.python_version(), **versions,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
