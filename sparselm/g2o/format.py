"""The g2o format as the command line sees it (one entry of the format registry).

Reading and writing are :mod:`sparselm.g2o.io`, the Problem :func:`sparselm.g2o.problem.build_problem`.
This module adds what ``sparselm info`` prints: vertices, edges, loop closures (edges whose vertex
ids differ by more than 1, i.e. not odometry), vertex degrees, connected components, the fixed
vertices and the initial error (GTSAM's graph error, 1/2 sum e^T Lambda e).
"""
from __future__ import annotations

import bz2
from pathlib import Path
from typing import Dict, List

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from sparselm.g2o.io import PoseGraph, read_g2o, write_g2o
from sparselm.g2o.problem import build_problem, graph_error, solution_to_graph
from sparselm.core.problem import Problem

FILE_KIND = "g2o file"
#: ``sparselm solve`` options for pose graphs: a near-Gauss-Newton start (GTSAM's LM starts with
#: lambda 1e-5; graphs started from odometry take about half the iterations of the default radius 1e4)
#: and the choice of simplicial (sparse 2-D graphs) or supernodal factors by the factor's flops per entry
#: (``factorization='auto'``, the default since issue 18; see :mod:`sparselm.linalg.cholmod`).
SOLVER_DEFAULTS = {"initial_trust_region_radius": 1e8, "factorization": "auto"}
TAGS = (b"VERTEX_SE2", b"EDGE_SE2", b"VERTEX_SE3:QUAT", b"EDGE_SE3:QUAT", b"FIX")


def detect(path: Path) -> bool:
    """A file named *.g2o or *.g2o.bz2, or whose first record (after comments) has a g2o tag."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.name.endswith((".g2o", ".g2o.bz2")):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(3)
        opener = bz2.open if head == b"BZh" else open
        with opener(path, "rb") as f:
            for line in f:
                fields = line.split()
                if fields and not fields[0].startswith(b"#"):
                    return fields[0] in TAGS
    except (OSError, EOFError, ValueError):
        return False
    return False


def read(path: Path) -> PoseGraph:
    """The PoseGraph of a g2o file (plain or .bz2); G2OFormatError names the line of any problem."""
    return read_g2o(path)


def build(graph: PoseGraph, *, fix_first: bool = False, fix_intrinsics: bool = False, sigma=None, loss=None,
          loss_scale: float = 1.0) -> Problem:
    """The pose-graph Problem; the gauge is always held (FIX vertices, else the first vertex), so
    ``fix_first`` changes nothing; intrinsics and sigma do not apply (the file gives the weights)."""
    if fix_intrinsics:
        raise ValueError("--fix-intrinsics does not apply to a g2o pose graph (it has no cameras)")
    if sigma is not None:
        raise ValueError("--sigma does not apply to a g2o pose graph: the file gives each edge's information matrix")
    return build_problem(graph, loss=loss, loss_scale=loss_scale)


def sizes(graph: PoseGraph) -> Dict[str, int]:
    """Vertices, edges and loop closures."""
    return {"vertices": graph.n_vertices, "edges": graph.n_edges, "loop_closures": _loop_closures(graph)}


def write_solution(problem: Problem, graph: PoseGraph, path: Path, overwrite_input: bool = False) -> Path:
    """Write the optimised poses of ``problem`` with the edges of ``graph`` as a g2o file (atomic;
    bzip2 when the name ends in .bz2). The command line has already refused to overwrite the input."""
    return write_g2o(solution_to_graph(problem, graph), path)


def _loop_closures(graph: PoseGraph) -> int:
    ids = graph.vertex_ids[graph.edges]
    return int(np.count_nonzero(np.abs(ids[:, 0] - ids[:, 1]) > 1))


def statistics(graph: PoseGraph) -> dict:
    """Sizes, degree statistics, connected components, fixed vertices and the initial error."""
    n = graph.n_vertices
    degree = np.bincount(graph.edges.ravel(), minlength=n)
    adjacency = sp.csr_matrix((np.ones(graph.n_edges), (graph.edges[:, 0], graph.edges[:, 1])), shape=(n, n))
    n_components, _ = connected_components(adjacency, directed=False)
    tangent = 3 if graph.kind.dimension == 2 else 6
    return {
        "dimension": graph.kind.dimension, "vertices": n, "edges": graph.n_edges,
        "loop_closures": _loop_closures(graph), "odometry_edges": graph.n_edges - _loop_closures(graph),
        "degree": {"min": int(degree.min()), "median": float(np.median(degree)), "max": int(degree.max())},
        "connected_components": int(n_components),
        "fixed_vertices": [int(v) for v in graph.vertex_ids[graph.fixed]],
        "parameters": n * graph.poses.shape[1], "tangent_parameters": n * tangent,
        "residuals": graph.n_edges * tangent,
        "initial_error": graph_error(graph),
    }


def statistics_lines(stats: dict) -> List[str]:
    """The text of ``sparselm info`` for :func:`statistics` (after its 'input' line)."""
    d = stats["degree"]
    fixed = ", ".join(map(str, stats["fixed_vertices"])) or "none (the first is held as the gauge)"
    return [
        f"  pose graph                {stats['dimension']}-D ({'SE(2)' if stats['dimension'] == 2 else 'SE(3)'})",
        f"  vertices                  {stats['vertices']}",
        f"  edges                     {stats['edges']} ({stats['odometry_edges']} odometry, "
        f"{stats['loop_closures']} loop closures: vertex ids more than 1 apart)",
        f"  degree (edges per vertex) min {d['min']}, median {d['median']:g}, max {d['max']}",
        f"  connected components      {stats['connected_components']}",
        f"  fixed vertices            {fixed}",
        f"  parameters                {stats['parameters']} stored, {stats['tangent_parameters']} tangent",
        f"  initial error             {stats['initial_error']:.6e} (1/2 sum e^T Lambda e, GTSAM's)",
    ]
