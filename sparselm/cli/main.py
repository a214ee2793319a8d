"""The entry point of the ``sparselm`` command (``[project.scripts]``): parse, dispatch to the
command's handler, turn input errors into one line and an exit status (see :mod:`sparselm.cli`)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import sparselm
from sparselm.cli import datasets, doctor, info, profile, solve
from sparselm.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, USER_ERRORS, HelpFormatter, error, one_line

#: the command modules, in the order of ``sparselm --help``; each has ``register(subparsers)``.
COMMANDS = (solve, info, datasets, profile, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparselm`` with the sub-commands of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="sparselm", formatter_class=HelpFormatter,
        description="Sparse Levenberg-Marquardt for bundle adjustment (BAL problems).",
        epilog="Run 'sparselm COMMAND --help' for the options of a command. With no file, "
               "'sparselm solve' solves a small built-in synthetic problem.")
    parser.add_argument("--version", action="version", version=f"sparselm {sparselm.__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an input error instead of the one-line message")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser



def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``sparselm`` command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed by argparse
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.argv = argv
    traceback = args.traceback or os.environ.get("SPARSELM_TRACEBACK") == "1"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\nsparselm: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # pragma: no cover - e.g. `sparselm datasets list | head`
        _silence_stdout()
        return EXIT_OK
    except USER_ERRORS as exc:
        if traceback:
            raise
        error(one_line(exc))
        return EXIT_USAGE


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
