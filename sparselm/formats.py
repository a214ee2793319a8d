"""The input formats the command line reads: one registry, one entry per format.

An :class:`InputFormat` bundles what ``sparselm solve`` and ``sparselm info`` need from a file
format: whether a path is in that format (``detect``), reading it into the format's own data
object (``read``), building the :class:`~sparselm.Problem` to solve (``build``), its sizes for the
header and the report (``sizes``), the statistics of ``sparselm info`` (``statistics`` and
``statistics_lines``), writing the optimised solution (``write_solution``) and, where the format
has one, the RMS of the per-observation error the command line reports (``rms_error``).

Adding a format is its own module (a function per callable, as :mod:`sparselm.bal.format`) plus
one line in :data:`FORMATS` below. :func:`detect_format` tries the formats in that order; a
``fallback`` format (BAL, whose files have no signature) is tried last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional

from sparselm.bal import format as bal_format
from sparselm.g2o import format as g2o_format
from sparselm.colmap import format as colmap_format
from sparselm.core.problem import Problem


@dataclass(frozen=True)
class InputFormat:
    """One input format of the command line (see the module docstring).

    name             short name ('bal').
    file_kind        what a file of it is called in messages ('BAL file').
    detect           detect(path) -> bool: is this file (or folder) in this format.
    read             read(path) -> data: the format's own object; errors name the file and line.
    build            build(data, **model_options) -> Problem; model_options are those of
                     ``sparselm solve``: fix_first (hold the first camera/pose constant),
                     fix_intrinsics, sigma, loss, loss_scale (in whitened units).
    sizes            sizes(data) -> {name: count} in display order ('cameras', 'points', ...).
    statistics       statistics(data) -> dict: what ``sparselm info --json`` prints.
    statistics_lines statistics_lines(statistics) -> the text lines of ``sparselm info``.
    write_solution   write_solution(problem, data, path, overwrite_input) -> Path (atomic).
    rms_error        rms_error(problem) -> RMS of the per-observation error at the problem's
                     current values (e.g. reprojection pixels), or None when the format has none.
    error_label      what ``rms_error`` measures ('reprojection error'), error_unit its unit ('px').
    solver_defaults  SolverOptions fields ``sparselm solve`` uses for this format where the command
                     line has no flag for them (e.g. a near-Gauss-Newton start for pose graphs).
    fallback         try this format only when no other one detects the file.
    """

    name: str
    file_kind: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], Any]
    build: Callable[..., Problem]
    sizes: Callable[[Any], Dict[str, int]]
    statistics: Callable[[Any], dict]
    statistics_lines: Callable[[dict], List[str]]
    write_solution: Callable[[Problem, Any, Path, bool], Path]
    rms_error: Optional[Callable[[Problem], float]] = None
    error_label: str = ""
    error_unit: str = ""
    fallback: bool = False
    solver_defaults: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_module(cls, name: str, module: ModuleType, fallback: bool = False) -> "InputFormat":
        """The format whose callables are ``module``'s functions of the same names (and its FILE_KIND,
        ERROR_LABEL and ERROR_UNIT constants)."""
        return cls(name=name, file_kind=module.FILE_KIND, detect=module.detect, read=module.read, build=module.build,
                   sizes=module.sizes, statistics=module.statistics, statistics_lines=module.statistics_lines,
                   write_solution=module.write_solution, rms_error=getattr(module, "rms_error", None),
                   error_label=getattr(module, "ERROR_LABEL", ""), error_unit=getattr(module, "ERROR_UNIT", ""),
                   fallback=fallback, solver_defaults=dict(getattr(module, "SOLVER_DEFAULTS", {})))


#: the formats, in the order :func:`detect_format` tries them (one line per format).
FORMATS: Dict[str, InputFormat] = {f.name: f for f in (
    InputFormat.of_module("g2o", g2o_format),
    InputFormat.of_module("bal", bal_format, fallback=True),
    InputFormat.of_module("colmap", colmap_format),
)}


def get_format(name: str) -> InputFormat:
    """The registered format called ``name`` (ValueError listing the known ones otherwise)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown input format {name!r}; known formats: {', '.join(FORMATS)}") from None


def detect_format(path: Path) -> InputFormat:
    """The format of ``path``: the first registered one that detects it, else a fallback format.

    ValueError when none applies (e.g. a directory no format reads).
    """
    path = Path(path)
    ordered = [f for f in FORMATS.values() if not f.fallback] + [f for f in FORMATS.values() if f.fallback]
    for fmt in ordered:
        if fmt.detect(path):
            return fmt
    kinds = " or ".join(f.file_kind for f in ordered)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a {kinds}")
    raise ValueError(f"{path} is not a {kinds} (not a regular file)")
