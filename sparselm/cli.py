"""The ``sparselm`` command line: solve BAL problems, inspect them, manage the official datasets.

Commands (each has ``--help``)::

    sparselm solve [FILE_OR_NAME] [options]   solve a BAL problem (no argument: the built-in one)
    sparselm info [FILE_OR_NAME] [--json]     sizes, track lengths, co-visibility, initial cost
    sparselm datasets list [--family F]       the official BAL problems and which are found locally
    sparselm datasets fetch NAME [--force]    download one into the cache (sha256 verified)

FILE_OR_NAME is a path (plain or .bz2) or the name of an official problem
(``problem-16-22106-pre``, optionally ``dubrovnik/problem-16-22106-pre``), looked for under the
folders of ``$SPARSELM_DATA`` and then in the download cache (``$SPARSELM_CACHE``, else
``~/.cache/sparselm``); see :func:`sparselm.bal.registry.resolve`. A folder is read as a COLMAP
sparse model (``cameras``, ``images``, ``points3D`` .bin or .txt) and bundle-adjusted by
:mod:`sparselm.colmap.cli` (``--output`` is then the folder to write the adjusted model to).

``sparselm solve`` prints a header (input, sizes, linear solver, threads), the per-iteration table
as the solve runs (by default, also when stdout is not a terminal; ``-q`` turns it off), then the
full report (``-q``: the one-line brief report). ``-v`` adds the thread/BLAS environment and all
options used. When the table is not shown on the terminal (``-q``, or stdout redirected) and stderr
is a terminal, a one-line progress (iteration, cost, elapsed time) is refreshed on stderr at most
every 2 s. ``--output`` writes the optimised problem as a BAL file (bzip2 when the name ends in
.bz2) and ``--report`` the JSON report below; both writes are atomic, and neither may name the
input file unless ``--force`` is given.

Exit status: 0 when the solve ended normally (converged, iteration or time limit, callback);
1 when the solver failed (the message is on stderr; outputs are still written with the best
point); 2 for a usage or input error (bad file, unknown dataset, invalid option, non-finite
residual at the start), reported as one line ``sparselm: error: <message>`` on stderr; 130 when
interrupted by Ctrl-C (during the solve the best point so far is still written to the outputs).
Set ``SPARSELM_TRACEBACK=1`` (or pass ``--traceback`` before the command) to see the traceback of
an input error instead.

Report JSON (``sparselm solve --report report.json``), a stable contract; ``schema_version`` is
bumped on any incompatible change. Costs are 1/2 sum of squared (whitened, loss-corrected)
residuals; times are seconds; NaN and infinity are written as null.

=========================  ==================================================================
key                        meaning
=========================  ==================================================================
``schema_version``         1
``sparselm_version``       version of the package that wrote the report
``command``                the arguments of the command line (list of strings)
``input``                  absolute path of the input file, or ``"built-in"``
``output``                 path of the solution written with ``--output``, or null
``problem``                sizes: ``cameras``, ``points``, ``observations``, ``parameters``,
                           ``free_parameters``, ``residuals``, ``parameter_groups``
                           {name: {blocks, block_size, constant_blocks, constant_coordinates,
                           eliminate}}, ``residual_groups`` {name: {blocks, residual_size, type,
                           loss}}
``initial_cost``           cost at the start
``final_cost``             cost at the returned (best) point
``initial_rms_px``         RMS reprojection error (pixels, unweighted) at the start
``final_rms_px``           the same at the returned point
``iterations``             list, one per LM iteration (iteration 0 is the initial evaluation):
                           ``iteration``, ``cost``, ``cost_change``, ``gradient_max_norm``,
                           ``step_norm``, ``tr_ratio``, ``tr_radius``,
                           ``linear_solver_iterations``, ``iteration_time_s``,
                           ``total_time_s``, ``step_is_successful``, ``step_is_valid``
``n_iterations``           LM iterations done (iteration 0 not counted)
``successful_steps``       accepted steps
``unsuccessful_steps``     rejected steps (invalid ones included)
``invalid_steps``          steps whose linear solve failed or whose model decrease was not positive
``termination``            ``convergence``, ``no_convergence`` (iteration/time limit),
                           ``user_success`` (callback), ``interrupted`` (Ctrl-C) or ``failure``
``message``                why the solver stopped, in words
``ok``                     true for convergence, no_convergence and user_success
``exit_status``            the exit status of the command (0, 1 or 130)
``total_time_s``           wall time of the solve, setup included
``setup_time_s``           structure and symbolic analysis
``phases``                 per-phase time table {phase: {``seconds``, ``calls``}} (jacobian,
                           gradient, assembly, schur_complement, factorization, solve, ...)
``linear_solver``          the linear solver's name and statistics (sizes, ordering, nnz)
``options_given``          the solver options as given (SolverOptions fields)
``options_used``           the options after resolution (``linear_solver`` 'auto' -> the one
                           chosen, ``threads`` None -> the number used)
``environment``            threads and BLAS settings of the run
=========================  ==================================================================

Extension hook: if a module ``sparselm.profile_cli`` exists, its ``register(subparsers)`` is
called with the argparse sub-parsers object; each command it adds must
``set_defaults(func=handler)`` with ``handler(args) -> int`` (the exit status). It may raise the
input errors listed above; :func:`main` reports them like its own.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, TextIO

import numpy as np

import sparselm
from sparselm.diagnostics import numba_cache_status
from sparselm.bal import registry
from sparselm.bal.io import BALFormatError, BALProblem, read_bal, write_bal
from sparselm.colmap import cli as colmap_cli
from sparselm.bal.problem import build_problem, reprojection_errors, solution_to_bal
from sparselm.options import DAMPINGS, LINEAR_SOLVERS, SolverOptions

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
REPORT_SCHEMA_VERSION = 1
PROGRESS_INTERVAL_S = 2.0
BUILT_IN = "built-in"

try:  # the orderings CHOLMOD knows (metis/nesdis need a METIS-enabled build)
    from sparselm.linalg.cholmod import ORDERINGS
except ImportError:  # pragma: no cover - only if that module moves
    ORDERINGS = ("amd", "metis", "nesdis", "natural", "colamd", "best", "default")

try:
    from sparselm.loss import LOSS_IDS

    LOSSES = tuple(LOSS_IDS)
except ImportError:  # pragma: no cover
    LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")


class CLIError(Exception):
    """A user error detected by the command line itself (reported as one line, exit 2)."""


def _user_errors() -> tuple:
    """Exception types reported as ``sparselm: error: <message>`` with exit status 2."""
    errors = [CLIError, BALFormatError, registry.DatasetNotFoundError, registry.ChecksumError, OSError, ValueError]
    try:
        from sparselm.evaluator import NonFiniteError

        errors.append(NonFiniteError)
    except ImportError:  # pragma: no cover
        pass
    from sparselm.memory import InsufficientMemoryError

    errors.append(InsufficientMemoryError)
    return tuple(errors)


def _one_line(exc: BaseException) -> str:
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


# -- argument parsing -------------------------------------------------------------------------------

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the descriptions' line breaks; show defaults where they are set."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and action.default not in (None, False, argparse.SUPPRESS) \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparselm`` with its sub-commands (and any from ``profile_cli``)."""
    parser = argparse.ArgumentParser(
        prog="sparselm", formatter_class=HelpFormatter,
        description="Sparse Levenberg-Marquardt for bundle adjustment (BAL problems).",
        epilog="Run 'sparselm COMMAND --help' for the options of a command. With no file, "
               "'sparselm solve' solves a small built-in synthetic problem.")
    parser.add_argument("--version", action="version", version=f"sparselm {sparselm.__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an input error instead of the one-line message")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_solve(subparsers)
    _add_info(subparsers)
    _add_datasets(subparsers)
    try:
        from sparselm import profile_cli
    except ImportError:
        profile_cli = None
    if profile_cli is not None:
        profile_cli.register(subparsers)
    return parser


def _add_solve(subparsers) -> None:
    p = subparsers.add_parser(
        "solve", formatter_class=HelpFormatter, help="solve a BAL bundle-adjustment problem",
        description="Solve a BAL bundle-adjustment problem with Levenberg-Marquardt; print the iteration\n"
                    "table as it runs and the report; optionally write the solution and a JSON report.\n\n"
                    "FILE_OR_NAME is a BAL file (plain text or .bz2) or the name of an official problem\n"
                    "(e.g. problem-16-22106-pre) found under $SPARSELM_DATA or in the download cache.\n"
                    "Without it, a built-in synthetic problem (16 cameras, 2000 points) is solved.",
        epilog="Exit status: 0 solved (converged or stopped by a limit), 1 solver failure, 2 input or\n"
               "usage error, 130 interrupted (Ctrl-C; the best point so far is still written).\n"
               "The --report JSON keys are documented in the sparselm.cli module docstring.")
    p.add_argument("problem", nargs="?", metavar="FILE_OR_NAME",
                   help="BAL file or official problem name (omit for the built-in synthetic problem)")
    g = p.add_argument_group("solver")
    g.add_argument("--linear-solver", choices=LINEAR_SOLVERS, default="auto",
                   help="linear solver for the damped normal equations; 'auto' picks a Schur solver for BA")
    g.add_argument("--max-iterations", type=int, default=50, metavar="N", help="iteration limit")
    g.add_argument("--max-time", type=float, default=None, metavar="S", help="time limit in seconds (default: none)")
    g.add_argument("--function-tolerance", type=float, default=1e-6, metavar="X",
                   help="stop when |cost change| <= X * cost")
    g.add_argument("--gradient-tolerance", type=float, default=1e-10, metavar="X",
                   help="stop when max |gradient| <= X")
    g.add_argument("--parameter-tolerance", type=float, default=1e-8, metavar="X",
                   help="stop when |step| <= X * (|x| + X)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="numba worker threads (default: all cores)")
    g.add_argument("--ordering", choices=ORDERINGS, default="amd", help="CHOLMOD fill-reducing ordering")
    g.add_argument("--damping", choices=DAMPINGS, default="marquardt",
                   help="LM damping: marquardt (scaled by diag(J^T J)), levenberg (identity) or gauss_newton")
    m = p.add_argument_group("model")
    m.add_argument("--fix-first-camera", action="store_true",
                   help="hold camera 0 constant (removes 6 of the 7 gauge degrees of freedom)")
    m.add_argument("--fix-intrinsics", action="store_true", help="hold f, k1, k2 constant in every camera")
    m.add_argument("--loss", choices=LOSSES, default="linear", help="robust loss on each observation")
    m.add_argument("--loss-scale", type=float, default=1.0, metavar="X",
                   help="scale of the robust loss, in pixels (the error where it starts to down-weight)")
    m.add_argument("--sigma", type=float, default=None, metavar="PX",
                   help="pixel standard deviation of every observation (default: 1, unweighted)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", metavar="FILE",
                   help="write the optimised problem in BAL format (bzip2 when FILE ends in .bz2)")
    o.add_argument("--report", metavar="FILE", help="write the solver report as JSON (keys: see sparselm.cli)")
    o.add_argument("--force", action="store_true", help="allow --output/--report to overwrite the input file")
    o.add_argument("--no-progress", action="store_true",
                   help="never print the progress line on stderr")
    verbosity = o.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="also print the thread/BLAS environment and all options used")
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="no header and no iteration table; print only the one-line brief report")
    p.set_defaults(func=cmd_solve)


def _add_info(subparsers) -> None:
    p = subparsers.add_parser(
        "info", formatter_class=HelpFormatter, help="describe a BAL problem (sizes, tracks, co-visibility, cost)",
        description="Describe a BAL problem without solving it: sizes (cameras, points, observations,\n"
                    "parameters, residuals), observations per camera and per point (track length),\n"
                    "the camera co-visibility graph (cameras sharing at least one point), and the\n"
                    "initial cost and RMS reprojection error.")
    p.add_argument("problem", nargs="?", metavar="FILE_OR_NAME",
                   help="BAL file or official problem name (omit for the built-in synthetic problem)")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_info)


def _add_datasets(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets", formatter_class=HelpFormatter, help="list or download the official BAL problems",
        description="The official problems of 'Bundle Adjustment in the Large'. Files are looked for\n"
                    "under $SPARSELM_DATA (searched recursively) and in the download cache\n"
                    "($SPARSELM_CACHE/bal, default ~/.cache/sparselm/bal).")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    lst = sub.add_parser("list", formatter_class=HelpFormatter, help="list the official problems",
                         description="List the official BAL problems: name, family, cameras, points, and\n"
                                     "whether the file is found locally ($SPARSELM_DATA or the cache).")
    lst.add_argument("--family", metavar="F", help="only this family (dubrovnik, ladybug, trafalgar, venice)")
    lst.add_argument("--paths", action="store_true", help="show the local path of each file found")
    lst.set_defaults(func=cmd_datasets_list)
    fetch = sub.add_parser("fetch", formatter_class=HelpFormatter, help="download a problem into the cache",
                           description="Download an official BAL problem into the cache, verify its sha256,\n"
                                       "and print where it is. An existing download is kept unless --force.")
    fetch.add_argument("name", metavar="NAME", help="problem name, e.g. problem-16-22106-pre")
    fetch.add_argument("--force", action="store_true", help="download again even if the file is in the cache")
    fetch.add_argument("--url", help="download from this URL instead (a mirror; file:// works too)")
    fetch.set_defaults(func=cmd_datasets_fetch)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


# -- loading ------------------------------------------------------------------------------------------

def load_problem(name: Optional[str]) -> tuple:
    """(BALProblem, input description): the resolved file, or the built-in problem for None."""
    if name is None:
        from sparselm.bal.synthetic import default_problem

        return default_problem(), BUILT_IN
    path = registry.resolve(name)
    if path.is_dir():
        raise CLIError(f"{path} is a directory, not a BAL file")
    return read_bal(path), os.path.abspath(path)


def _built_in_note(bal: BALProblem) -> str:
    return (f"no file given: solving the built-in synthetic problem ({bal.n_cameras} cameras, {bal.n_points} "
            f"points, {bal.n_observations} observations); give a BAL file or problem name to solve it instead")


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_output(kind: str, path: Optional[str], input_path: str, force: bool) -> Optional[Path]:
    """Refuse an output that would overwrite the input (unless force) or cannot be created."""
    if path is None:
        return None
    out = Path(path).expanduser()
    if input_path != BUILT_IN and _same_file(out, input_path) and not force:
        raise CLIError(f"refusing to write the {kind} over the input file {out} (pass --force to allow it)")
    if out.is_dir():
        raise CLIError(f"{kind} {out} is a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write the {kind} {out}: the folder {parent} does not exist")
    return out


# -- solve ----------------------------------------------------------------------------------------

class ProgressLine:
    """A callback that refreshes one progress line (iteration, cost, elapsed) at most every ``interval`` s.

    Returns False (never stops the solve). ``close()`` erases the line if one was printed.
    """

    def __init__(self, stream: TextIO, interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.clock = clock
        self.last = clock()
        self.width = 0

    def __call__(self, record) -> bool:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            text = (f"sparselm: iteration {record.iteration}, cost {record.cost:.6e}, "
                    f"{record.total_time_s:.1f} s elapsed")
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = max(self.width, len(text))
        return False

    def close(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _threads_in_use(requested: Optional[int]) -> int:
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    return limit if requested is None else max(1, min(requested, limit))


def _rms(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors * errors))) if errors.size else 0.0


def _json_clean(value):
    """Plain JSON data: non-finite floats as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def solver_options(args) -> SolverOptions:
    """SolverOptions from the parsed ``solve`` arguments (ValueError names a bad one)."""
    kwargs = dict(linear_solver=args.linear_solver, max_iterations=args.max_iterations,
                  function_tolerance=args.function_tolerance, gradient_tolerance=args.gradient_tolerance,
                  parameter_tolerance=args.parameter_tolerance, threads=args.threads, ordering=args.ordering,
                  damping=args.damping)
    if args.max_time is not None:
        kwargs["max_time_s"] = args.max_time
    return SolverOptions(**kwargs)


def report_dict(summary, *, bal: BALProblem, input_desc: str, output: Optional[Path], argv: List[str],
                initial_rms: float, final_rms: float, exit_status: int) -> dict:
    """The JSON report of a solve (keys: see the module docstring)."""
    d = summary.to_dict()
    problem = {"cameras": bal.n_cameras, "points": bal.n_points, "observations": bal.n_observations}
    problem.update(d.pop("problem", {}) or {})
    head = {"schema_version": REPORT_SCHEMA_VERSION, "sparselm_version": sparselm.__version__,
            "command": list(argv), "input": input_desc, "output": str(output) if output else None,
            "problem": problem, "initial_cost": d.pop("initial_cost"), "final_cost": d.pop("final_cost"),
            "initial_rms_px": initial_rms, "final_rms_px": final_rms, "termination": d.pop("termination"),
            "message": d.pop("message"), "ok": d.pop("ok"), "exit_status": exit_status}
    head.update(d)
    return _json_clean(head)


def cmd_solve(args) -> int:
    """``sparselm solve``: see the module docstring."""
    out, err = sys.stdout, sys.stderr
    options = solver_options(args)  # invalid options fail before the file is read
    if args.problem is not None and Path(args.problem).is_dir():
        return colmap_cli.solve_model(args, options, out)
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise CLIError(f"--sigma must be a positive number, got {args.sigma}")
    if not (math.isfinite(args.loss_scale) and args.loss_scale > 0):
        raise CLIError(f"--loss-scale must be a positive number, got {args.loss_scale}")
    bal, input_desc = load_problem(args.problem)
    output = _check_output("output", args.output, input_desc, args.force)
    report = _check_output("report", args.report, input_desc, args.force)
    if output is not None and report is not None and (output.resolve() == report.resolve()):
        raise CLIError(f"--output and --report name the same file {output}")
    problem = build_problem(bal, fix_cameras=[0] if args.fix_first_camera else (),
                            fix_intrinsics=args.fix_intrinsics, sigma=args.sigma,
                            loss=None if args.loss == "linear" else args.loss,
                            loss_scale=args.loss_scale / (args.sigma or 1.0))  # pixels -> whitened units
    initial_rms = _rms(reprojection_errors(problem))
    show_table = not args.quiet
    if not args.quiet:
        if input_desc == BUILT_IN:
            print(f"sparselm: {_built_in_note(bal)}", file=out)
        _print_header(out, bal, problem, input_desc, options, args, initial_rms)
    options.verbose = show_table
    progress = None
    if not args.no_progress and _isatty(err) and not (show_table and _isatty(out)):
        progress = ProgressLine(err)
        options.callbacks.append(progress)
    try:
        summary = sparselm.solve(problem, options)
    finally:
        if progress is not None:
            progress.close()
    final_rms = _rms(reprojection_errors(problem))
    if summary.termination == "interrupted":
        status = EXIT_INTERRUPTED
    else:
        status = EXIT_OK if summary.ok else EXIT_FAILURE
    if output is not None:
        write_bal(solution_to_bal(problem, bal), output, overwrite_input=args.force)
    if report is not None:
        from sparselm.atomic import atomic_write

        data = report_dict(summary, bal=bal, input_desc=input_desc, output=output, argv=args.argv,
                           initial_rms=initial_rms, final_rms=final_rms, exit_status=status)
        atomic_write(report, json.dumps(data, indent=1, allow_nan=False) + "\n")
    if args.quiet:
        print(summary.brief_report(), file=out)
    else:
        print("", file=out)
        print(summary.full_report(), file=out)
        print(f"RMS reprojection error: {initial_rms:.6g} px -> {final_rms:.6g} px", file=out)
        if args.verbose:
            print("Environment", file=out)
            for k, v in summary.environment.items():
                print(f"  {k:<28} {v}", file=out)
            print("Options used", file=out)
            for k, v in summary.options_used.items():
                print(f"  {k:<28} {v!r}", file=out)
        if output is not None:
            print(f"wrote the solution to {output}", file=out)
        if report is not None:
            print(f"wrote the report to {report}", file=out)
    out.flush()
    if status == EXIT_INTERRUPTED:
        print("sparselm: interrupted (Ctrl-C): the best point so far was kept"
              + (" and written" if output is not None or report is not None else ""), file=err)
    elif status == EXIT_FAILURE:
        error(f"the solver failed: {summary.message}", err)
    return status


def _print_header(out: TextIO, bal: BALProblem, problem, input_desc: str, options: SolverOptions, args,
                  initial_rms: float) -> None:
    fixed = []
    if args.fix_first_camera:
        fixed.append("camera 0")
    if args.fix_intrinsics:
        fixed.append("intrinsics (f, k1, k2)")
    what = "the built-in synthetic problem (sparselm.bal.default_problem())" if input_desc == BUILT_IN else input_desc
    print(f"sparselm {sparselm.__version__}: solving {what}", file=out)
    print(f"  cameras {bal.n_cameras}, points {bal.n_points}, observations {bal.n_observations}; "
          f"parameters {problem.n_parameters}, residuals {problem.n_residuals}", file=out)
    print(f"  linear solver {options.linear_solver}, threads {_threads_in_use(options.threads)}, "
          f"damping {options.damping}, loss {args.loss}"
          + (f" (scale {args.loss_scale:g})" if args.loss != "linear" else "")
          + (f", sigma {args.sigma:g} px" if args.sigma is not None else ""), file=out)
    print(f"  max iterations {options.max_iterations}, function tolerance {options.function_tolerance:g}"
          + (f", max time {options.max_time_s:g} s" if args.max_time is not None else "")
          + (f"; fixed: {', '.join(fixed)}" if fixed else ""), file=out)
    print(f"  initial RMS reprojection error {initial_rms:.6g} px", file=out)
    if not numba_cache_status().get("warm", True):
        print("  note: numba is compiling sparselm's kernels on this first run (10-30 s, in the first "
              "iterations' times);\n        later runs load them from the cache", file=out)
    print("", file=out, flush=True)


# -- info -----------------------------------------------------------------------------------------

def _min_median_max(counts: np.ndarray) -> dict:
    if counts.size == 0:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}


def problem_statistics(bal: BALProblem) -> dict:
    """Sizes, per-camera and per-point observation counts, co-visibility graph, initial cost (vectorised)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    nc, npt, nobs = bal.n_cameras, bal.n_points, bal.n_observations
    per_camera = np.bincount(bal.camera_index, minlength=nc)
    per_point = np.bincount(bal.point_index, minlength=npt)
    incidence = sp.csr_matrix((np.ones(nobs), (bal.point_index, bal.camera_index)), shape=(npt, nc))
    incidence.data[:] = 1.0  # a camera seeing a point twice is one incidence
    covis = (incidence.T @ incidence).tocoo()
    off = covis.row != covis.col
    degree = np.bincount(covis.row[off], minlength=nc)
    n_components, _ = connected_components(sp.csr_matrix((np.ones(int(off.sum())), (covis.row[off], covis.col[off])),
                                                         shape=(nc, nc)), directed=False)
    errors = reprojection_errors(bal)
    return {
        "cameras": nc, "points": npt, "observations": nobs,
        "parameters": 9 * nc + 3 * npt, "residuals": 2 * nobs,
        "observations_per_camera": _min_median_max(per_camera),
        "cameras_without_observations": int(np.count_nonzero(per_camera == 0)),
        "track_length": _min_median_max(per_point),
        "points_seen_once_or_never": int(np.count_nonzero(per_point < 2)),
        "covisibility": {"edges": int(off.sum()) // 2, "possible_edges": nc * (nc - 1) // 2,
                         "degree": _min_median_max(degree), "connected_components": int(n_components)},
        "initial_cost": float(0.5 * np.dot(errors, errors)),
        "rms_reprojection_error_px": _rms(errors),
        "median_reprojection_error_px": float(np.median(errors)) if errors.size else 0.0,
        "max_reprojection_error_px": float(errors.max()) if errors.size else 0.0,
    }


def cmd_info(args) -> int:
    """``sparselm info``: statistics of a problem, as text or JSON."""
    if args.problem is not None and Path(args.problem).is_dir():
        return colmap_cli.info_model(args)
    bal, input_desc = load_problem(args.problem)
    stats = problem_statistics(bal)
    stats = {"input": input_desc, **stats}
    if args.json:
        print(json.dumps(_json_clean(stats), indent=1))
        return EXIT_OK

    def mmm(d):
        return f"min {d['min']}, median {d['median']:g}, max {d['max']}"

    if input_desc == BUILT_IN:
        print("sparselm: no file given: describing the built-in synthetic problem")
    c = stats["covisibility"]
    lines = [
        f"{input_desc}",
        f"  cameras                   {stats['cameras']}",
        f"  points                    {stats['points']}",
        f"  observations              {stats['observations']}",
        f"  parameters                {stats['parameters']} (9 per camera, 3 per point)",
        f"  residuals                 {stats['residuals']} (2 per observation)",
        f"  observations per camera   {mmm(stats['observations_per_camera'])}"
        + (f"  ({stats['cameras_without_observations']} cameras without any)"
           if stats["cameras_without_observations"] else ""),
        f"  track length (per point)  {mmm(stats['track_length'])}"
        + (f"  ({stats['points_seen_once_or_never']} points seen by fewer than 2 observations)"
           if stats["points_seen_once_or_never"] else ""),
        f"  co-visibility graph       {c['edges']} edges of {c['possible_edges']} possible "
        f"(cameras sharing a point); degree {mmm(c['degree'])}; {c['connected_components']} connected "
        f"component{'s' if c['connected_components'] != 1 else ''}",
        f"  initial cost              {stats['initial_cost']:.6e}",
        f"  RMS reprojection error    {stats['rms_reprojection_error_px']:.6g} px "
        f"(median {stats['median_reprojection_error_px']:.6g} px, max {stats['max_reprojection_error_px']:.6g} px)",
    ]
    print("\n".join(lines))
    return EXIT_OK


# -- datasets -------------------------------------------------------------------------------------

def _local_folders() -> List[Path]:
    folders = [Path(p).expanduser() for p in os.environ.get("SPARSELM_DATA", "").split(os.pathsep) if p]
    folders.append(registry.cache_dir() / "bal")
    return [f for f in folders if f.is_dir()]


def local_files() -> Dict[str, Path]:
    """{dataset name: path} of the official problems found under $SPARSELM_DATA and in the cache.

    One walk per folder; per folder ``<name>.txt.bz2`` wins over ``<name>.txt`` over ``<name>``,
    and earlier folders over later ones (the order of :func:`sparselm.bal.registry.resolve`).
    """
    names = {d.name for d in registry.list_datasets()}
    found: Dict[str, Path] = {}
    for folder in _local_folders():
        per_folder: Dict[str, tuple] = {}
        for path in sorted(folder.rglob("*")):
            base = path.name
            for rank, suffix in enumerate((".txt.bz2", ".txt", "")):
                if suffix and not base.endswith(suffix):
                    continue
                name = base[:-len(suffix)] if suffix else base
                if name in names and path.is_file() and (name not in per_folder or per_folder[name][0] > rank):
                    per_folder[name] = (rank, path)
                break
        for name, (_, path) in per_folder.items():
            found.setdefault(name, path)
    return found


def cmd_datasets_list(args) -> int:
    """``sparselm datasets list``: the registry with a local/not-local column."""
    datasets = registry.list_datasets()
    families = sorted({d.family for d in datasets})
    if args.family is not None:
        if args.family not in families:
            raise CLIError(f"unknown family {args.family!r}; choose one of {', '.join(families)}")
        datasets = [d for d in datasets if d.family == args.family]
    local = local_files()
    width = max([len(d.name) for d in datasets] + [4])
    print(f"{'name':<{width}}  {'family':<10} {'cameras':>8} {'points':>8}  local")
    n_local = 0
    for d in datasets:
        path = local.get(d.name)
        n_local += path is not None
        where = (str(path) if args.paths else "yes") if path is not None else "-"
        print(f"{d.name:<{width}}  {d.family:<10} {d.n_cameras:>8} {d.n_points:>8}  {where}")
    searched = [f"$SPARSELM_DATA={os.environ['SPARSELM_DATA']}" if os.environ.get("SPARSELM_DATA")
                else "$SPARSELM_DATA (not set)", f"the cache {registry.cache_dir() / 'bal'}"]
    print(f"{len(datasets)} problems, {n_local} found locally (searched {' and '.join(searched)}); "
          f"download one with: sparselm datasets fetch NAME")
    return EXIT_OK


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


def cmd_datasets_fetch(args) -> int:
    """``sparselm datasets fetch``: download into the cache with progress, checksum verified."""
    info = registry.dataset_info(args.name)
    url = args.url or info.url
    err = sys.stderr
    tty = _isatty(err)
    state = {"calls": 0, "last": 0.0, "width": 0}

    def progress(done: int, total: Optional[int]) -> None:
        state["calls"] += 1
        if state["calls"] == 1:
            print(f"downloading {info.name} from {url}", flush=True)
        now = time.monotonic()
        finished = total is not None and done >= total
        if tty and (now - state["last"] >= 0.2 or finished):
            state["last"] = now
            pct = f" ({100.0 * done / total:.0f}%)" if total else ""
            of = f" of {_format_bytes(total)}" if total else ""
            text = f"downloading {info.name}: {_format_bytes(done)}{of}{pct}"
            err.write("\r" + text.ljust(state["width"]))
            err.flush()
            state["width"] = max(state["width"], len(text))

    try:
        path = registry.fetch(info.name, force=args.force, progress=progress, url=args.url)
    except OSError as e:
        reason = getattr(e, "reason", None) or _one_line(e)
        raise CLIError(f"could not download {info.name} from {url}: {reason}") from None
    finally:
        if tty and state["width"]:
            err.write("\n")
            err.flush()
    if state["calls"] == 0 and not args.force:
        print(f"{info.name} is already in the cache: {path} (use --force to download it again)")
    else:
        print(f"fetched {info.name}: {path} ({_format_bytes(path.stat().st_size)}, sha256 verified)")
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------------------

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
    except _user_errors() as exc:
        if traceback:
            raise
        error(_one_line(exc))
        return EXIT_USAGE


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
