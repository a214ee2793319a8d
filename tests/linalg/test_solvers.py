"""sparselm.linalg: the dense and sparse normal Cholesky solvers give the same step on the same damped
system (built directly from layout and evaluator, as solver.py does), satisfy the normal equations,
report a non-positive-definite matrix as a status, agree for every CHOLMOD ordering and mode, and
give the same iterates over a whole solve."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import models
from sparselm.core.evaluator import Evaluator
from sparselm.linalg import LinearSolverOptions, registry
from sparselm.linalg.cholmod import CholmodFactor, available_orderings
from sparselm.linalg.dense import MAX_DENSE_COLUMNS, DenseNormalCholesky
from sparselm.linalg.sparse_normal import SparseNormalCholesky
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer


def _rich_problem(make_graph, rng):
    """The graph problem (points, beacons; odometry, ranges, beacon priors) plus: two constant beacons,
    a group 'drift' with a constant coordinate, a covariance-weighted linear group on it, and a
    robust range group."""
    g = make_graph(n_points=150, n_beacons=12, n_loops=150, seed=3)
    p = g.problem
    p.set_constant("beacons", [0, 5])
    p.add_parameter_group("drift", rng.normal(size=(3, 3)), constant_coordinates=[2])
    a = rng.normal(size=(9, 2, 3))
    cov = np.array([[[2.0, 0.6], [0.6, 1.0]]] * 9)
    p.add_residual_group("drift_obs", models.linear(2, 3), [("drift", np.arange(9) % 3)],
                         models.linear_data(a, rng.normal(size=(9, 2))), covariance=cov)
    idx = rng.integers(0, 150, size=40)
    p.add_residual_group("robust_ranges", models.DISTANCE_2D, [("points", idx), ("beacons", idx % 12)],
                         rng.uniform(5, 50, size=40), sigma=0.5, loss="cauchy", loss_scale=2.0)
    return p


@pytest.fixture
def system(make_graph, rng):
    problem = _rich_problem(make_graph, rng)
    layout = build_layout(problem)
    timer = PhaseTimer()
    ev = Evaluator(problem, layout, timer)
    ev.linearize({g.name: g.values.copy() for g in problem.parameter_groups.values()})
    dense = DenseNormalCholesky(layout, ev, timer, LinearSolverOptions())
    sparse = SparseNormalCholesky(layout, ev, timer, LinearSolverOptions())
    dense.linearize()
    sparse.linearize()
    return layout, ev, dense, sparse


def _diagonals(layout, ev, rng):
    fixed = layout.constant_columns.astype(float)  # as the strategy does: 1 on constant coordinates
    norms = np.clip(ev.column_norms, 1e-6, 1e32)
    return [norms * 1e-4 + fixed, norms * 10.0 + fixed, rng.uniform(0.1, 10.0, size=layout.n_columns) + fixed,
            np.full(layout.n_columns, 1e-6) + fixed]


def test_dense_and_sparse_give_the_same_step(system, rng):
    layout, ev, dense, sparse = system
    assert layout.n_columns > 300 and layout.constant_columns.sum() == 3
    jac = dense.jacobian_matrix()
    r = np.concatenate([res.ravel() for res in ev.residuals])
    np.testing.assert_allclose(jac.T @ r, ev.gradient, rtol=1e-10, atol=1e-10)
    for d in _diagonals(layout, ev, rng):
        a = dense.solve(d)
        b = sparse.solve(d)
        assert a.ok and b.ok and a.iterations == 1 and b.iterations == 1
        assert np.linalg.norm(a.step - b.step) <= 1e-8 * np.linalg.norm(a.step)
        # and it solves (J^T J + diag(D)) step = -J^T r
        lhs = jac.T @ (jac @ b.step) + d * b.step
        assert np.linalg.norm(lhs + ev.gradient) <= 1e-9 * np.linalg.norm(ev.gradient)
        assert np.abs(b.step[layout.constant_columns]).max() <= 1e-14  # constant coordinates do not move


def test_not_positive_definite_is_a_status(system):
    layout, ev, dense, sparse = system
    d = np.full(layout.n_columns, -1e6)
    for solver in (dense, sparse):
        sol = solver.solve(d)
        assert not sol.ok and sol.step is None and "not positive definite" in sol.message
    # and they recover on the next call
    good = np.ones(layout.n_columns)
    assert dense.solve(good).ok and sparse.solve(good).ok


@pytest.mark.parametrize("mode", ["supernodal", "simplicial", "auto"])
def test_orderings_and_modes_agree(system, mode, rng):
    layout, ev, dense, _ = system
    d = np.clip(ev.column_norms, 1e-6, None) * 1e-3 + layout.constant_columns
    ref = dense.solve(d).step
    orderings = [o for o in available_orderings() if o in ("amd", "natural", "colamd", "metis")]
    assert {"amd", "natural"} <= set(orderings)
    for ordering in orderings:
        s = SparseNormalCholesky(layout, ev, PhaseTimer(), LinearSolverOptions(ordering=ordering, factorization=mode))
        s.linearize()
        sol = s.solve(d)
        assert sol.ok, ordering
        assert np.linalg.norm(sol.step - ref) <= 1e-8 * np.linalg.norm(ref), ordering
        info = s.info()
        assert info["ordering"] == ordering and info["factorization"] == mode
        assert info["nnz_lower"] == s.pattern.nnz and info["factor_nnz"] >= s.pattern.nnz


def test_info_and_phases(system):
    layout, ev, dense, sparse = system
    assert dense.info() == {"name": "dense", "columns": layout.n_columns, "rows": sum(r.size for r in ev.residuals)}
    assert sparse.info()["name"] == "sparse_normal_cholesky" and sparse.info()["columns"] == layout.n_columns
    dense.solve(np.ones(layout.n_columns))
    sparse.solve(np.ones(layout.n_columns))
    phases = dense.timer.table()
    for name in ("symbolic", "assembly", "factorization", "solve"):
        assert phases[name]["calls"] >= 1
    assert {"dense", "sparse_normal_cholesky"} <= set(registry.names())


def test_cholmod_rejects_unknown_ordering_and_mode():
    import scipy.sparse as sp

    a = sp.csc_matrix(np.eye(3) * 2.0)
    with pytest.raises(ValueError, match="unknown ordering 'nope'; choose one of amd"):
        CholmodFactor(a, ordering="nope")
    with pytest.raises(ValueError, match="unknown factorization 'qr'"):
        CholmodFactor(a, mode="qr")


def test_dense_refuses_large_problems():
    n = MAX_DENSE_COLUMNS // 2 + 1
    p = sparselm.Problem()
    p.add_parameter_group("x", np.zeros((n, 2)))
    p.add_residual_group("prior", models.PRIOR_2D, [("x", np.arange(n))], np.ones((n, 2)))
    layout = build_layout(p)
    ev = Evaluator(p, layout, PhaseTimer())
    with pytest.raises(ValueError, match="linear solver 'dense' is for small problems"):
        DenseNormalCholesky(layout, ev, PhaseTimer(), LinearSolverOptions())


@pytest.mark.parametrize("damping", ["marquardt", "levenberg"])
def test_whole_solve_same_iterates(make_graph, rng, tight, damping):
    runs = {}
    for name in ("dense", "sparse_normal_cholesky"):
        p = _rich_problem(make_graph, np.random.default_rng(11))
        s = sparselm.solve(p, linear_solver=name, damping=damping, **dict(tight, max_iterations=60))
        assert s.options_used["linear_solver"] == name and s.termination == "convergence", s.message
        runs[name] = (s, np.concatenate([g.values.ravel() for g in p.parameter_groups.values()]))
    (sd, xd), (ss, xs) = runs["dense"], runs["sparse_normal_cholesky"]
    cd = np.array([it.cost for it in sd.iterations])
    cs = np.array([it.cost for it in ss.iterations])
    n = min(len(cd), len(cs))
    assert n > 5, (len(cd), len(cs))
    # identical up to rounding while the cost still moves by more than rounding
    np.testing.assert_allclose(cs[:n], cd[:n], rtol=1e-10)
    assert [it.step_is_successful for it in sd.iterations[:n]][:6] == [it.step_is_successful for it in ss.iterations[:n]][:6]
    assert ss.final_cost == pytest.approx(sd.final_cost, rel=1e-12)
    np.testing.assert_allclose(xs, xd, rtol=0, atol=1e-8 * np.abs(xd).max())
