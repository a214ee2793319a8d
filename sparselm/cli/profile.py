"""``sparselm profile``: the command-line face of :func:`sparselm.profiling.run.profile`."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

from sparselm.bal.registry import resolve
from sparselm.cli.common import (EXIT_OK, EXIT_USAGE, HelpFormatter, add_input_argument, add_option, error,
                                 one_line_errors, positive_int)
from sparselm.linalg.cholmod import ORDERINGS
from sparselm.profiling.plots import PlotError, require_matplotlib, write_plots
from sparselm.profiling.run import DEFAULT_ITERATIONS, DEFAULT_ORDERINGS, profile
from sparselm.util.atomic import atomic_write


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

def register(subparsers) -> None:
    """Add the ``profile`` command."""
    p = subparsers.add_parser("profile", formatter_class=HelpFormatter, help="profile a solve: sparsity, "
                              "fill-in, orderings, time per phase, JIT, memory, BLAS",
                              description=PROFILE_DESCRIPTION, epilog=PROFILE_EPILOG)
    add_input_argument(p)
    add_option(p, "linear_solver", help="linear solver; 'auto' picks as 'sparselm solve' does")
    p.add_argument("--iterations", type=positive_int, default=DEFAULT_ITERATIONS, metavar="N",
                   help="at most N LM iterations (the solve may converge before)")
    p.add_argument("--orderings", type=_ordering_list, default=",".join(DEFAULT_ORDERINGS),
                   metavar="LIST", help="comma-separated CHOLMOD orderings to compare (unavailable ones are "
                                        "reported as such)")
    add_option(p, "ordering", help="the ordering the solver uses")
    add_option(p, "factorization")
    add_option(p, "threads", type=positive_int, metavar="N")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (convergence, phases, sparsity, "
                                                  "reprojection) into DIR (needs matplotlib)")
    p.add_argument("--json", metavar="FILE", help="write the profile as JSON to FILE ('-': stdout, and no text report)")
    p.add_argument("--no-jit", action="store_true", help="do not measure the first-call (JIT) overhead "
                                                         "(saves two one-iteration solves)")
    p.add_argument("--cold-jit", action="store_true", help="also time compiling the kernels from an empty numba "
                                                           "cache, in a subprocess")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the text report")
    p.set_defaults(func=cmd_profile)
    one_line_errors(p)


def cmd_profile(args) -> int:
    """``sparselm profile``: print the report; optionally write JSON and plots."""
    if args.plots:
        try:
            require_matplotlib()  # fail before the solve, not after
        except PlotError as e:
            error(str(e))
            return EXIT_USAGE
        if os.path.exists(args.plots) and not os.path.isdir(args.plots):
            raise ValueError(f"--plots {args.plots}: exists and is not a directory")
    if args.json and args.json != "-":
        parent = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(parent):
            raise ValueError(f"--json {args.json}: the folder {parent} does not exist")
        if os.path.isdir(args.json):
            raise ValueError(f"--json {args.json}: is a directory")
    if args.problem is not None:
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
        written += [str(p) for p in write_plots(prof, prof.summary, prof.problem_object, args.plots)]
    if written:
        print("sparselm: wrote " + ", ".join(written), file=sys.stderr)
    return EXIT_OK
