"""Fuzz the g2o reader end to end (enabled once sparselm.g2o is in the tree): mutations of a small valid
2-D and 3-D pose graph (dropped, repeated or replaced fields, NaN/inf, extreme numbers, unknown tags,
bad ids, truncation, bzip2) are either refused with a ValueError naming the file (G2OFormatError) or
read, built and solved, with the reported cost equal to the graph error recomputed at the returned poses
by ``graph_error`` (1/2 sum e^T Lambda e with numpy over the solution written back into a graph)."""
from __future__ import annotations

import bz2
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparselm

from .budget import budget
from .mutation import mutate_lines
from .properties import solved_or_refused, solved_warm_up

if not (Path(sparselm.__file__).parent / "g2o").is_dir():  # not importorskip: an editable install elsewhere
    pytest.skip("the g2o reader is not in this tree yet", allow_module_level=True)
from sparselm import g2o  # noqa: E402

SE2_TEXT = b"""VERTEX_SE2 0 0 0 0
VERTEX_SE2 1 1.0 0.1 0.2
VERTEX_SE2 2 2.1 0.3 0.35
VERTEX_SE2 5 2.9 0.2 0.5
EDGE_SE2 0 1 1 0 0.2 10 0 0 10 0 100
EDGE_SE2 1 2 1 0.1 0.2 10 1 0 10 0 100
EDGE_SE2 2 5 1 0 0.1 10 0 0 10 0 100
EDGE_SE2 0 5 3 0.1 0.5 10 0 0 10 0 100
FIX 0
"""
SE3_TEXT = b"""VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1
VERTEX_SE3:QUAT 1 1 0 0 0 0 0.0998334 0.995004
VERTEX_SE3:QUAT 2 2 0.2 0 0 0 0.198669 0.980067
EDGE_SE3:QUAT 0 1 1 0 0 0 0 0.0998334 0.995004 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4
EDGE_SE3:QUAT 1 2 1 0.1 0 0 0 0.0998334 0.995004 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4
EDGE_SE3:QUAT 0 2 2 0.1 0 0 0 0.198669 0.980067 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4
"""
ODD = [b"nan", b"inf", b"-inf", b"1e200", b"1e400", b"4.9e-324", b"-0.0", b"0", b"-1", b"abc", b"99999999999",
       b"1.5", b"VERTEX_SE2", b"EDGE_SE3:QUAT", b"FIX", b"#", b""]
EXTREME = [b"0", b"-0.0", b"1e-300", b"4.9e-324", b"1e20", b"1e150", b"-3.5"]


def solve_g2o_file(data: bytes, compress: bool, folder: str) -> dict:
    """Write ``data`` as a g2o file, read it, build the pose graph problem, solve it, and recompute its error."""
    path = Path(folder) / ("fuzz.g2o.bz2" if compress else "fuzz.g2o")
    path.write_bytes(bz2.compress(data) if compress else data)
    graph = g2o.read_g2o(path)
    problem = g2o.build_problem(graph)
    summary = sparselm.solve(problem, max_iterations=8, threads=1)
    independent = g2o.graph_error(g2o.solution_to_graph(problem, graph))
    return {"reported": summary.final_cost, "independent": independent, "termination": summary.termination}


@st.composite
def mutated_graphs(draw):
    text = draw(st.sampled_from([SE2_TEXT, SE3_TEXT]))
    return mutate_lines(draw, text, EXTREME, ODD, first_value=2), draw(st.booleans())


@pytest.fixture(scope="module")
def warm_worker(worker, tmp_path_factory):
    for text in (SE2_TEXT, SE3_TEXT):
        solved_warm_up(worker, solve_g2o_file, text, False, str(tmp_path_factory.mktemp("g2o")))
    return worker


@budget(100)
@given(mutated_graphs())
def test_mutated_g2o_files_are_solved_with_their_true_error_or_refused(warm_worker, tmp_path_factory, case):
    data, compress = case
    folder = tmp_path_factory.mktemp("g2o")
    names = [str(folder), "residual group", "parameter group"]  # a readable graph the builder refuses
    solved_or_refused(warm_worker, "g2o reader", names, solve_g2o_file, data, compress, str(folder))
