"""The ``moevit`` command line.  Each subcommand lives beside the code it drives and
exposes ``register(subparsers)``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from moevit.errors import MoevitError

#: subcommand modules, in help order; each defines register(subparsers)
SUBCOMMAND_MODULES = [
    "moevit.golden.cli",       # moevit golden, moevit demo
    "moevit.golden.report.compare",   # moevit compare
    "moevit.sim.cli",          # moevit sim UNIT
    "moevit.host.cli",         # moevit run, moevit regmap
    "moevit.hw.perf.cli",      # moevit bench compare
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moevit",
        description="Co-design toolkit for multi-task MoE vision transformers on FPGAs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod_name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:  # subcommand not built in this checkout
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MoevitError as exc:
        print(f"moevit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
