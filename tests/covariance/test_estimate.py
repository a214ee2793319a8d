"""sparselm.covariance against dense (J^T W J)^-1 / pseudo-inverses on small problems."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import sparselm
from sparselm import models
from sparselm.covariance import CovarianceError, GaugeError, UndefinedCovarianceError, covariance


@pytest.mark.parametrize("inversion", ["takahashi", "dense_solves"])
def test_gauge_free_ba_is_the_pseudo_inverse(reference, monkeypatch, inversion):
    from sparselm.covariance import estimate
    monkeypatch.setattr(estimate, "DENSE_INVERSE_MAX_COLUMNS", 0 if inversion == "takahashi" else 10**6)
    problem, summary = reference.solved_ba()
    cov = sparselm.covariance(problem, summary, blocks=["cameras", "points"])  # the public function
    assert isinstance(cov, sparselm.Covariance)
    assert cov.gauge["mode"] == "pinv" and cov.gauge["null_space_dimension"] == 7  # the similarity
    jac, layout = reference.dense_jacobian(problem)
    ref = reference.pinv_normal(jac)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")
    assert cov.warning is None and cov.scale == 1.0


def test_one_camera_held_leaves_the_scale_as_gauge(reference):
    problem, summary = reference.solved_ba(fix_cameras=[0])
    cov = covariance(problem, summary, blocks={"cameras": None, "points": [0, 5, 7]})
    assert cov.gauge["null_space_dimension"] == 1
    assert np.all(cov.block("cameras", 0) == 0.0)  # held constant: known exactly
    jac, layout = reference.dense_jacobian(problem)
    ref = reference.pinv_normal(jac)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")


def test_gauge_fixed_by_constant_blocks_is_the_exact_inverse(reference):
    problem, summary = reference.solved_ba(fix_cameras=[0, 1])
    cov = covariance(problem, summary, blocks=["cameras", "points"])
    assert cov.gauge["null_space_dimension"] == 0 and cov.gauge["fixed_coordinates"] == []
    jac, layout = reference.dense_jacobian(problem)
    ref = np.linalg.inv(jac.T @ jac)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")


def test_gauge_fix_holds_the_chosen_coordinates(reference):
    problem, summary = reference.solved_ba()
    cov = covariance(problem, summary, blocks=["cameras", "points"], gauge="fix")
    jac, layout = reference.dense_jacobian(problem)
    keep = np.ones(layout.n_columns, dtype=bool)
    for group, index, coordinate in cov.gauge["fixed_coordinates"]:
        keep[reference.columns(layout, group, index)[coordinate]] = False
        assert cov.block(group, index)[coordinate, coordinate] == 0.0
    assert (~keep).sum() == 7
    ref = reference.pinv_normal(jac, keep)
    assert np.linalg.matrix_rank(jac[:, keep]) == keep.sum()
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")


def test_explicit_gauge_first_pose_and_a_scale(reference):
    problem, summary = reference.solved_ba()
    gauge = [("cameras", 0, [0, 1, 2, 3, 4, 5]), ("cameras", 1, [5])]
    cov = covariance(problem, summary, blocks=["cameras", "points"], gauge=gauge)
    assert cov.gauge["mode"] == "explicit"
    jac, layout = reference.dense_jacobian(problem)
    keep = np.ones(layout.n_columns, dtype=bool)
    keep[reference.columns(layout, "cameras", 0)[:6]] = False
    keep[reference.columns(layout, "cameras", 1)[5]] = False
    ref = reference.pinv_normal(jac, keep)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")
    with pytest.raises(GaugeError, match="1 direction"):
        covariance(problem, summary, gauge=[("cameras", 0, [0, 1, 2, 3, 4, 5])])


def test_cross_covariances_of_chosen_pairs(reference):
    problem, summary = reference.solved_ba()
    pairs = [(("cameras", 1), ("cameras", 3)), (("cameras", 2), ("points", 4)), (("points", 1), ("points", 9))]
    cov = covariance(problem, summary, blocks={"cameras": [1]}, pairs=pairs)
    jac, layout = reference.dense_jacobian(problem)
    ref = reference.pinv_normal(jac)
    for a, b in pairs:
        r = ref[np.ix_(reference.columns(layout, *a), reference.columns(layout, *b))]
        assert np.abs(cov.pair(a, b) - r).max() <= 1e-8 * np.abs(r).max()
        assert np.array_equal(cov.pair(b, a), cov.pair(a, b).T)


def test_robust_loss_uses_the_final_weights(reference):
    problem, summary = reference.solved_ba(loss="huber", loss_scale=1.0, fix_cameras=[0])
    cov = covariance(problem, summary, blocks=["cameras", "points"])
    jac, layout = reference.dense_jacobian(problem)  # the evaluator's loss-corrected Jacobian
    ref = reference.pinv_normal(jac)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")


def test_constant_intrinsics_have_zero_covariance(reference):
    problem, summary = reference.solved_ba(fix_intrinsics=True)
    cov = covariance(problem, summary, blocks=["cameras", "points"])
    assert np.all(cov.matrices["cameras"][:, 6:, :] == 0.0) and np.all(cov.matrices["cameras"][:, :, 6:] == 0.0)
    jac, layout = reference.dense_jacobian(problem)
    keep = np.abs(jac).sum(axis=0) > 0
    ref = reference.pinv_normal(jac, keep)
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")


def test_point_seen_by_one_camera_is_undefined_and_harms_nothing(reference):
    from sparselm.bal import build_problem, synthetic_problem
    bal = synthetic_problem(5, 40, observations_per_point=3.0, seed=4).initial
    lone = int(np.flatnonzero(np.bincount(bal.point_index) >= 2)[0])
    keep = (bal.point_index != lone) | (np.arange(bal.n_observations) == np.flatnonzero(bal.point_index == lone)[0])
    bal.camera_index, bal.point_index, bal.observations = (bal.camera_index[keep], bal.point_index[keep],
                                                          bal.observations[keep])
    problem = build_problem(bal, fix_cameras=[0, 1])
    sparselm.solve(problem, max_iterations=50)
    cov = covariance(problem, None, blocks=["cameras", "points"])
    assert np.isnan(cov.block("points", lone)).all()
    assert "rank 2 < 3" in cov.reason("points", lone)
    jac, layout = reference.dense_jacobian(problem)
    ref = reference.pinv_normal(jac)  # the lone point's depth is a null direction of its own
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    cov.matrices["points"][lone] = ref[np.ix_(*[reference.columns(layout, "points", lone)] * 2)]
    reference.assert_blocks_match(cov, ref, layout, "points")
    with pytest.raises(UndefinedCovarianceError, match="rank 2"):
        covariance(problem, None, blocks={"points": [lone]})


@pytest.mark.parametrize("prior", [False, True])
def test_chain_without_and_with_prior(reference, monkeypatch, prior):
    from sparselm.covariance import estimate
    monkeypatch.setattr(estimate, "DENSE_INVERSE_MAX_COLUMNS", 0)  # the selected inversion, whatever the fill
    problem, summary = reference.chain_2d(prior=prior)
    cov = covariance(problem, summary, pairs=[(("poses", 0), ("poses", 7))])
    assert cov.gauge["null_space_dimension"] == (0 if prior else 2)
    jac, layout = reference.dense_jacobian(problem)
    ref = np.linalg.inv(jac.T @ jac) if prior else reference.pinv_normal(jac)
    reference.assert_blocks_match(cov, ref, layout, "poses")
    r = ref[np.ix_(reference.columns(layout, "poses", 0), reference.columns(layout, "poses", 7))]
    assert np.abs(cov.pair(("poses", 0), ("poses", 7)) - r).max() <= 1e-8 * np.abs(r).max()


CURVES = [
    (models.EXPONENTIAL, lambda t, a, b: a * np.exp(-b * t), [2.0, 0.7], [2.5, 0.5]),
    (models.GAUSSIAN, lambda t, a, mu, s: a * np.exp(-(t - mu) ** 2 / (2 * s * s)), [3.0, 1.0, 0.8], [2.5, 1.2, 1.0]),
]


@pytest.mark.parametrize("residual_type,model,truth,start", CURVES, ids=["exponential", "gaussian"])
def test_curve_fit_matches_dense_inverse_and_scipy_pcov(reference, make_single_block, residual_type, model, truth,
                                                        start):
    rng = np.random.default_rng(5)
    t = np.linspace(-1.0, 4.0, 40)
    y = model(t, *truth) + rng.normal(0, 0.05, t.size)
    problem = make_single_block(residual_type, start, np.column_stack([t, y]))
    summary = sparselm.solve(problem, max_iterations=200, function_tolerance=1e-15, gradient_tolerance=1e-15,
                             parameter_tolerance=1e-15)
    cov = covariance(problem, summary)
    jac, _ = reference.dense_jacobian(problem)
    ref = np.linalg.inv(jac.T @ jac)
    assert np.abs(cov.block("x", 0) - ref).max() <= 1e-8 * np.abs(ref).max()
    scaled = covariance(problem, summary, residual_variance=True)
    popt, pcov = scipy.optimize.curve_fit(model, t, y, p0=problem.parameter_groups["x"].values[0], xtol=1e-15,
                                          ftol=1e-15, gtol=1e-15)
    assert np.allclose(popt, problem.parameter_groups["x"].values[0], rtol=1e-6)
    assert np.allclose(scaled.block("x", 0), pcov, rtol=1e-5)  # curve_fit differentiates numerically
    assert scaled.scale == pytest.approx(2 * summary.final_cost / (t.size - len(truth)), rel=1e-10)


def test_requests_are_validated(reference):
    problem, summary = reference.chain_2d(prior=True)
    with pytest.raises(CovarianceError, match="unknown parameter group 'nope'"):
        covariance(problem, summary, blocks="nope")
    with pytest.raises(CovarianceError, match="out of range"):
        covariance(problem, summary, blocks={"poses": [99]})
    with pytest.raises(CovarianceError, match="unknown gauge"):
        covariance(problem, summary, gauge="magic")


def test_residual_variance_needs_redundancy_and_a_failed_solve_is_flagged(reference, make_single_block):
    problem = make_single_block(models.EXPONENTIAL, [1.0, 0.5], np.array([[0.0, 1.0], [1.0, 0.6]]))
    summary = sparselm.solve(problem, max_iterations=1)
    with pytest.raises(CovarianceError, match="more residuals than parameters"):
        covariance(problem, summary, residual_variance=True)
    assert covariance(problem, summary).warning is None  # an iteration limit is a normal end
    failed = sparselm.Summary(termination="failure")
    assert "'failure'" in covariance(problem, failed).warning


def test_camera_with_one_observation_is_undefined_and_harms_nothing(reference):
    from sparselm.bal import build_problem, synthetic_problem
    bal = synthetic_problem(5, 40, observations_per_point=3.0, seed=6).initial
    extra = bal.cameras[2].copy()  # a sixth camera, where camera 2 is, seeing one point once
    first = int(np.flatnonzero(bal.camera_index == 2)[0])
    bal.cameras = np.vstack([bal.cameras, extra])
    bal.camera_index = np.append(bal.camera_index, 5)
    bal.point_index = np.append(bal.point_index, bal.point_index[first])
    bal.observations = np.vstack([bal.observations, bal.observations[first]])
    problem = build_problem(bal, fix_cameras=[0, 1])
    sparselm.solve(problem, max_iterations=50)
    cov = covariance(problem, None, blocks=["cameras", "points"])
    assert np.isnan(cov.block("cameras", 5)).all() and "rank 2 < 9" in cov.reason("cameras", 5)
    jac, layout = reference.dense_jacobian(problem)
    ref = reference.pinv_normal(jac)
    cov.matrices["cameras"][5] = ref[np.ix_(*[reference.columns(layout, "cameras", 5)] * 2)]
    reference.assert_blocks_match(cov, ref, layout, "cameras")
    reference.assert_blocks_match(cov, ref, layout, "points")
