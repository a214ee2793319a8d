"""Covariance of a real 3-D pose graph (smallGrid3D, SE(3) poses: 6 tangent coordinates per
7-number block) against the dense inverse / pseudo-inverse of J^T W J. Needs the g2o files
($SPARSELM_G2O_DATA; the ``g2o_file`` fixture skips without them, fails with SPARSELM_REQUIRE_DATA=1)."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm.g2o import read_g2o
from sparselm.g2o.problem import build_problem


@pytest.mark.parametrize("held", [True, False], ids=["first_pose_held", "gauge_free"])
def test_pose_blocks_match_the_dense_inverse(reference, g2o_file, held):
    problem = build_problem(read_g2o(g2o_file("smallGrid3D")))
    if not held:
        problem.set_constant("poses", problem.parameter_groups["poses"].constant, False)
    summary = sparselm.solve(problem, max_iterations=100, function_tolerance=1e-12)
    assert summary.ok
    cov = sparselm.covariance(problem, summary, pairs=[(("poses", 3), ("poses", 60))])
    assert cov.matrices["poses"].shape[1:] == (6, 6)
    assert cov.gauge["null_space_dimension"] == (0 if held else 6)  # one rigid motion of all poses
    jac, layout = reference.dense_jacobian(problem)
    ref = np.linalg.inv(jac.T @ jac) if held else reference.pinv_normal(jac)
    reference.assert_blocks_match(cov, ref, layout, "poses")
    r = ref[np.ix_(reference.columns(layout, "poses", 3), reference.columns(layout, "poses", 60))]
    assert np.abs(cov.pair(("poses", 3), ("poses", 60)) - r).max() <= 1e-8 * np.abs(r).max()
