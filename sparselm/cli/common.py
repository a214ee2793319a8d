"""What every ``sparselm`` command shares: exit codes, the one-line error, the help formatter,
argument types, and loading the input (a file in a registered format, an official problem name, or
the built-in synthetic problem) and checking output paths."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional, TextIO, Tuple

import numpy as np

from sparselm.bal import registry
from sparselm.bal.io import BALFormatError
from sparselm.bal.synthetic import default_problem
from sparselm.core.evaluator import NonFiniteError
from sparselm.formats import FORMATS, InputFormat, detect_format
from sparselm.lm.memory import InsufficientMemoryError
from sparselm.lm.options import option_choices, option_default, option_help

EXIT_OK = 0
EXIT_FAILURE = 1  # the solver failed (solve); a warning under --strict (doctor)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
BUILT_IN = "built-in"
BUILT_IN_FORMAT = "bal"  # the format of the built-in synthetic problem
INPUT_HELP = "BAL file or official problem name (omit for the built-in synthetic problem)"


class CLIError(Exception):
    """A user error detected by the command line itself (reported as one line, exit 2)."""


#: exception types reported as ``sparselm: error: <message>`` with exit status 2.
USER_ERRORS = (CLIError, BALFormatError, registry.DatasetNotFoundError, registry.ChecksumError, OSError, ValueError,
               NonFiniteError, InsufficientMemoryError)


def one_line(exc: BaseException) -> str:
    """A one-line message for an exception (OSError as 'path: reason')."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            text = str(exc.args[0])
    return " ".join(text.split())


def error(message: str, stream: Optional[TextIO] = None) -> None:
    """Print ``sparselm: error: <message>`` (one line) on stderr."""
    print(f"sparselm: error: {' '.join(str(message).split())}", file=stream or sys.stderr, flush=True)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the descriptions' line breaks; show defaults where they are set."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and action.default not in (None, False, argparse.SUPPRESS) \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Report usage errors of ``parser`` as one line on stderr (exit status 2), not usage + message."""
    def fail(message: str):
        print(f"{parser.prog}: error: {' '.join(message.split())} (see '{parser.prog} --help')", file=sys.stderr,
              flush=True)
        raise SystemExit(EXIT_USAGE)

    parser.error = fail  # type: ignore[method-assign]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def usage(parser: argparse.ArgumentParser) -> int:
    """Print the help of ``parser`` on stderr; the usage exit status."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def isatty(stream) -> bool:
    """Whether ``stream`` is a terminal (False for anything without a working isatty)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def json_clean(value):
    """Plain JSON data: non-finite floats as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# -- input and outputs ------------------------------------------------------------------------------

def load_input(name: Optional[str]) -> Tuple[InputFormat, Any, str]:
    """(format, its data, input description): the resolved file read in its detected format, or the
    built-in synthetic problem (a BAL problem) for None."""
    if name is None:
        return FORMATS[BUILT_IN_FORMAT], default_problem(), BUILT_IN
    path = registry.resolve(name)
    fmt = detect_format(path)
    return fmt, fmt.read(path), os.path.abspath(path)


def sizes_text(sizes: dict, count_first: bool = False) -> str:
    """'cameras 16, points 2000, observations 8000' (or '16 cameras, ...' with ``count_first``)."""
    return ", ".join(f"{v} {k}" if count_first else f"{k} {v}" for k, v in sizes.items())


def same_file(a, b) -> bool:
    """Whether two paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_output(kind: str, path: Optional[str], input_path: str, force: bool) -> Optional[Path]:
    """Refuse an output that would overwrite the input (unless force) or cannot be created."""
    if path is None:
        return None
    out = Path(path).expanduser()
    if input_path != BUILT_IN and same_file(out, input_path) and not force:
        raise CLIError(f"refusing to write the {kind} over the input file {out} (pass --force to allow it)")
    if out.is_dir():
        raise CLIError(f"{kind} {out} is a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write the {kind} {out}: the folder {parent} does not exist")
    return out


def add_input_argument(parser: argparse.ArgumentParser) -> None:
    """The optional FILE_OR_NAME positional argument of solve, info and profile."""
    parser.add_argument("problem", nargs="?", metavar="FILE_OR_NAME", help=INPUT_HELP)


def add_option(parser, name: str, flag: Optional[str] = None, help: Optional[str] = None, **kwargs) -> None:
    """An option for SolverOptions field ``name`` (``--max-iterations`` for max_iterations): its default,
    choices and help text come from :class:`~sparselm.SolverOptions`; ``kwargs`` (metavar, type) as argparse's."""
    default = option_default(name)
    if option_choices(name) is not None:
        kwargs.setdefault("choices", option_choices(name))
    elif "type" not in kwargs:
        kwargs["type"] = int if default is None else type(default)
    parser.add_argument(flag or "--" + name.replace("_", "-"), dest=name, default=default,
                        help=help or option_help(name), **kwargs)
