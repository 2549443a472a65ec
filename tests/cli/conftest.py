"""Drive the real command line in a subprocess and check what a user sees.

The helpers live in ``cli_helpers.py`` beside this file (put on ``sys.path`` here, since the
suite runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
