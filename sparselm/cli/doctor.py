"""``sparselm doctor``: the command-line face of :mod:`sparselm.profiling.doctor`."""
from __future__ import annotations

import json

from sparselm.cli.common import EXIT_FAILURE, EXIT_OK, HelpFormatter, one_line_errors
from sparselm.profiling import doctor as diagnostics

EXIT_WARNINGS = EXIT_FAILURE  # doctor --strict with a warning

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
    """Add the ``doctor`` command."""
    d = subparsers.add_parser("doctor", formatter_class=HelpFormatter,
                              help="versions, BLAS in use, CPU, threads, numba cache",
                              description=DOCTOR_DESCRIPTION, epilog=DOCTOR_EPILOG)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--strict", action="store_true", help="exit with status 1 when there is a warning")
    d.set_defaults(func=cmd_doctor)
    one_line_errors(d)


def cmd_doctor(args) -> int:
    """``sparselm doctor``: the environment report."""
    report = diagnostics.doctor_report()
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(diagnostics.format_doctor(report))
    warnings = report["blas"].get("warnings") or []
    return EXIT_WARNINGS if (args.strict and warnings) else EXIT_OK
