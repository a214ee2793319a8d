"""Exactness of the Schur solvers (issue 7): for one damped system (J^T J + D) d = -J^T r, built by
linearising a problem at a point with a random positive damping diagonal D, every linear solver
gives the same step: ``dense`` (reference, shares no assembly code), ``sparse_normal_cholesky``,
``sparse_schur``, ``dense_schur`` and ``iterative_schur`` (implicit and explicit S, block-Jacobi
and Schur-Jacobi preconditioners, CG run to 1e-14). Cases: a synthetic BA problem, constant cameras
and points, constant coordinates, duplicate observations, and a non-BA problem with two f-groups of
different block sizes (6-dof poses, 3-dof shared intrinsics, f-f residuals) plus an eliminated
group. Also: not positive definite systems give ok=False (never an exception), CG's forcing and
iteration limits, iteration counts, and the factor-size estimate against CHOLMOD.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import sparselm
from sparselm import ResidualType
from sparselm.bal.camera import BAL_REPROJECTION
from sparselm.bal.synthetic import synthetic_problem
from sparselm.colmap.problem import build_problem as build_colmap_problem
from sparselm.colmap.synthetic import synthetic_model
from sparselm.core.evaluator import Evaluator
from sparselm.linalg import LinearSolverOptions, registry
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.linalg.schur import eliminate
from sparselm.linalg.schur.factor_estimate import block_factor_nnz, estimate_factor_nnz
from sparselm.linalg.schur.implicit import ImplicitSchur, eliminated_group_index
from sparselm.linalg.schur.iterative import IterativeSchur
from sparselm.linalg.schur.pcg import spd_inverse_inplace, symmetric_csr
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer

EXACT_CG = dict(cg_tolerance=1e-14, max_cg_iterations=5000, extra={"cg_termination": "residual"})  # solve to round-off
DIRECT = ("dense", "sparse_normal_cholesky", "sparse_schur", "dense_schur")
#: "jacobian": ImplicitSchur (products through J, the default for BA); implicit/explicit: IterativeSchur (W formed)
VARIANTS = ("jacobian", "implicit", "explicit")
ITERATIVE = [(v, pc) for v in VARIANTS for pc in ("jacobi", "schur_jacobi")]


# ---------------------------------------------------------------------------------------------
# Problems

def ba_problem(n_cameras=6, n_points=40, seed=3, duplicates=0):
    bp = synthetic_problem(n_cameras, n_points, seed=seed).initial
    ci, pi, obs = bp.camera_index, bp.point_index, bp.observations
    if duplicates:
        rng = np.random.default_rng(seed)
        pick = rng.choice(ci.size, duplicates, replace=False)
        ci = np.concatenate([ci, ci[pick]])
        pi = np.concatenate([pi, pi[pick]])
        obs = np.concatenate([obs, obs[pick] + rng.normal(0, 2.0, (duplicates, 2))])
    p = sparselm.Problem()
    p.add_parameter_group("cameras", bp.cameras)
    p.add_parameter_group("points", bp.points, eliminate=True)
    p.add_residual_group("obs", BAL_REPROJECTION, [("cameras", ci), ("points", pi)], obs)
    return p


@numba.njit(cache=True)
def _pinhole_residuals(params, index, data, residuals):
    """Pose (rotation vector, translation), intrinsics (f, cx, cy), point (3): the pixel residual."""
    poses, intrinsics, points = params
    for i in range(index.shape[0]):
        w0, w1, w2 = poses[index[i, 0], 0], poses[index[i, 0], 1], poses[index[i, 0], 2]
        x0, x1, x2 = points[index[i, 2], 0], points[index[i, 2], 1], points[index[i, 2], 2]
        theta = math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
        if theta > 1e-12:
            k0, k1, k2 = w0 / theta, w1 / theta, w2 / theta
            c, s = math.cos(theta), math.sin(theta)
            kx = k0 * x0 + k1 * x1 + k2 * x2
            r0 = x0 * c + (k1 * x2 - k2 * x1) * s + k0 * kx * (1 - c)
            r1 = x1 * c + (k2 * x0 - k0 * x2) * s + k1 * kx * (1 - c)
            r2 = x2 * c + (k0 * x1 - k1 * x0) * s + k2 * kx * (1 - c)
        else:
            r0 = x0 + w1 * x2 - w2 * x1
            r1 = x1 + w2 * x0 - w0 * x2
            r2 = x2 + w0 * x1 - w1 * x0
        p0 = r0 + poses[index[i, 0], 3]
        p1 = r1 + poses[index[i, 0], 4]
        p2 = r2 + poses[index[i, 0], 5]
        f, cx, cy = intrinsics[index[i, 1], 0], intrinsics[index[i, 1], 1], intrinsics[index[i, 1], 2]
        residuals[i, 0] = f * p0 / p2 + cx - data[i, 0]
        residuals[i, 1] = f * p1 / p2 + cy - data[i, 1]


@numba.njit(cache=True)
def _pose_difference(params, index, data, residuals):
    a, b = params
    for i in range(index.shape[0]):
        for c in range(6):
            residuals[i, c] = b[index[i, 1], c] - a[index[i, 0], c] - data[i, c]


@numba.njit(cache=True)
def _point_prior(params, index, data, residuals):
    (x,) = params
    for i in range(index.shape[0]):
        for c in range(3):
            residuals[i, c] = x[index[i, 0], c] - data[i, c]


PINHOLE = ResidualType("pinhole_pose_intrinsics_point", 2, (6, 3, 3), 2, _pinhole_residuals)
POSE_DIFFERENCE = ResidualType("pose_difference", 6, (6, 6), 6, _pose_difference)
POINT_PRIOR = ResidualType("point_prior", 3, (3,), 3, _point_prior)


def mixed_problem(n_poses=7, n_points=30, seed=5):
    """Two f-groups of different block sizes (poses 6, shared intrinsics 3: their residuals give U
    off-diagonal pose-intrinsics blocks), an eliminated point group, f-only residuals (pose chain)
    and e-only residuals (point priors)."""
    rng = np.random.default_rng(seed)
    poses = np.column_stack([rng.normal(0, 0.05, (n_poses, 3)), rng.normal(0, 0.3, (n_poses, 2)),
                             10 + rng.normal(0, 0.3, n_poses)])
    intrinsics = np.array([[500.0, 1.0, -2.0], [650.0, 0.0, 3.0]])
    points = rng.uniform(-2, 2, (n_points, 3))
    pose_i = np.concatenate([rng.permutation(n_poses)[:4] for _ in range(n_points)])
    point_i = np.repeat(np.arange(n_points), 4)
    intr_i = pose_i % 2
    obs = np.zeros((pose_i.size, 2))
    _pinhole_residuals((poses, intrinsics, points), np.column_stack([pose_i, intr_i, point_i]), obs, obs)
    obs = obs + rng.normal(0, 1.0, obs.shape)  # with data 0 the residual is the projection itself
    p = sparselm.Problem()
    p.add_parameter_group("poses", poses + rng.normal(0, 0.01, poses.shape))
    p.add_parameter_group("intrinsics", intrinsics * (1 + rng.normal(0, 0.01, intrinsics.shape)))
    p.add_parameter_group("points", points + rng.normal(0, 0.05, points.shape), eliminate=True)
    p.add_residual_group("proj", PINHOLE, [("poses", pose_i), ("intrinsics", intr_i), ("points", point_i)], obs)
    chain = np.arange(n_poses - 1)
    p.add_residual_group("chain", POSE_DIFFERENCE, [("poses", chain), ("poses", chain + 1)],
                         poses[chain + 1] - poses[chain], sigma=0.1)
    prior = np.arange(0, n_points, 3)
    p.add_residual_group("prior", POINT_PRIOR, [("points", prior)], points[prior], sigma=1.0)
    return p


def constant_blocks_problem():
    p = ba_problem(n_cameras=8, n_points=50, seed=4)
    p.set_constant("cameras", [0, 5])
    p.set_constant("points", [1, 2, 17, 30])
    return p


def constant_coordinates_problem():
    p = ba_problem(n_cameras=6, n_points=40, seed=6)
    p.parameter_groups["cameras"].constant_coordinates[[7, 8]] = True  # k1, k2 held in every camera
    p.set_constant("cameras", [2])
    return p


def colmap_problem():
    """A COLMAP model's bundle adjustment: poses (6 tangent columns) and shared SIMPLE_RADIAL intrinsics (4
    columns, 2 held), every point seen by every image."""
    model = synthetic_model("SIMPLE_RADIAL", n_images=8, n_cameras=2, n_points=60, seed=2).initial
    return build_colmap_problem(model).problem


CASES = {
    "ba": lambda: ba_problem(),
    "colmap": colmap_problem,
    "constant_blocks": constant_blocks_problem,
    "constant_coordinates": constant_coordinates_problem,
    "duplicate_observations": lambda: ba_problem(n_cameras=5, n_points=30, seed=8, duplicates=25),
    "mixed_block_sizes": mixed_problem,
}


# ---------------------------------------------------------------------------------------------
# Helpers

def cg_parts(solver):
    """(BlockPCG, matvec(x, x_pad, y)) of an iterative Schur solver of either class."""
    if isinstance(solver, ImplicitSchur):
        return solver.pcg, solver._matvec
    return solver._it_pcg, solver._it_matvec


class Linearised:
    """A problem linearised at its initial values, with a random positive damping diagonal."""

    def __init__(self, problem, seed=0, scale=(1e-3, 1e-1)):
        self.problem = problem
        self.layout = build_layout(problem)
        self.timer = PhaseTimer()
        self.evaluator = Evaluator(problem, self.layout, self.timer)
        self.evaluator.linearize({g.name: g.values.copy() for g in problem.parameter_groups.values()})
        rng = np.random.default_rng(seed)
        norms = np.maximum(self.evaluator.column_norms, 1e-6)
        self.diagonal = norms * rng.uniform(*scale, norms.size) + self.layout.constant_columns

    def solver(self, name, variant=None, termination=None, **options):
        opts = LinearSolverOptions(**options)
        if name == "iterative_schur" and variant == "jacobian" and eliminated_group_index(self.layout) is None:
            s = IterativeSchur(self.layout, self.evaluator, self.timer, opts, termination=termination)  # the fallback
        elif name == "iterative_schur" and variant == "jacobian":
            s = ImplicitSchur(self.layout, self.evaluator, self.timer, opts, termination=termination)
        elif name == "iterative_schur":
            s = IterativeSchur(self.layout, self.evaluator, self.timer, opts, variant=variant, termination=termination)
        else:
            s = registry.get(name).solver(self.layout, self.evaluator, self.timer, opts)
        s.linearize()
        return s

    def step(self, name, variant=None, **options):
        sol = self.solver(name, variant, **options).solve(self.diagonal)
        assert sol.ok, f"{name} {variant}: {sol.message}"
        return sol


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------------------------------
# Exactness

@pytest.mark.parametrize("case", sorted(CASES))
def test_all_solvers_give_the_same_step(case):
    lin = Linearised(CASES[case]())
    ref = lin.step("dense").step.copy()
    assert np.all(np.isfinite(ref)) and np.linalg.norm(ref) > 0
    # the reference solves the damped system
    dense = lin.solver("dense")
    residual = (dense.hessian + np.diag(lin.diagonal)) @ ref + dense.gradient
    assert np.linalg.norm(residual) <= 1e-9 * np.linalg.norm(dense.gradient)
    for name in DIRECT[1:]:
        assert rel(lin.step(name).step, ref) < 1e-8, name
    for variant, pc in ITERATIVE:
        sol = lin.step("iterative_schur", variant, preconditioner=pc, **EXACT_CG)
        assert rel(sol.step, ref) < 1e-8, (variant, pc, sol.iterations)
        assert sol.iterations >= 1 and not sol.exact
    # held coordinates do not move
    assert np.all(ref[lin.layout.constant_columns] == 0.0)


def test_implicit_matvec_equals_the_formed_schur_complement():
    lin = Linearised(mixed_problem())
    direct = lin.solver("dense_schur")
    assert direct.solve(lin.diagonal).ok
    s_lower = direct.lower_matrix(direct.s_values)
    s_full = s_lower + s_lower.T - np.diag(np.diag(s_lower))
    x = np.random.default_rng(1).normal(size=s_full.shape[0])
    for variant in VARIANTS:
        it = lin.solver("iterative_schur", variant)
        assert it.solve(lin.diagonal).ok
        np.testing.assert_allclose(it.rhs, direct.rhs, rtol=1e-10, atol=1e-10 * np.abs(direct.rhs).max())
        y = np.zeros_like(x)
        pcg, matvec = cg_parts(it)
        pcg.p_pad[...] = 0.0
        if pcg.p_pad.size:
            pcg.p_pad[pcg.col_block, pcg.col_within] = x
        xy = matvec(x, pcg.p_pad, y)
        np.testing.assert_allclose(y, s_full @ x, rtol=1e-10, atol=1e-10 * np.abs(s_full @ x).max())
        assert xy == pytest.approx(x @ s_full @ x, rel=1e-10)


def test_preconditioner_blocks():
    """p_inv holds the inverse of diag blocks of U + D (jacobi) or of S (schur_jacobi), padding zero."""
    lin = Linearised(mixed_problem())
    direct = lin.solver("dense_schur")
    assert direct.solve(lin.diagonal).ok
    s_lower = direct.lower_matrix(direct.s_values)
    u_lower = direct.lower_matrix(direct.u_values)
    lay = lin.layout
    n_f = lay.n_reduced_blocks
    for variant in VARIANTS:
        for pc, mat in (("schur_jacobi", s_lower), ("jacobi", u_lower + np.diag(lin.diagonal[:lay.n_reduced_columns]))):
            it = lin.solver("iterative_schur", variant, preconditioner=pc)
            assert it.solve(lin.diagonal).ok
            for f in range(n_f):
                c0, k = lay.block_col[f], lay.block_size[f]
                blk = mat[c0:c0 + k, c0:c0 + k]
                blk = np.tril(blk) + np.tril(blk, -1).T
                p_inv = cg_parts(it)[0].p_inv
                np.testing.assert_allclose(p_inv[f, :k, :k], np.linalg.inv(blk), rtol=1e-9,
                                           atol=1e-12 * np.abs(np.linalg.inv(blk)).max())
                assert np.all(p_inv[f, k:, :] == 0) and np.all(p_inv[f, :, k:] == 0)


def test_spd_inverse_in_place():
    rng = np.random.default_rng(2)
    for k in (1, 2, 3, 6, 9):
        g = rng.normal(size=(k, k))
        a = g @ g.T + 0.1 * np.eye(k)
        b = np.full((9, 9), 7.0)
        b[:k, :k] = a
        assert spd_inverse_inplace(b, k)
        np.testing.assert_allclose(b[:k, :k], np.linalg.inv(a), rtol=1e-9, atol=1e-12)
        assert np.all(b[k:, :] == 7.0) and np.all(b[:, k:] == 7.0)
        indefinite = a - 2 * np.linalg.eigvalsh(a).max() * np.eye(k)
        assert not spd_inverse_inplace(indefinite.copy(), k)


def test_dense_schur_fills_the_same_s_as_sparse_schur(monkeypatch):
    """dense_schur addresses a dense array with the kernels' CSC formula (see linalg.schur.direct):
    with the same cell-pair elimination, the same S and U, entry for entry, as sparse_schur's CSC values."""
    monkeypatch.setattr(eliminate, "STACKED_MAX_FLOP_RATIO", 0.0)
    lin = Linearised(mixed_problem())
    dense, sparse = lin.solver("dense_schur"), lin.solver("sparse_schur")
    assert not dense.stacked
    assert dense.solve(lin.diagonal).ok and sparse.solve(lin.diagonal).ok
    for values in ("s_values", "u_values"):
        np.testing.assert_array_equal(dense.lower_matrix(getattr(dense, values)),
                                      sparse.lower_matrix(getattr(sparse, values)))
    assert dense.structure.pattern.row_indices is None  # no CSC pattern of S was built for dense_schur


@pytest.mark.parametrize("block_bytes", [eliminate.STACK_BLOCK_BYTES, 1, 5000])
@pytest.mark.parametrize("case", ["mixed", "ba", "colmap"])
def test_stacked_elimination_forms_the_same_s_as_the_cell_pairs(monkeypatch, case, block_bytes):
    """dense_schur's stacked elimination (Gram products of the points' stacked factors, block by block)
    and its cell-pair updates form the same S, right-hand side and step, to round-off; U is the same bit
    for bit. Blocks of the default size, of one point each, and of a few points (chunks end in a
    partial block) all accumulate every point."""
    monkeypatch.setattr(eliminate, "STACK_BLOCK_BYTES", block_bytes)
    problem = {"mixed": mixed_problem, "ba": lambda: ba_problem(duplicates=5),
               "colmap": colmap_problem}[case]()
    lin = Linearised(problem)
    solvers = {}
    for ratio in (0.0, math.inf):
        monkeypatch.setattr(eliminate, "STACKED_MAX_FLOP_RATIO", ratio)
        solvers[ratio] = lin.solver("dense_schur")
    pairs, stacked = solvers[0.0], solvers[math.inf]
    assert stacked.stacked and not pairs.stacked
    a, b = pairs.solve(lin.diagonal), stacked.solve(lin.diagonal)
    assert a.ok and b.ok
    assert pairs.u_values.tobytes() == stacked.u_values.tobytes()
    s_pairs, s_stacked = pairs.lower_matrix(pairs.s_values), stacked.lower_matrix(stacked.s_values)
    assert np.abs(s_stacked - s_pairs).max() <= 1e-12 * np.abs(s_pairs).max()
    np.testing.assert_allclose(stacked.rhs, pairs.rhs, rtol=0, atol=1e-12 * np.abs(pairs.rhs).max())
    assert rel(b.step, a.step) < 1e-9
    assert stacked.info()["elimination"] == "stacked" and pairs.info()["elimination"] == "cell_pairs"


def test_stacked_elimination_is_chosen_when_points_see_most_kept_blocks():
    """The flop rule: every point of the COLMAP-like problem sees every image (stacked); BA points that see
    a few of many cameras stay with the cell pairs."""
    assert Linearised(colmap_problem()).solver("dense_schur").stacked
    assert not Linearised(ba_problem(n_cameras=30, n_points=200)).solver("dense_schur").stacked
    assert not eliminate.stacked_elimination_pays(2000, 10**6, 3, 10**9, 9)  # Gram product: 25000x the flops


def test_serial_and_parallel_chunk_reductions_give_the_same_s_bitwise(monkeypatch):
    """Small S sums the threads' private copies serially, large S in parallel: the same S and right-hand
    side, bit for bit (each entry adds the chunks in one order either way)."""
    lin = Linearised(mixed_problem())
    results = []
    for min_adds in (eliminate.PARALLEL_REDUCE_MIN_ADDS, 0):  # this S is small: serial, then forced parallel
        monkeypatch.setattr(eliminate, "PARALLEL_REDUCE_MIN_ADDS", min_adds)
        solver = lin.solver("sparse_schur")
        assert solver._s_private.shape[0] >= 2 or numba.get_num_threads() == 1
        assert solver.solve(lin.diagonal).ok
        results.append((solver.s_values.copy(), solver.rhs.copy()))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


def test_symmetric_csr_is_the_full_matrix():
    lin = Linearised(mixed_problem())
    s = lin.solver("sparse_schur")  # S's values in CSC order (dense_schur keeps a dense array)
    s.solve(lin.diagonal)
    p = s.structure.pattern
    indptr, indices, src, diag_slot = symmetric_csr(p)
    import scipy.sparse as sp

    full = sp.csr_matrix((s.s_values[src], indices, indptr), shape=(p.colptr.size - 1,) * 2).toarray()
    lower = s.lower_matrix(s.s_values)
    np.testing.assert_array_equal(full, lower + lower.T - np.diag(np.diag(lower)))
    np.testing.assert_array_equal(indices[diag_slot], np.arange(p.colptr.size - 1))


# ---------------------------------------------------------------------------------------------
# Failures are statuses

def _negative_on(lin, columns):
    d = lin.diagonal.copy()
    d[columns] = -1e3 * (1.0 + np.abs(lin.evaluator.column_norms[columns]))
    return d


@pytest.mark.parametrize("where", ["e", "f"])
def test_not_positive_definite_is_a_status(where, monkeypatch):
    lin = Linearised(ba_problem())
    lay = lin.layout
    cols = np.arange(lay.n_reduced_columns, lay.n_columns) if where == "e" else np.arange(lay.n_reduced_columns)
    d = _negative_on(lin, cols)
    for name in DIRECT:
        sol = lin.solver(name).solve(d)
        assert not sol.ok and sol.step is None and sol.message, name
    monkeypatch.setattr(eliminate, "STACKED_MAX_FLOP_RATIO", math.inf)  # and dense_schur's stacked elimination
    solver = lin.solver("dense_schur")
    sol = solver.solve(d)
    assert solver.stacked and not sol.ok and sol.step is None and "positive definite" in sol.message
    for variant, pc in ITERATIVE:
        sol = lin.solver("iterative_schur", variant, preconditioner=pc, **EXACT_CG).solve(d)
        assert not sol.ok and sol.step is None and "positive definite" in sol.message, (variant, pc)


def test_cg_detects_negative_curvature():
    """S indefinite while every preconditioner block is SPD: only CG's p^T S p <= 0 test can tell."""
    lin = Linearised(ba_problem(n_cameras=6, n_points=60, seed=11), scale=(1e-9, 1e-8))
    direct = lin.solver("dense_schur")
    assert direct.solve(lin.diagonal).ok
    lay = lin.layout
    n_red = lay.n_reduced_columns
    s_lower = direct.lower_matrix(direct.s_values)
    s_full = s_lower + s_lower.T - np.diag(np.diag(s_lower))
    block_min = min(np.linalg.eigvalsh(s_full[c:c + 9, c:c + 9]).min() for c in range(0, n_red, 9))
    eig = np.linalg.eigvalsh(s_full)
    shift = 0.5 * block_min  # S - shift I: blocks stay SPD, S does not
    assert eig[0] < shift and (eig < shift).sum() >= 3
    d = lin.diagonal.copy()
    d[:n_red] -= shift
    for variant in VARIANTS:
        sol = lin.solver("iterative_schur", variant, preconditioner="schur_jacobi", **EXACT_CG).solve(d)
        assert not sol.ok and "p^T S p" in sol.message, (variant, sol.message)
        assert sol.iterations >= 1
    assert not lin.solver("sparse_schur").solve(d).ok


def test_gauss_newton_on_a_gauge_free_problem_does_not_raise():
    """No damping, 7-dof gauge freedom: S is singular; every solver answers with a status or a step."""
    lin = Linearised(ba_problem())
    zero = np.zeros_like(lin.diagonal)
    for name in DIRECT:
        sol = lin.solver(name).solve(zero)
        assert isinstance(sol.ok, bool)
    for variant, pc in ITERATIVE:
        sol = lin.solver("iterative_schur", variant, preconditioner=pc, max_cg_iterations=50).solve(zero)
        assert isinstance(sol.ok, bool)
        assert sol.ok or sol.message


# ---------------------------------------------------------------------------------------------
# Forcing, limits, counts

@pytest.mark.parametrize("variant", VARIANTS)
def test_forcing_and_limits(variant):
    lin = Linearised(ba_problem(n_cameras=10, n_points=80, seed=12))
    loose = lin.solver("iterative_schur", variant, termination="residual", cg_tolerance=0.1)
    sol = loose.solve(lin.diagonal)
    assert sol.ok and sol.iterations >= 1 and loose.last_relative_residual <= 0.1
    assert sol.iterations == loose.last_cg_iterations
    exact = lin.solver("iterative_schur", variant, **EXACT_CG)
    assert exact.solve(lin.diagonal).iterations > sol.iterations
    # the true reduced residual matches the tolerance asked for
    direct = lin.solver("dense_schur")
    direct.solve(lin.diagonal)
    s_lower = direct.lower_matrix(direct.s_values)
    s_full = s_lower + s_lower.T - np.diag(np.diag(s_lower))
    x = sol.step[:lin.layout.n_reduced_columns]
    assert np.linalg.norm(s_full @ x - direct.rhs) <= 0.1 * 1.01 * np.linalg.norm(direct.rhs)
    capped = lin.solver("iterative_schur", variant, cg_tolerance=1e-14, max_cg_iterations=3)
    sol = capped.solve(lin.diagonal)
    assert sol.ok and sol.iterations == 3 and "max_cg_iterations" in sol.message
    forced = lin.solver("iterative_schur", variant, cg_tolerance=0.99, min_cg_iterations=7)
    assert forced.solve(lin.diagonal).iterations >= 7
    # an inexact step still decreases the model
    assert lin.evaluator.model_cost_change(lin.solver("iterative_schur", variant).solve(lin.diagonal).step) > 0


def test_quadratic_termination():
    """Ceres' Nash-Sofer test k (Q_k - Q_k-1) / Q_k < eta on Q(x) = x^T S x - 2 b^T x."""
    lin = Linearised(ba_problem(n_cameras=10, n_points=80, seed=12))
    direct = lin.solver("dense_schur")
    direct.solve(lin.diagonal)
    s_lower = direct.lower_matrix(direct.s_values)
    s_full = s_lower + s_lower.T - np.diag(np.diag(s_lower))
    b = direct.rhs

    def q(x):
        return x @ s_full @ x - 2 * b @ x

    for variant in VARIANTS:
        it = lin.solver("iterative_schur", variant, termination="quadratic", cg_tolerance=0.1)
        sol = it.solve(lin.diagonal)
        assert sol.ok and sol.iterations >= 2 and it.info()["cg_termination"] == "quadratic"
        k = sol.iterations
        x_k = sol.step[:b.size].copy()
        x_prev = lin.solver("iterative_schur", variant, cg_tolerance=1e-300, max_cg_iterations=k - 1).solve(
            lin.diagonal).step[:b.size]
        assert k * (q(x_k) - q(x_prev)) / q(x_k) < 0.1
        assert q(x_k) < q(x_prev) < 0
        exact = lin.solver("iterative_schur", variant, termination="quadratic", **EXACT_CG).solve(lin.diagonal)
        assert exact.ok and exact.iterations > k


def test_options_are_validated():
    lin = Linearised(ba_problem())
    with pytest.raises(ValueError, match="termination"):
        lin.solver("iterative_schur", termination="never")
    with pytest.raises(ValueError, match="variant"):
        lin.solver("iterative_schur", "sideways")
    with pytest.raises(ValueError, match="preconditioner"):
        lin.solver("iterative_schur", preconditioner="ilu")
    opts = LinearSolverOptions(extra={"schur_variant": "explicit"})
    s = IterativeSchur(lin.layout, lin.evaluator, lin.timer, opts)
    assert s.variant == "explicit" and s.info()["variant"] == "explicit"


@pytest.mark.parametrize("name", ["sparse_schur", "dense_schur", "iterative_schur"])
def test_solve_reports_linear_solver_iterations(name):
    problem = ba_problem(n_cameras=8, n_points=100, seed=13)
    reference = sparselm.solve(ba_problem(n_cameras=8, n_points=100, seed=13), linear_solver="dense",
                               max_iterations=100, function_tolerance=1e-12)
    summary = sparselm.solve(problem, linear_solver=name, max_iterations=100, function_tolerance=1e-12)
    assert summary.termination == "convergence"
    assert summary.final_cost == pytest.approx(reference.final_cost, rel=1e-6)
    its = [r.linear_solver_iterations for r in summary.iterations[1:]]
    if name == "iterative_schur":
        assert all(k >= 1 for k in its) and summary.linear_solver["total_cg_iterations"] == sum(its)
        assert "cg" in summary.phases and "preconditioner" in summary.phases
    else:
        assert all(k == 1 for k in its)


# ---------------------------------------------------------------------------------------------
# Factor-size estimate

@pytest.mark.parametrize("ordering", ["natural", "amd"])
def test_factor_estimate_matches_cholmod(ordering):
    lin = Linearised(ba_problem(n_cameras=30, n_points=600, seed=14))
    s = lin.solver("sparse_schur", ordering=ordering)
    assert s.solve(lin.diagonal).ok
    est = estimate_factor_nnz(s)
    assert est["complete"] and est["ordering"] == ordering
    matrix = s.structure.pattern.matrix(s.s_values)
    simplicial = CholmodFactor(matrix, ordering, "simplicial")
    assert simplicial.factorize(matrix)
    exact = simplicial.factor_nnz()
    if ordering == "natural":  # same block order: the block count is CHOLMOD's symbolic count
        assert est["nnz"] == exact
    else:  # AMD on the block graph vs on the scalar graph
        assert 0.8 * exact <= est["nnz"] <= 1.25 * exact
    assert est["flops"] > est["nnz"]


def test_block_factor_counts_small_patterns():
    # arrow pointing down: no fill; arrow pointing up with natural order: full fill
    n = 6
    size = np.array([2, 1, 3, 2, 2, 1])
    rows = np.full(n - 1, n - 1)
    cols = np.arange(n - 1)
    tri = lambda k: k * (k + 1) // 2
    no_fill = int(sum(tri(k) for k in size) + size[-1] * size[:-1].sum())
    assert block_factor_nnz(rows, cols, size, "natural")["nnz"] == no_fill
    up = block_factor_nnz(np.arange(1, n), np.zeros(n - 1, dtype=int), size, "natural")
    assert up["nnz"] == tri(int(size.sum())) and up["complete"]
    capped = block_factor_nnz(np.arange(1, n), np.zeros(n - 1, dtype=int), size, "natural", cap=3)
    assert not capped["complete"] and capped["nnz"] < up["nnz"]
