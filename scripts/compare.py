#!/usr/bin/env python
"""`make compare`: the same as `moevit bench compare` (see moevit.hw.perf.cli)."""

import sys

from moevit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "compare", *sys.argv[1:]]))
