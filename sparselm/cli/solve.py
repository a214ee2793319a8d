"""``sparselm solve``: read a problem (any registered format), solve it, print the table and the
report, write the solution and the JSON report (keys: the :mod:`sparselm.cli` docstring)."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, TextIO

import numba
import numpy as np

import sparselm
from sparselm.cli.solve_mpi import run_ranks
from sparselm.cli.common import (BUILT_IN, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, CLIError, HelpFormatter,
                                 add_input_argument, add_option, check_output, error, isatty, json_clean, load_input,
                                 sizes_text)
from sparselm.core.loss import LOSS_IDS
from sparselm.covariance.estimate import GAUGE_MODES
from sparselm.distributed.comm import launched_by_mpiexec
from sparselm.formats import InputFormat
from sparselm.lm.options import SolverOptions
from sparselm.profiling.jit import numba_cache_status
from sparselm.util.atomic import atomic_write

#: the SolverOptions fields ``sparselm solve`` exposes (as --max-iterations etc.; --max-time is max_time_s)
SOLVE_OPTIONS = ("linear_solver", "max_iterations", "function_tolerance", "gradient_tolerance", "parameter_tolerance",
                 "threads", "ordering", "damping")
REPORT_SCHEMA_VERSION = 1
PROGRESS_INTERVAL_S = 2.0
LOSSES = tuple(LOSS_IDS)
COVARIANCE_CHOICES = ("cameras", "points", "all")


def register(subparsers) -> None:
    """Add the ``solve`` command."""
    p = subparsers.add_parser(
        "solve", formatter_class=HelpFormatter, help="solve a BAL bundle-adjustment problem or a g2o pose graph",
        description="Solve a BAL bundle-adjustment problem or a g2o pose graph with Levenberg-Marquardt;\n"
                    "print the iteration table as it runs and the report; optionally write the solution\n"
                    "and a JSON report.\n\n"
                    "FILE_OR_NAME is a BAL file (plain text or .bz2), a g2o file (*.g2o, *.g2o.bz2: the\n"
                    "first vertex, or the FIX vertices, held as the gauge) or the name of an official problem\n"
                    "(e.g. problem-16-22106-pre) found under $SPARSELM_DATA or in the download cache.\n"
                    "Without it, a built-in synthetic problem (16 cameras, 2000 points) is solved.",
        epilog="Exit status: 0 solved (converged or stopped by a limit), 1 solver failure, 2 input or\n"
               "usage error, 130 interrupted (Ctrl-C; the best point so far is still written).\n"
               "The --report JSON keys are documented in the sparselm.cli module docstring.")
    add_input_argument(p)
    g = p.add_argument_group("solver")
    add_option(g, "linear_solver")
    add_option(g, "max_iterations", metavar="N")
    g.add_argument("--max-time", type=float, default=None, metavar="S", help="time limit in seconds (default: none)")
    add_option(g, "function_tolerance", metavar="X")
    add_option(g, "gradient_tolerance", metavar="X")
    add_option(g, "parameter_tolerance", metavar="X")
    add_option(g, "threads", metavar="N")
    add_option(g, "ordering")
    add_option(g, "damping")
    m = p.add_argument_group("model")
    m.add_argument("--fix-first-camera", action="store_true",
                   help="hold camera 0 constant (removes 6 of the 7 gauge degrees of freedom)")
    m.add_argument("--fix-intrinsics", action="store_true", help="hold f, k1, k2 constant in every camera")
    m.add_argument("--loss", choices=LOSSES, default="linear", help="robust loss on each observation")
    m.add_argument("--loss-scale", type=float, default=1.0, metavar="X",
                   help="scale of the robust loss, in pixels (the error where it starts to down-weight)")
    m.add_argument("--sigma", type=float, default=None, metavar="PX",
                   help="pixel standard deviation of every observation (default: 1, unweighted)")
    c = p.add_argument_group("covariance (after the solve)")
    c.add_argument("--covariance", choices=COVARIANCE_CHOICES, default=None,
                   help="compute the covariance blocks of the cameras (the groups not eliminated), the points "
                        "(the eliminated groups) or all; gauge-free problems get the Moore-Penrose covariance")
    c.add_argument("--covariance-output", metavar="FILE.npz",
                   help="write them: one (n, k, k) array per group, <group>_indices, <group>_undefined")
    c.add_argument("--covariance-gauge", choices=GAUGE_MODES, default="pinv",
                   help="pinv: Moore-Penrose (default); fix: hold the best-conditioned gauge coordinates")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", metavar="FILE",
                   help="write the optimised problem in its input format (bzip2 when FILE ends in .bz2)")
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


def _threads_in_use(requested: Optional[int]) -> int:
    limit = numba.config.NUMBA_NUM_THREADS
    return limit if requested is None else max(1, min(requested, limit))


def solver_options(args) -> SolverOptions:
    """SolverOptions from the parsed ``solve`` arguments (ValueError names a bad one)."""
    kwargs = {name: getattr(args, name) for name in SOLVE_OPTIONS}
    if args.max_time is not None:
        kwargs["max_time_s"] = args.max_time
    return SolverOptions(**kwargs)


def report_dict(summary, *, sizes: Dict[str, int], input_desc: str, output: Optional[Path], argv: List[str],
                initial_rms: Optional[float], final_rms: Optional[float], exit_status: int) -> dict:
    """The JSON report of a solve (keys: see the :mod:`sparselm.cli` docstring); ``sizes`` from the format."""
    d = summary.to_dict()
    problem = dict(sizes)
    problem.update(d.pop("problem", {}) or {})
    head = {"schema_version": REPORT_SCHEMA_VERSION, "sparselm_version": sparselm.__version__,
            "command": list(argv), "input": input_desc, "output": str(output) if output else None,
            "problem": problem, "initial_cost": d.pop("initial_cost"), "final_cost": d.pop("final_cost"),
            "initial_rms_px": initial_rms, "final_rms_px": final_rms, "termination": d.pop("termination"),
            "message": d.pop("message"), "ok": d.pop("ok"), "exit_status": exit_status}
    head.update(d)
    return json_clean(head)


def cmd_solve(args) -> int:
    """``sparselm solve``: see the module docstring; under ``mpiexec``, the distributed solve
    (:mod:`sparselm.cli.solve_mpi`)."""
    if launched_by_mpiexec():
        return run_ranks(args, solve_and_report, solver_options)
    return solve_and_report(args, sparselm.solve)


def solve_and_report(args, solve: Callable) -> int:
    """Read, solve with ``solve(problem, options)``, report and write the outputs; the exit status."""
    out, err = sys.stdout, sys.stderr
    options = solver_options(args)  # invalid options fail before the file is read
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise CLIError(f"--sigma must be a positive number, got {args.sigma}")
    if not (math.isfinite(args.loss_scale) and args.loss_scale > 0):
        raise CLIError(f"--loss-scale must be a positive number, got {args.loss_scale}")
    fmt, data, input_desc = load_input(args.problem)
    if fmt.solver_defaults:
        options = dataclasses.replace(options, **fmt.solver_defaults)
    output = check_output("output", args.output, input_desc, args.force)
    report = check_output("report", args.report, input_desc, args.force)
    if output is not None and report is not None and (output.resolve() == report.resolve()):
        raise CLIError(f"--output and --report name the same file {output}")
    if args.covariance_output is not None and args.covariance is None:
        raise CLIError("--covariance-output needs --covariance cameras|points|all")
    cov_output = check_output("covariance output", args.covariance_output, input_desc, args.force)
    problem = fmt.build(data, fix_first=args.fix_first_camera, fix_intrinsics=args.fix_intrinsics, sigma=args.sigma,
                        loss=None if args.loss == "linear" else args.loss,
                        loss_scale=args.loss_scale / (args.sigma or 1.0))  # pixels -> whitened units
    initial_rms = fmt.rms_error(problem) if fmt.rms_error else None
    show_table = not args.quiet
    if not args.quiet:
        if input_desc == BUILT_IN:
            print(f"sparselm: no file given: solving the built-in synthetic problem "
                  f"({sizes_text(fmt.sizes(data), count_first=True)}); give a BAL file or problem name to solve it "
                  f"instead", file=out)
        _print_header(out, fmt, data, problem, input_desc, options, args, initial_rms)
    options.verbose = show_table
    progress = None
    if not args.no_progress and isatty(err) and not (show_table and isatty(out)):
        progress = ProgressLine(err)
        options.callbacks.append(progress)
    try:
        summary = solve(problem, options)
    finally:
        if progress is not None:
            progress.close()
    final_rms = fmt.rms_error(problem) if fmt.rms_error else None
    if summary.termination == "interrupted":
        status = EXIT_INTERRUPTED
    else:
        status = EXIT_OK if summary.ok else EXIT_FAILURE
    cov = None
    if args.covariance is not None and status == EXIT_OK:
        try:
            cov = sparselm.covariance(problem, summary, blocks=covariance_groups(problem, args.covariance),
                                      gauge=args.covariance_gauge)
        except ValueError as exc:
            error(f"the covariance could not be computed: {exc}", err)
            status = EXIT_FAILURE
    if output is not None:
        fmt.write_solution(problem, data, output, args.force)
    if cov is not None and cov_output is not None:
        cov.save_npz(cov_output)
    if report is not None:
        contents = report_dict(summary, sizes=fmt.sizes(data), input_desc=input_desc, output=output, argv=args.argv,
                               initial_rms=initial_rms, final_rms=final_rms, exit_status=status)
        if cov is not None:
            contents["phases"]["covariance"] = {"seconds": cov.seconds, "calls": 1}
            contents["covariance"] = json_clean(dict(cov.report(), output=str(cov_output) if cov_output else None))
        atomic_write(report, json.dumps(contents, indent=1, allow_nan=False) + "\n")
    if args.quiet:
        print(summary.brief_report(), file=out)
    else:
        print("", file=out)
        print(summary.full_report(), file=out)
        if fmt.rms_error:
            print(f"RMS {fmt.error_label}: {initial_rms:.6g} {fmt.error_unit} -> {final_rms:.6g} {fmt.error_unit}",
                  file=out)
        if args.verbose:
            print("Environment", file=out)
            for k, v in summary.environment.items():
                print(f"  {k:<28} {v}", file=out)
            print("Options used", file=out)
            for k, v in summary.options_used.items():
                print(f"  {k:<28} {v!r}", file=out)
        if cov is not None:
            print(covariance_text(cov), file=out)
        if output is not None:
            print(f"wrote the solution to {output}", file=out)
        if report is not None:
            print(f"wrote the report to {report}", file=out)
        if cov is not None and cov_output is not None:
            print(f"wrote the covariance to {cov_output}", file=out)
    out.flush()
    if status == EXIT_INTERRUPTED:
        print("sparselm: interrupted (Ctrl-C): the best point so far was kept"
              + (" and written" if output is not None or report is not None else ""), file=err)
    elif status == EXIT_FAILURE:
        error(f"the solver failed: {summary.message}", err)
    return status


def covariance_groups(problem, which: str) -> list:
    """The parameter groups of ``--covariance``: cameras = the groups not eliminated (BA: cameras;
    a pose graph: its poses), points = the eliminated groups, all = every group."""
    groups = problem.parameter_groups.values()
    chosen = [g.name for g in groups if which == "all" or g.eliminate == (which == "points")]
    if not chosen:
        raise CLIError(f"--covariance {which}: this problem has no such parameter group "
                       f"(groups: {', '.join(g.name for g in groups)})")
    return chosen


def covariance_text(cov) -> str:
    """Lines for the report: per group, the blocks computed, the undefined ones, the median std."""
    lines = [f"Covariance ({cov.gauge['mode']}; gauge null space {cov.gauge['null_space_dimension']}-dimensional) "
             f"in {cov.seconds:.3f} s"]
    for group, mats in cov.matrices.items():
        std = cov.std(group)
        median = np.nanmedian(std, axis=0) if np.isfinite(std).any() else std[0]
        lines.append(f"  {group}: {mats.shape[0]} blocks of {mats.shape[1]}, {len(cov.undefined[group])} undefined; "
                     f"median standard deviations " + " ".join(f"{v:.3g}" for v in median))
    if cov.warning:
        lines.append(f"  warning: {cov.warning}")
    return "\n".join(lines)


def _print_header(out: TextIO, fmt: InputFormat, data, problem, input_desc: str, options: SolverOptions, args,
                  initial_rms: Optional[float]) -> None:
    fixed = []
    if args.fix_first_camera:
        fixed.append("camera 0")
    if args.fix_intrinsics:
        fixed.append("intrinsics (f, k1, k2)")
    what = "the built-in synthetic problem (sparselm.bal.default_problem())" if input_desc == BUILT_IN else input_desc
    print(f"sparselm {sparselm.__version__}: solving {what}", file=out)
    print(f"  {sizes_text(fmt.sizes(data))}; parameters {problem.n_parameters}, residuals {problem.n_residuals}",
          file=out)
    print(f"  linear solver {options.linear_solver}, threads {_threads_in_use(options.threads)}, "
          f"damping {options.damping}, loss {args.loss}"
          + (f" (scale {args.loss_scale:g})" if args.loss != "linear" else "")
          + (f", sigma {args.sigma:g} px" if args.sigma is not None else ""), file=out)
    print(f"  max iterations {options.max_iterations}, function tolerance {options.function_tolerance:g}"
          + (f", max time {options.max_time_s:g} s" if args.max_time is not None else "")
          + (f"; fixed: {', '.join(fixed)}" if fixed else ""), file=out)
    if fmt.rms_error:
        print(f"  initial RMS {fmt.error_label} {initial_rms:.6g} {fmt.error_unit}", file=out)
    if not numba_cache_status().get("warm", True):
        print("  note: numba is compiling sparselm's kernels on this first run (10-30 s, in the first "
              "iterations' times);\n        later runs load them from the cache", file=out)
    print("", file=out, flush=True)
