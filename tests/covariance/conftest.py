"""Dense references for the covariance tests: J (whitened, loss-corrected) at the current values,
its pseudo-inverse by SVD, and small problems (BA, a 2-D chain without a prior)."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import models
from sparselm.bal import build_problem, synthetic_problem
from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer

TIGHT = dict(max_iterations=200, function_tolerance=1e-15, gradient_tolerance=1e-15, parameter_tolerance=1e-15)


def dense_jacobian(problem):
    """(m, n) dense J over the free columns of the problem's layout, and the layout."""
    layout = build_layout(problem)
    ev = Evaluator(problem, layout, PhaseTimer())
    ev.linearize({n: g.values for n, g in problem.parameter_groups.items()})
    rows = []
    for rl, jac in zip(layout.residuals, ev.jacobians):
        n, m, _ = jac.shape
        block = np.zeros((n * m, layout.n_columns))
        for j in range(rl.block.shape[1]):
            ok = np.flatnonzero(rl.block[:, j] >= 0)
            for c in range(rl.slot_size[j]):
                col = layout.block_col[rl.block[ok, j]] + c
                for r in range(m):
                    block[ok * m + r, col] += jac[ok, r, rl.slot_offset[j] + c]
        rows.append(block)
    return np.vstack(rows), layout


def columns(layout, group, index):
    """Free columns of block ``index`` of ``group``."""
    b = layout.block_id[group][index]
    return layout.block_col[b] + np.arange(layout.block_size[b])


def pinv_normal(jacobian, keep=None):
    """(J^T J)^+ by the SVD of J (accurate to cond(J), not cond(J)^2); with ``keep`` (a column mask)
    the inverse of J restricted to those columns, zero elsewhere."""
    n = jacobian.shape[1]
    keep = np.ones(n, dtype=bool) if keep is None else keep
    jp = np.linalg.pinv(jacobian[:, keep], rcond=1e-10)
    out = np.zeros((n, n))
    out[np.ix_(keep, keep)] = jp @ jp.T
    return out


def assert_blocks_match(cov, reference, layout, group, rtol=1e-8):
    """Every computed block of ``group`` equals the reference's block to ``rtol`` (relative to the
    block's largest entry)."""
    for row, index in enumerate(cov.indices[group]):
        got = cov.matrices[group][row]
        if layout.block_id[group][index] < 0:
            assert np.all(got == 0.0)
            continue
        c = columns(layout, group, index)
        ref = reference[np.ix_(c, c)]
        scale = np.abs(ref).max()
        assert np.abs(got - ref).max() <= rtol * scale, (group, index, np.abs(got - ref).max() / scale)


def solved_ba(n_cameras=5, n_points=60, seed=1, **build):
    """A solved small synthetic BA problem (build_problem options as keywords)."""
    syn = synthetic_problem(n_cameras, n_points, observations_per_point=3.0, seed=seed)
    problem = build_problem(syn.initial, **build)
    summary = sparselm.solve(problem, **TIGHT)
    assert summary.termination == "convergence"
    return problem, summary


def chain_2d(n=12, prior=False, seed=3):
    """A solved 2-D chain: OFFSET_2D between neighbours and a few DISTANCE_2D loop closures; without
    a prior its translation (2 dof) is a gauge."""
    rng = np.random.default_rng(seed)
    truth = np.cumsum(rng.normal(0, 1, (n, 2)), axis=0)
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    loops = np.array([[0, n // 2], [1, n - 1], [3, n - 3]])
    p = sparselm.Problem()
    p.add_parameter_group("poses", truth + rng.normal(0, 0.1, truth.shape))
    d = truth[edges[:, 1]] - truth[edges[:, 0]] + rng.normal(0, 0.05, (n - 1, 2))
    p.add_residual_group("odometry", models.OFFSET_2D, [("poses", edges[:, 0]), ("poses", edges[:, 1])], d,
                         sigma=0.05)
    r = np.linalg.norm(truth[loops[:, 0]] - truth[loops[:, 1]], axis=1) + rng.normal(0, 0.02, len(loops))
    p.add_residual_group("loops", models.DISTANCE_2D, [("poses", loops[:, 0]), ("poses", loops[:, 1])], r[:, None],
                         sigma=0.02)
    if prior:
        p.add_residual_group("prior", models.PRIOR_2D, [("poses", [0])], truth[:1], sigma=0.01)
    summary = sparselm.solve(p, **TIGHT)
    return p, summary


@pytest.fixture
def reference():
    """Namespace-like access to the dense helpers."""
    from types import SimpleNamespace
    return SimpleNamespace(dense_jacobian=dense_jacobian, columns=columns, pinv_normal=pinv_normal,
                           assert_blocks_match=assert_blocks_match, solved_ba=solved_ba, chain_2d=chain_2d)


def sparse_normal_matrix(problem):
    """J^T J (scipy CSC, free columns) from the evaluator's Jacobian, assembled independently of the
    library's normal-matrix and Schur code; and the layout."""
    import scipy.sparse as sp

    layout = build_layout(problem)
    ev = Evaluator(problem, layout, PhaseTimer())
    ev.linearize({n: g.values for n, g in problem.parameter_groups.items()})
    blocks = []
    for rl, jac in zip(layout.residuals, ev.jacobians):
        n, m, _ = jac.shape
        rows, cols, vals = [], [], []
        for j in range(rl.block.shape[1]):
            ok = np.flatnonzero(rl.block[:, j] >= 0)
            for c in range(rl.slot_size[j]):
                for r in range(m):
                    rows.append(ok * m + r)
                    cols.append(layout.block_col[rl.block[ok, j]] + c)
                    vals.append(jac[ok, r, rl.slot_offset[j] + c])
        blocks.append(sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                    shape=(n * m, layout.n_columns)))
    j_all = sp.vstack(blocks).tocsr()
    return sp.csc_matrix(j_all.T @ j_all), layout
