"""``sparselm profile`` and ``sparselm doctor``: the command-line face of :mod:`sparselm.profile`
and :mod:`sparselm.diagnostics`.

``sparselm.cli`` calls :func:`register` with its argparse sub-parsers; each command sets
``func=handler`` with ``handler(args) -> int`` (the exit status). Input errors (unknown file or
dataset, bad option values) are raised as ValueError / OSError / DatasetNotFoundError, which the
main command line reports as one line ``sparselm: error: <message>`` with exit status 2. Run
standalone, :func:`main` does the same::

    python -m sparselm.profile_cli profile problem-16-22106-pre --plots plots/ --json profile.json
    python -m sparselm.profile_cli doctor
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_USAGE = 2

from sparselm.cli import HelpFormatter as _Formatter  # noqa: E402  (one formatter for all commands)
from sparselm.linalg.cholmod import MODES, ORDERINGS  # noqa: E402
from sparselm.options import LINEAR_SOLVERS  # noqa: E402


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _ordering_list(text: str) -> List[str]:
    names = [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one ordering")
    bad = [n for n in names if n not in ORDERINGS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown ordering(s) {', '.join(bad)}; choose from {', '.join(ORDERINGS)}")
    return names


PROFILE_DESCRIPTION = """\
Solve a problem for a few Levenberg-Marquardt iterations and report where the time and memory go:

  * sizes and sparsity: nnz of J, of lower(H) = lower(J^T J) and of the reduced camera matrix
    lower(S) when the points are eliminated (Schur complement);
  * the Cholesky factor CHOLMOD computes of S (or of H): nnz(L), fill-in nnz(L)/nnz(lower S),
    flops, supernodal or simplicial, ordering + symbolic analysis time, numeric factorization time,
    and the same for each ordering of --orderings (the best is the one with the least fill);
  * the camera co-visibility graph (cameras that see a common point), its degree statistics;
  * time per phase per iteration (residual, jacobian, assembly, schur_complement, factorization,
    solve, back_substitution, ...) with model flop counts, and the JIT (first-call) cost measured
    separately; peak memory and the size of the big arrays; the BLAS CHOLMOD uses and the threads.

FILE_OR_NAME is a BAL file (plain or .bz2) or the name of an official problem (e.g.
problem-16-22106-pre) found under $SPARSELM_DATA or in the download cache. Without it, the
built-in synthetic problem (16 cameras, 2000 points) is profiled."""

PROFILE_EPILOG = """\
The ordering comparison runs on a matrix with exactly the sparsity pattern of lower(S) (or lower(H))
and positive-definite values: CHOLMOD's ordering, nnz(L) and factorization work depend on the
pattern only. JIT: the extra time of a first one-iteration solve over a second one in the same
process (numba compiling, or loading from its disk cache); --cold-jit also compiles the kernels in
a fresh process with an empty numba cache (tens of seconds).

Exit status: 0 done, 2 input or usage error (one line on stderr)."""

DOCTOR_DESCRIPTION = """\
Check the environment sparselm runs in: versions of Python, numpy, scipy, numba, llvmlite,
scikit-sparse, SuiteSparse/CHOLMOD and sparselm; the BLAS library CHOLMOD really loaded (read from
the process's memory map, with Debian's update-alternatives choice) and numpy's own BLAS, with
their thread counts; the CPU; numba's threads and threading layer; and whether numba's on-disk
cache holds sparselm's kernels for this CPU (if not, the first solve compiles them)."""

DOCTOR_EPILOG = """\
A warning is printed when CHOLMOD runs on the reference (netlib) BLAS, which makes its supernodal
factorization about 10x slower than OpenBLAS.

Exit status: 0 (also with warnings, unless --strict: then 1 when there is a warning)."""


def register(subparsers) -> None:
    """Add the ``profile`` and ``doctor`` commands to an argparse sub-parsers object."""
    p = subparsers.add_parser("profile", formatter_class=_Formatter, help="profile a solve: sparsity, "
                              "fill-in, orderings, time per phase, JIT, memory, BLAS",
                              description=PROFILE_DESCRIPTION, epilog=PROFILE_EPILOG)
    p.add_argument("problem", nargs="?", metavar="FILE_OR_NAME",
                   help="BAL file or official problem name (omit for the built-in synthetic problem)")
    p.add_argument("--linear-solver", choices=LINEAR_SOLVERS, default="auto",
                   help="linear solver; 'auto' picks as 'sparselm solve' does")
    p.add_argument("--iterations", type=_positive_int, default=10, metavar="N",
                   help="at most N LM iterations (the solve may converge before)")
    p.add_argument("--orderings", type=_ordering_list, default="amd,metis,nesdis,natural",
                   metavar="LIST", help="comma-separated CHOLMOD orderings to compare (unavailable ones are "
                                        "reported as such)")
    p.add_argument("--ordering", choices=ORDERINGS, default="amd", help="the ordering the solver uses")
    p.add_argument("--factorization", choices=MODES, default="supernodal", help="CHOLMOD factorization method")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="numba worker threads (default: all cores)")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (convergence, phases, sparsity, "
                                                  "reprojection) into DIR (needs matplotlib)")
    p.add_argument("--json", metavar="FILE", help="write the profile as JSON to FILE ('-': stdout, and no text report)")
    p.add_argument("--no-jit", action="store_true", help="do not measure the first-call (JIT) overhead "
                                                         "(saves two one-iteration solves)")
    p.add_argument("--cold-jit", action="store_true", help="also time compiling the kernels from an empty numba "
                                                           "cache, in a subprocess")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the text report")
    p.set_defaults(func=cmd_profile)
    _one_line_errors(p)

    d = subparsers.add_parser("doctor", formatter_class=_Formatter,
                              help="versions, BLAS in use, CPU, threads, numba cache",
                              description=DOCTOR_DESCRIPTION, epilog=DOCTOR_EPILOG)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--strict", action="store_true", help="exit with status 1 when there is a warning")
    d.set_defaults(func=cmd_doctor)
    _one_line_errors(d)


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Report usage errors of ``parser`` as one line on stderr (exit status 2), not usage + message."""
    def error(message: str):
        print(f"{parser.prog}: error: {' '.join(message.split())} (see '{parser.prog} --help')", file=sys.stderr,
              flush=True)
        raise SystemExit(EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]


def _error(message: str) -> int:
    print(f"sparselm: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def cmd_profile(args) -> int:
    """``sparselm profile``: print the report; optionally write JSON and plots."""
    from sparselm.atomic import atomic_write
    from sparselm.profile import profile

    if args.plots:
        from sparselm.profile_plots import PlotError, _matplotlib

        try:
            _matplotlib()  # fail before the solve, not after
        except PlotError as e:
            return _error(str(e))
        if os.path.exists(args.plots) and not os.path.isdir(args.plots):
            raise ValueError(f"--plots {args.plots}: exists and is not a directory")
    if args.json and args.json != "-":
        parent = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(parent):
            raise ValueError(f"--json {args.json}: the folder {parent} does not exist")
        if os.path.isdir(args.json):
            raise ValueError(f"--json {args.json}: is a directory")
    if args.problem is not None:
        from sparselm.bal.registry import resolve

        if resolve(args.problem).is_dir():
            raise ValueError(f"{args.problem} is a directory, not a BAL file")
    options = {"ordering": args.ordering, "factorization": args.factorization}
    if args.threads is not None:
        options["threads"] = args.threads
    prof = profile(args.problem, linear_solver=args.linear_solver, iterations=args.iterations,
                   orderings=tuple(args.orderings), jit=not args.no_jit, cold_jit=args.cold_jit, **options)
    if args.json == "-":
        print(prof.to_json(indent=1))
    elif not args.quiet:
        print(prof.report())
    written = []
    if args.json and args.json != "-":
        atomic_write(args.json, prof.to_json(indent=1) + "\n")
        written.append(args.json)
    if args.plots:
        from sparselm.profile_plots import write_plots

        written += [str(p) for p in write_plots(prof, prof.summary, prof.problem_object, args.plots)]
    if written:
        print("sparselm: wrote " + ", ".join(written), file=sys.stderr)
    return EXIT_OK


def cmd_doctor(args) -> int:
    """``sparselm doctor``: the environment report."""
    from sparselm import diagnostics

    report = diagnostics.doctor_report()
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(diagnostics.format_doctor(report))
    warnings = report["blas"].get("warnings") or []
    return EXIT_WARNINGS if (args.strict and warnings) else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these two commands (for running this module on its own)."""
    parser = argparse.ArgumentParser(prog="sparselm", formatter_class=_Formatter,
                                     description="sparselm profile and doctor")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    _one_line_errors(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``profile`` or ``doctor`` standalone; input errors: one line on stderr, exit 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from sparselm.bal.io import BALFormatError
    from sparselm.bal.registry import ChecksumError, DatasetNotFoundError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\nsparselm: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return 130
    except (ValueError, OSError, BALFormatError, DatasetNotFoundError, ChecksumError) as exc:
        text = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror and exc.filename \
            else str(exc) or type(exc).__name__
        return _error(text)


if __name__ == "__main__":
    sys.exit(main())
