"""The ``moevit`` command line.  Each subcommand lives beside the code it drives and
exposes ``register(subparsers)``; this module only assembles them.

Exit status: 0 success, 1 only where a subcommand says so (``moevit sim``: the hardware
disagreed with the golden model), 2 for every mistake on the command line or in the inputs,
reported on one line as ``moevit COMMAND: error: <problem>; <fix>`` without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from moevit.errors import MoevitError

#: subcommand modules, in help order; each defines register(subparsers)
SUBCOMMAND_MODULES = [
    "moevit.golden.cli",       # moevit golden, moevit demo
    "moevit.golden.report.compare",   # moevit compare
    "moevit.sim.cli",          # moevit sim UNIT
    "moevit.host.cli",         # moevit run, moevit regmap
    "moevit.hw.perf.cli",      # moevit bench compare
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``prog: error: msg (see prog --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------- option types
def int_at_least(low: int, what: str = "a whole number"):
    """argparse ``type=`` for integers >= ``low`` with a message naming the bound."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}; pass a "
                                             f"whole number >= {low}")
        return value
    parse.__name__ = f"int>={low}"
    return parse


#: seeds (numpy generators take any integer >= 0)
seed_int = int_at_least(0, "a seed (a whole number >= 0)")


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"{_PROG}: warning: {message}\n"


_PROG = "moevit"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    global _PROG
    parser = build_parser()
    args = parser.parse_args(argv)
    _PROG = f"moevit {args.command}"
    saved = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except MoevitError as exc:
        print(f"moevit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moevit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `moevit regmap | head`: the reader stopped, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.formatwarning = saved


if __name__ == "__main__":
    sys.exit(main())
