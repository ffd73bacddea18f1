"""The command line: ``python -m grubench [COMMAND] [options]`` (also the ``grubench``
script). With no command (or only options) it runs ``run``, whose default suite is
``default``: ``python -m grubench`` == ``python -m grubench run --suite default``.

Adding a command (the hook other modules plug into)
---------------------------------------------------
Append the module's import path to :data:`COMMAND_MODULES`. The module defines::

    def add_subcommand(subparsers):
        parser = subparsers.add_parser("name", help="...", description="...")
        parser.add_argument(...)
        parser.set_defaults(handler=handle)      # handle(args) -> exit code (int)

Keep the module cheap to import (import numpy/torch inside ``handle``) so ``--help``
stays fast. A user's mistake raises :class:`UsageError` (or ValueError from validation):
:func:`main` prints ``grubench: error: <message>`` and exits 2, with no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that each add one or more subcommands (see the module docstring).
COMMAND_MODULES = [
    "grubench.commands",
    "grubench.regress",
    "grubench.training.cli",
    "grubench.history.cli",
    "grubench.compare",
    "grubench.tune",
    "grubench.modelbench",
]

DEFAULT_COMMAND = "run"


class UsageError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming it and where help is, not the usage
    block first (subcommands' parsers are of this class too)."""

    def error(self, message: str):
        self.exit(2, f"grubench: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="grubench",
        description="How fast, how lean and how exact is a GRU (and an LSTM) on this "
                    "machine. Without a command: run --suite default.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_subcommand(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_COMMAND)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, PermissionError, NotADirectoryError, FileNotFoundError) as error:
        print(f"grubench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grubench: interrupted", file=sys.stderr)
        return 130
