"""sparselm.least_squares against scipy.optimize.least_squares on the same problems.

Same minimum (cost within 1e-6 relative, or both at zero for zero-residual problems); on the sparse
banded problems (10^5 residuals) no more function evaluations than scipy; Jacobians in every
format; finite differences with column colouring (a few calls per Jacobian, counted); sigma
weighting equal to pre-whitening; clear errors where scipy's semantics cannot be honoured.
"""
import sparselm  # noqa: F401  (first: its BLAS thread policy, before numpy loads BLAS)
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from sparselm.scipy_api import TERMINATION_MESSAGES, least_squares
from sparselm.lm.summary import Summary

SCIPY_FIELDS = ("x", "cost", "fun", "jac", "grad", "optimality", "active_mask", "nfev", "njev", "status",
                "message", "success")


def same_cost(a, b, rel=1e-6, zero=1e-12):
    """Costs equal within rel, or both below ``zero`` (zero-residual problems)."""
    return abs(a - b) <= rel * max(abs(a), abs(b)) or max(a, b) <= zero


class Counted:
    """A residual function that counts its calls."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = 0

    def __call__(self, x, *args, **kwargs):
        self.calls += 1
        return self.fun(x, *args, **kwargs)


# -- problems ----------------------------------------------------------------------------------
def rosenbrock(x):
    return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def rosenbrock_jac(x):
    return np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])


T_EXP = np.linspace(0, 10, 40)


def exp_data(n_outliers=0, seed=0):
    rng = np.random.default_rng(seed)
    y = 0.5 + 2.0 * np.exp(-1.0 * T_EXP) + 0.1 * rng.standard_normal(T_EXP.size)
    if n_outliers:
        idx = rng.choice(T_EXP.size, n_outliers, replace=False)
        y[idx] += 10 * rng.standard_normal(n_outliers)
    return y


def exp_residual(p, y):
    return p[0] + p[1] * np.exp(p[2] * T_EXP) - y


def exp_jac(p, y):
    e = np.exp(p[2] * T_EXP)
    return np.column_stack([np.ones_like(T_EXP), e, p[1] * T_EXP * e])


def broyden(x):
    """The scipy docs' sparse example: f_i = (3 - x_i) x_i + 1 - x_{i-1} - 2 x_{i+1}."""
    f = (3 - x) * x + 1
    f[1:] -= x[:-1]
    f[:-1] -= 2 * x[1:]
    return f


def broyden_jac(x, fmt="csr"):
    n = x.size
    return sp.diags([-np.ones(n - 1), 3 - 2 * x, -2 * np.ones(n - 1)], [-1, 0, 1], format=fmt)


def broyden_sparsity(n):
    return sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")


def broyden_tridiagonal(x):
    """The classical Broyden tridiagonal function: (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1."""
    f = (3 - 2 * x) * x + 1
    f[1:] -= x[:-1]
    f[:-1] -= 2 * x[1:]
    return f


def broyden_tridiagonal_jac(x):
    n = x.size
    return sp.diags([-np.ones(n - 1), 3 - 4 * x, -2 * np.ones(n - 1)], [-1, 0, 1], format="csr")


def smoothing_problem(n, weight=30.0, seed=0):
    """Curve smoothing through exp(): rows exp(x_i) - y_i and weight * second differences (cond ~1e4)."""
    t = np.linspace(0, 1, n)
    y = np.exp(0.5 * np.sin(6 * np.pi * t)) + 0.05 * np.random.default_rng(seed).standard_normal(n)
    d2 = weight * sp.diags([np.ones(n - 2), -2 * np.ones(n - 2), np.ones(n - 2)], [0, 1, 2], shape=(n - 2, n),
                           format="csr")

    def fun(x):
        return np.concatenate([np.exp(x) - y, weight * (x[:-2] - 2 * x[1:-1] + x[2:])])

    def jac(x):
        return sp.vstack([sp.diags(np.exp(x)), d2], format="csr")

    return fun, jac


def banded_nonlinear(x):
    """Broyden rows plus a nonlinear diagonal block: 2n residuals, a non-zero minimum."""
    return np.concatenate([broyden(x), 0.5 * (np.exp(-x) - 1.5) + 0.3 * np.sin(x) ** 2])


def banded_nonlinear_jac(x):
    d = sp.diags(-0.5 * np.exp(-x) + 0.6 * np.sin(x) * np.cos(x))
    return sp.vstack([broyden_jac(x), d], format="csr")


N_BANDED = 100_000


# -- scipy references, computed once ------------------------------------------------------------
BROYDENS = {"scipy_docs": (broyden, broyden_jac), "broyden_tridiagonal": (broyden_tridiagonal, broyden_tridiagonal_jac)}


@pytest.fixture(scope="module", params=list(BROYDENS))
def scipy_broyden(request):
    fun, jac = BROYDENS[request.param]
    return request.param, scipy.optimize.least_squares(fun, -np.ones(N_BANDED), jac=jac)


@pytest.fixture(scope="module")
def scipy_banded_nonlinear():
    return scipy.optimize.least_squares(banded_nonlinear, -np.ones(N_BANDED // 2), jac=banded_nonlinear_jac)


@pytest.fixture(scope="module")
def scipy_broyden_fd():
    f = Counted(broyden)
    res = scipy.optimize.least_squares(f, -np.ones(N_BANDED), jac_sparsity=broyden_sparsity(N_BANDED))
    return res, f.calls


# -- same minimum as scipy -----------------------------------------------------------------------
@pytest.mark.parametrize("jac", [rosenbrock_jac, "2-point", "3-point", "cs"])
def test_rosenbrock(jac):
    ref = scipy.optimize.least_squares(rosenbrock, [2.0, 2.0], jac=jac)
    res = least_squares(rosenbrock, [2.0, 2.0], jac=jac)
    assert res.success and res.status in (1, 2, 3, 4)
    assert same_cost(res.cost, ref.cost)
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-7)


def test_result_fields():
    res = least_squares(rosenbrock, [2.0, 2.0], jac=rosenbrock_jac)
    assert isinstance(res, scipy.optimize.OptimizeResult)
    for name in SCIPY_FIELDS:
        assert name in res, name
    assert isinstance(res.summary, Summary) and res.summary.ok
    assert res.jac.shape == (2, 2) and isinstance(res.jac, np.ndarray)
    np.testing.assert_allclose(res.grad, res.jac.T @ res.fun, atol=1e-14)
    assert res.optimality == pytest.approx(np.max(np.abs(res.grad)))
    assert res.cost == pytest.approx(0.5 * res.fun @ res.fun, abs=1e-30)
    assert res.message == TERMINATION_MESSAGES[res.status]
    assert res.nfev == res.summary.problem["nfev"] and res.active_mask.shape == (2,)


@pytest.mark.parametrize("jac", [exp_jac, "2-point"])
def test_exponential_fit(jac):
    y = exp_data()
    ref = scipy.optimize.least_squares(exp_residual, [1.0, 1.0, -0.5], jac=jac, args=(y,))
    res = least_squares(exp_residual, [1.0, 1.0, -0.5], jac=jac, args=(y,))
    assert res.success and ref.success
    assert same_cost(res.cost, ref.cost)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-5, atol=1e-6)
    # From c = 0 scipy's default (trf, x_scale=1) stalls at max_nfev; Marquardt scaling gets there.
    far = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=jac, args=(y,))
    assert far.success and same_cost(far.cost, ref.cost)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_loss_with_outliers(loss):
    y = exp_data(n_outliers=6, seed=1)
    kw = dict(jac=exp_jac, kwargs={"y": y}, loss=loss, f_scale=0.1, ftol=1e-12, xtol=1e-12, gtol=1e-12)
    ref = scipy.optimize.least_squares(exp_residual, [1.0, 1.0, -0.5], **kw)
    res = least_squares(exp_residual, [1.0, 1.0, -0.5], **kw)
    assert res.success, res.message
    assert same_cost(res.cost, ref.cost), (res.cost, ref.cost)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-4, atol=1e-5)
    # the robust fit ignores the outliers; a plain fit does not
    plain = least_squares(exp_residual, [1.0, 1.0, -0.5], jac=exp_jac, args=(y,))
    assert abs(res.x[2] + 1.0) < abs(plain.x[2] + 1.0)


def test_callable_loss_matches_builtin():
    def cauchy(z):
        return np.vstack([np.log1p(z), 1 / (1 + z), -1 / (1 + z) ** 2])

    y = exp_data(n_outliers=6, seed=1)
    a = least_squares(exp_residual, [1.0, 1.0, -0.5], jac=exp_jac, args=(y,), loss=cauchy, f_scale=0.1)
    b = least_squares(exp_residual, [1.0, 1.0, -0.5], jac=exp_jac, args=(y,), loss="cauchy", f_scale=0.1)
    assert a.cost == pytest.approx(b.cost, rel=1e-10)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-8)


# -- sparse banded problems, 10^5 residuals ----------------------------------------------------
def test_broyden_banded(scipy_broyden):
    name, ref = scipy_broyden
    fun, jac = BROYDENS[name]
    res = least_squares(fun, -np.ones(N_BANDED), jac=jac)
    assert res.success and ref.success
    assert same_cost(res.cost, ref.cost)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    assert res.nfev <= ref.nfev, (res.nfev, ref.nfev)
    assert res.summary.linear_solver["name"] == "sparse_normal_cholesky"
    assert res.summary.linear_solver["analyses"] == 1
    assert sp.issparse(res.jac) and res.jac.shape == (N_BANDED, N_BANDED)


def test_banded_nonlinear(scipy_banded_nonlinear):
    ref = scipy_banded_nonlinear
    res = least_squares(banded_nonlinear, -np.ones(N_BANDED // 2), jac=banded_nonlinear_jac)
    assert res.success and ref.success
    assert ref.cost > 1.0
    assert same_cost(res.cost, ref.cost), (res.cost, ref.cost)
    assert res.nfev <= ref.nfev, (res.nfev, ref.nfev)


def test_ill_conditioned_banded_smoothing():
    """Where scipy's lsmr steps are inexact: same minimum (sparselm's no higher), far fewer evaluations."""
    n = 20_001  # 40_000 residuals: the conditioning (~1e4) does not depend on n
    fun, jac = smoothing_problem(n)
    x0 = np.zeros(n)
    ref = scipy.optimize.least_squares(fun, x0, jac=jac)
    res = least_squares(fun, x0, jac=jac)
    assert res.fun.size == 2 * n - 2 and res.success
    assert same_cost(res.cost, ref.cost) and res.cost <= ref.cost * (1 + 1e-9)
    assert res.nfev <= ref.nfev, (res.nfev, ref.nfev)


def test_finite_differences_with_colouring(scipy_broyden_fd):
    ref, ref_calls = scipy_broyden_fd
    f = Counted(broyden)
    res = least_squares(f, -np.ones(N_BANDED), jac_sparsity=broyden_sparsity(N_BANDED))
    assert same_cost(res.cost, ref.cost)
    assert res.nfev <= ref.nfev
    fd = res.summary.problem
    assert fd["fd_colours"] == 3  # tridiagonal: three structurally orthogonal column groups
    assert f.calls == res.nfev + fd["fd_function_calls"] == res.nfev + 3 * res.njev
    assert f.calls <= ref_calls


def test_three_point_colouring_calls():
    n = 2000
    f = Counted(broyden)
    res = least_squares(f, -np.ones(n), jac="3-point", jac_sparsity=broyden_sparsity(n).toarray())
    assert res.success
    assert res.summary.problem["fd_function_calls"] == 6 * res.njev  # two per colour
    assert f.calls == res.nfev + 6 * res.njev
    exact = least_squares(broyden, -np.ones(n), jac=broyden_jac)
    np.testing.assert_allclose(res.x, exact.x, atol=1e-9)


def test_dense_finite_differences_cost_n_calls():
    y = exp_data()
    f = Counted(exp_residual)
    res = least_squares(f, [1.0, 1.0, 0.0], args=(y,))
    assert res.summary.problem["fd_colours"] == 3 and f.calls == res.nfev + 3 * res.njev
    assert isinstance(res.jac, np.ndarray)


# -- Jacobian formats and patterns ---------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "dense"])
def test_jacobian_formats(fmt):
    n = 300 if fmt == "dense" else 3000

    def jac(x):
        j = broyden_jac(x, "csr")
        return j.toarray() if fmt == "dense" else j.asformat(fmt)

    ref = least_squares(broyden, -np.ones(n), jac=broyden_jac, linear_solver="sparse_normal_cholesky")
    res = least_squares(broyden, -np.ones(n), jac=jac, linear_solver="sparse_normal_cholesky")
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-12)
    assert res.nfev == ref.nfev and res.summary.problem["jacobian_pattern_versions"] == 1


def test_coo_with_duplicates_is_summed():
    n = 500

    def jac(x):
        j = broyden_jac(x, "coo")
        # split the diagonal in two halves stored as duplicate entries
        d = np.arange(n)
        rows = np.concatenate([j.row, d])
        cols = np.concatenate([j.col, d])
        vals = np.concatenate([np.where(j.row == j.col, 0.5 * j.data, j.data), 0.5 * (3 - 2 * x)])
        return sp.coo_matrix((vals, (rows, cols)), shape=(n, n))

    ref = least_squares(broyden, -np.ones(n), jac=broyden_jac)
    res = least_squares(broyden, -np.ones(n), jac=jac)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-12)


def test_changing_jacobian_pattern_is_handled():
    """A Jacobian whose zero entries are dropped at some points: patterns shrink and grow."""
    n = 400
    calls = []

    def jac(x):
        j = broyden_jac(x, "csr")
        if len(calls) % 2 == 0:  # every other call: drop the super-diagonal of the first rows (wrong)
            j = j.tolil()
            j[0, 1] = 0
            j = j.tocsr()
            j.eliminate_zeros()
        calls.append(1)
        return j

    def jac_exact_later(x):
        j = broyden_jac(x, "csr")
        if not calls:  # first call: a subset of the true pattern (only the diagonal)
            calls.append(1)
            return sp.diags(3 - 2 * x, format="csr")
        return j

    ref = least_squares(broyden, -np.ones(n), jac=broyden_jac)
    res = least_squares(broyden, -np.ones(n), jac=jac_exact_later)
    assert res.summary.problem["jacobian_pattern_versions"] == 2  # grew once, to the union
    assert res.summary.linear_solver["analyses"] == 2
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    calls.clear()
    res2 = least_squares(broyden, -np.ones(n), jac=jac, linear_solver="sparse_normal_cholesky")
    assert res2.summary.problem["jacobian_pattern_versions"] == 2
    assert np.isfinite(res2.cost)


def test_dense_and_sparse_linear_solvers_agree():
    y = exp_data(n_outliers=3)
    a = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), linear_solver="dense", loss="huber")
    b = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), linear_solver="sparse_normal_cholesky",
                      loss="huber")
    assert a.summary.linear_solver["name"] == "dense" and b.summary.linear_solver["name"] == "sparse_normal_cholesky"
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10)
    assert a.nfev == b.nfev


# -- x_scale, sigma -----------------------------------------------------------------------------
def test_x_scale_array():
    y = exp_data()
    ref = scipy.optimize.least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), x_scale=[1, 10, 0.1])
    res = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), x_scale=[1, 10, 0.1])
    assert same_cost(res.cost, ref.cost)
    assert res.summary.options_used["x_scale"] == "array"
    lev = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), x_scale=1.0)
    assert same_cost(lev.cost, ref.cost)


def test_sigma_vector_equals_prewhitening():
    y = exp_data(n_outliers=2)
    sigma = 0.05 + 0.1 * np.abs(np.sin(T_EXP))
    a = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), sigma=sigma, loss="soft_l1")
    b = least_squares(lambda p: exp_residual(p, y) / sigma, [1.0, 1.0, 0.0],
                      jac=lambda p: exp_jac(p, y) / sigma[:, None], loss="soft_l1")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-12)
    assert a.cost == pytest.approx(b.cost, rel=1e-12) and a.nfev == b.nfev
    np.testing.assert_allclose(a.fun, exp_residual(a.x, y))  # fun is the user's residual


def test_sigma_block_covariance_equals_prewhitening():
    n = 600
    rng = np.random.default_rng(3)
    # 2x2 SPD blocks on consecutive residual pairs, stored as a sparse covariance
    blocks = []
    for _ in range(n // 2):
        a = rng.standard_normal((2, 2))
        blocks.append(a @ a.T + 0.5 * np.eye(2))
    cov = sp.block_diag(blocks, format="csr")
    c = np.linalg.cholesky(cov.toarray())
    whiten = sp.csr_matrix(np.linalg.inv(c))  # C^-1: (C^-1)^T C^-1 = Sigma^-1
    res = least_squares(banded_nonlinear, -np.ones(n // 2), jac=banded_nonlinear_jac,
                        sigma=cov, linear_solver="sparse_normal_cholesky")
    ref = least_squares(lambda x: whiten @ banded_nonlinear(x), -np.ones(n // 2),
                        jac=lambda x: whiten @ banded_nonlinear_jac(x), linear_solver="sparse_normal_cholesky")
    assert res.summary.problem["sigma"] == "matrix"
    assert res.cost == pytest.approx(ref.cost, rel=1e-10)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    r = banded_nonlinear(res.x)
    assert res.cost == pytest.approx(0.5 * r @ sp.linalg.spsolve(cov.tocsc(), r), rel=1e-10)
    diag = least_squares(broyden, -np.ones(50), jac=broyden_jac, sigma=sp.diags(np.full(50, 4.0)))
    assert diag.summary.problem["sigma"] == "diag"


# -- limits, callback, errors -------------------------------------------------------------------
def test_max_nfev_and_callback():
    y = exp_data()
    res = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), max_nfev=2)
    assert res.status == 0 and res.nfev == 2 and not res.success
    seen = []

    def stop(intermediate_result):
        seen.append(intermediate_result.cost)
        if len(seen) == 2:
            raise StopIteration

    res = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), callback=stop)
    assert res.status == -2 and len(seen) == 2 and res.cost == seen[-1]
    xs = []
    least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), callback=lambda x: xs.append(x))
    assert len(xs) >= 1 and xs[-1].shape == (3,)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(bounds=(2, np.inf)), ValueError, "outside of provided bounds"),
    (dict(bounds=scipy.optimize.Bounds([-np.inf] * 3, [np.inf, 5, np.inf]), method="lm"), ValueError, "bounds"),
    (dict(method="dogbox"), ValueError, "dogbox"),
    (dict(method="newton"), ValueError, "method"),
    (dict(tr_solver="best"), ValueError, "tr_solver"),
    (dict(tr_solver="lsmr", tr_options={"tol": 1e-3}), TypeError, "tol"),
    (dict(jac=lambda p, y: aslinearoperator(exp_jac(p, y)), x_scale="jac"), ValueError, "LinearOperator"),
    (dict(jac=lambda p, y: aslinearoperator(exp_jac(p, y)), method="lm"), ValueError, "dense Jacobian"),
    (dict(no_such_option=1), TypeError, "no_such_option"),
    (dict(loss="squared"), ValueError, "loss"),
    (dict(linear_solver="sparse_schur"), ValueError, "linear_solver"),
    (dict(ordering="random"), ValueError, "ordering"),
    (dict(x_scale="jac", damping="levenberg"), ValueError, "x_scale"),
    (dict(sigma=np.ones(5)), ValueError, "sigma"),
    (dict(sigma=-np.ones(40)), ValueError, "sigma"),
    (dict(jac=lambda p, y: exp_jac(p, y)[:, :2]), ValueError, "shape"),
    (dict(jac_sparsity=np.ones((3, 3))), ValueError, "jac_sparsity"),
])
def test_errors(kwargs, error, words):
    y = exp_data()
    with pytest.raises(error, match=words):
        least_squares(exp_residual, [1.0, 1.0, 0.0], args=(y,), **kwargs)


def test_infinite_bounds_and_lm_accepted():
    y = exp_data()
    a = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), bounds=(-np.inf, np.inf), method="lm")
    b = least_squares(exp_residual, [1.0, 1.0, 0.0], jac=exp_jac, args=(y,), method="trf")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-5)  # same minimum; 'lm' scales its trust radius by J
    assert a.cost == pytest.approx(b.cost, rel=1e-9)


def test_workers_map_for_finite_differences():
    n = 300
    used = []

    def workers(f, points):
        points = list(points)
        used.append(len(points))
        return map(f, points)

    res = least_squares(broyden, -np.ones(n), jac_sparsity=broyden_sparsity(n), workers=workers)
    ref = least_squares(broyden, -np.ones(n), jac_sparsity=broyden_sparsity(n))
    np.testing.assert_array_equal(res.x, ref.x)
    assert used and all(k == 3 for k in used)


def test_non_finite_jacobian_is_reported():
    def jac(p, y):
        j = exp_jac(p, y)
        j[4, 1] = np.nan
        return j

    from sparselm.core.evaluator import NonFiniteError
    with pytest.raises(NonFiniteError, match="row 4, column 1"):
        least_squares(exp_residual, [1.0, 1.0, 0.0], jac=jac, args=(exp_data(),))


def test_normal_matrix_step_and_model_match_dense_algebra():
    """The general-pattern assembly (numba Gustavson into a fixed pattern) against plain numpy."""
    from sparselm.linalg.base import LinearSolverOptions
    from sparselm.linalg.general_normal import GeneralDenseNormalCholesky, GeneralSparseNormalCholesky
    from sparselm.scipy_api.evaluator import MatrixEvaluator
    from sparselm.util.timing import PhaseTimer

    jac = sp.random(300, 120, density=0.05, random_state=1, format="csr") + sp.eye(300, 120)
    r = np.random.default_rng(0).standard_normal(300)
    ev = MatrixEvaluator(300, 120, "linear", 1.0, None, PhaseTimer())
    ev.absorb(jac)
    ev.linearize(r)
    h = (jac.T @ jac).toarray()
    np.testing.assert_allclose(ev.gradient, jac.T @ r, atol=1e-12)
    np.testing.assert_allclose(ev.column_norms, np.diag(h), atol=1e-12)
    d = np.random.default_rng(1).random(120)
    expected = -np.linalg.solve(h + np.diag(d), jac.T @ r)
    for cls in (GeneralSparseNormalCholesky, GeneralDenseNormalCholesky):
        ls = cls(ev, PhaseTimer(), LinearSolverOptions(factorization="auto"))
        ls.linearize()
        np.testing.assert_allclose(ls.solve(d).step, expected, atol=1e-10)
    step = np.random.default_rng(2).standard_normal(120)
    js = jac @ step
    assert ev.model_cost_change(step) == pytest.approx(-(js @ (r + 0.5 * js)), rel=1e-12)


def test_colouring_is_valid_and_fd_matches_analytic():
    from sparselm.scipy_api.jacobian import FiniteDifferenceJacobian, sparsity_pattern
    from sparselm.util.timing import PhaseTimer

    m, n = 400, 150
    a = sp.random(m, n, density=0.02, random_state=4, format="csr") + sp.eye(m, n)
    pattern = sparsity_pattern(a, m, n)
    fd = FiniteDifferenceJacobian(lambda x: np.sin(a @ x), pattern, "3-point", None, PhaseTimer())
    rows = pattern.matrix(np.ones(pattern.nnz)).tocsr()
    for i in range(m):  # no two columns of one row share a colour
        cols = rows.indices[rows.indptr[i]:rows.indptr[i + 1]]
        assert np.unique(fd.colour[cols]).size == cols.size
    assert fd.n_colours < n // 5
    x = np.random.default_rng(5).standard_normal(n)
    data = fd(x, np.sin(a @ x)).copy()
    exact = sp.diags(np.cos(a @ x)) @ a
    np.testing.assert_allclose(pattern.matrix(data).toarray(), exact.toarray(), atol=1e-8)
