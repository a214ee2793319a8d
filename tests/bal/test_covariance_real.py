"""Covariance on a real BAL problem (problem-16-22106-pre) against an independent sparse LU solve.

Needs the BAL files ($SPARSELM_DATA; the ``bal_data`` fixture skips without it, and fails instead
with SPARSELM_REQUIRE_DATA=1)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import sparselm
from sparselm.bal import build_problem, read_bal
from tests.covariance.conftest import sparse_normal_matrix

P16 = "dubrovnik/problem-16-22106-pre.txt.bz2"


@pytest.mark.bal
@pytest.mark.slow
def test_fixed_gauge_camera_blocks_equal_a_sparse_lu_inverse(bal_data):
    path = bal_data / P16
    if not path.exists():
        pytest.fail(f"{path} is missing")
    problem = build_problem(read_bal(path), fix_cameras=[0])
    summary = sparselm.solve(problem)
    assert summary.ok
    held = [("cameras", 1, [5])]  # with camera 0 held, one coordinate of camera 1 fixes the scale
    cov = sparselm.covariance(problem, summary, gauge=held)
    assert cov.gauge["mode"] == "explicit" and not cov.undefined["cameras"]
    normal, layout = sparse_normal_matrix(problem)
    keep = np.ones(layout.n_columns, dtype=bool)
    keep[layout.block_col[layout.block_id["cameras"][1]] + 5] = False
    reduced = normal[keep][:, keep].tocsc()
    lu = spla.splu(reduced)
    position = np.cumsum(keep) - 1
    for index in range(1, 16):
        b = layout.block_id["cameras"][index]
        cols = layout.block_col[b] + np.arange(9)
        cols = cols[keep[cols]]
        rhs = np.zeros((keep.sum(), cols.size))
        rhs[position[cols], np.arange(cols.size)] = 1.0
        x = lu.solve(rhs)
        x += lu.solve(rhs - reduced @ x)  # one step of iterative refinement
        ref = x[position[cols]]
        got = cov.block("cameras", index)[np.ix_(keep[layout.block_col[b] + np.arange(9)],
                                                 keep[layout.block_col[b] + np.arange(9)])]
        assert np.abs(got - ref).max() <= 1e-8 * np.abs(ref).max(), index
    free = sparselm.covariance(problem, summary)  # the Moore-Penrose covariance: the scale gauge left
    assert free.gauge["null_space_dimension"] == 1
    eig = np.linalg.eigvalsh(free.matrices["cameras"][1:])
    assert np.isfinite(eig).all() and (eig > -1e-12 * eig.max()).all()
