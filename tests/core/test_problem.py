"""sparselm.core.problem: input validation (a clear ValueError naming what and where, before any kernel
runs), sizes, the stored square-root information, and weighting end to end: a block-covariance
weighted problem equals its pre-whitened twin, scaling Sigma scales the cost only, scalar and
per-instance sigma, covariance vs information."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import ResidualType, models
from sparselm.core.weighting import sqrt_information_from


class Spy:
    """Python kernels that record every call (to prove validation happens before any kernel runs)."""

    def __init__(self):
        self.calls = 0

    def residuals(self, params, index, data, residuals):
        self.calls += 1
        residuals[:] = params[0][index[:, 0]] - data

    def jacobians(self, params, index, data, residuals, jacobians):
        self.calls += 1
        residuals[:] = params[0][index[:, 0]] - data
        jacobians[0][:] = np.eye(2)


@pytest.fixture
def spy():
    return Spy()


@pytest.fixture
def spy_type(spy):
    return ResidualType("spy", 2, (2,), 2, spy.residuals, spy.jacobians)


@pytest.fixture
def base(spy_type):
    p = sparselm.Problem()
    p.add_parameter_group("pts", np.zeros((4, 2)))
    p.add_parameter_group("big", np.zeros((2, 3)))
    return p


# -- parameter groups ------------------------------------------------------------------------------

@pytest.mark.parametrize("values,match", [
    ([[0.0, np.nan]], r"parameter group 'g': values: non-finite value nan at index \(0, 1\)"),
    ([[0.0, 1.0], [np.inf, 2.0]], r"parameter group 'g': values: non-finite value inf at index \(1, 0\)"),
    ([1.0, 2.0], r"parameter group 'g': values: expected a 2-D array, got shape \(2,\)"),
    (np.zeros((0, 2)), r"parameter group 'g': values must be non-empty, got shape \(0, 2\)"),
    ([["a", "b"]], r"parameter group 'g': values: expected real numbers, got dtype <U1"),
    (np.array([[True, False]]), "expected real numbers, got dtype bool"),
])
def test_bad_parameter_values(values, match):
    with pytest.raises(ValueError, match=match):
        sparselm.Problem().add_parameter_group("g", values)


def test_parameter_group_names_and_masks(base):
    with pytest.raises(ValueError, match="parameter group 'pts' already exists"):
        base.add_parameter_group("pts", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        base.add_parameter_group("", np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"parameter group 'c': constant: entry 1 = 5 is out of range \[0, 3\)"):
        base.add_parameter_group("c", np.zeros((3, 2)), constant=[0, 5])
    with pytest.raises(ValueError, match=r"'c': constant: boolean mask must have shape \(3,\), got \(2,\)"):
        base.add_parameter_group("c", np.zeros((3, 2)), constant=[True, False])
    with pytest.raises(ValueError, match=r"'c': constant_coordinates: entry 0 = -1 is out of range \[0, 2\)"):
        base.add_parameter_group("c", np.zeros((3, 2)), constant_coordinates=[-1])
    with pytest.raises(ValueError, match=r"unknown parameter group 'nope'; known: \['big', 'pts'\]"):
        base.set_constant("nope", [0])
    values = np.arange(6.0).reshape(3, 2)
    g = base.add_parameter_group("c", values, constant=np.array([True, False, True]), constant_coordinates=1)
    values[0, 0] = 99.0
    assert g.values[0, 0] == 0.0  # copied
    np.testing.assert_array_equal(g.constant, [True, False, True])
    np.testing.assert_array_equal(g.constant_coordinates, [False, True])
    base.set_constant("c", [0], constant=False)
    base.set_constant("c", 1)
    np.testing.assert_array_equal(g.constant, [False, True, True])
    assert g.n_blocks == 3 and g.block_size == 2 and not g.eliminate


# -- residual groups -------------------------------------------------------------------------------

@pytest.mark.parametrize("blocks,data,match", [
    ([("pts", [0, 1])], np.zeros((3, 2)), r"residual group 'r': data must have shape \(2, 2\), got \(3, 2\)"),
    ([("pts", [0, 1])], np.zeros((2, 3)), r"data must have shape \(2, 2\), got \(2, 3\)"),
    ([("pts", [0, 1])], [[0.0, 1.0], [np.nan, 0.0]], r"residual group 'r': data: non-finite value nan at index \(1, 0\)"),
    ([("pts", [0, 1])], [[0.0, np.inf], [0.0, 0.0]], r"data: non-finite value inf at index \(0, 1\)"),
    ([("pts", [0, 4])], None, r"residual group 'r': slot 0 \(pts\) index: entry 1 = 4 is out of range \[0, 4\)"),
    ([("pts", [-1, 0])], None, r"slot 0 \(pts\) index: entry 0 = -1 is out of range \[0, 4\)"),
    ([("pts", [0.0, 1.5])], None, r"slot 0 \(pts\) index: entry 1 is not an integer \(1.5\)"),
    ([("pts", [0.0, np.nan])], None, r"slot 0 \(pts\) index: entry 1 is not an integer \(nan\)"),
    ([("pts", ["a"])], None, "slot 0 \\(pts\\) index: expected integers, got dtype <U1"),
    ([("pts", [[0, 1]])], None, r"slot 0 \(pts\) index: expected a 1-D index array, got shape \(1, 2\)"),
    ([("big", [0, 1])], None, r"slot 0 of type 'spy' needs blocks of size 2, group 'big' has size 3"),
    ([("nope", [0])], None, r"unknown parameter group 'nope'; known: \['big', 'pts'\]"),
    ([("pts", [0]), ("pts", [1])], None, r"type 'spy' has 1 slots, got 2 \(group, index\) pairs"),
    (["pts"], None, r"slot 0 must be a \(group name, index array\) pair"),
    ([("pts", [])], None, "residual group 'r': no residual blocks"),
])
def test_bad_residual_groups(base, spy_type, spy, blocks, data, match):
    with pytest.raises(ValueError, match=match):
        base.add_residual_group("r", spy_type, blocks, data)
    assert spy.calls == 0 and base.residual_groups == []


def test_residual_group_names_are_unique(base):
    base.add_residual_group("r", models.PRIOR_2D, [("pts", [0, 1])], np.ones((2, 2)))
    with pytest.raises(ValueError, match="residual group 'r' already exists"):
        base.add_residual_group("r", models.PRIOR_2D, [("pts", [2])], np.ones((1, 2)))


def test_index_lengths_must_agree(base):
    with pytest.raises(ValueError, match=r"residual group 'd': slot 1 index has 3 entries, slot 0 has 2"):
        base.add_residual_group("d", models.DISTANCE_2D, [("pts", [0, 1]), ("pts", [1, 2, 3])], [1.0, 1.0])


def test_residual_type_must_be_a_residual_type(base):
    with pytest.raises(ValueError, match="residual_type must be a ResidualType"):
        base.add_residual_group("r", "linear", [("pts", [0])])


def test_integer_valued_float_indices_and_1d_data_are_accepted(base):
    g = base.add_residual_group("d", models.DISTANCE_2D, [("pts", [0.0, 1.0]), ("pts", np.array([1, 2], np.int32))],
                                [1.0, 2.0])
    assert g.index.dtype == np.int64 and g.index.tolist() == [[0, 1], [1, 2]]
    assert g.data.shape == (2, 1) and g.n_instances == 2 and g.residual_size == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma=0.0), "residual group 'r': sigma must be a positive finite number, got 0.0"),
    (dict(sigma=np.nan), "sigma must be a positive finite number, got nan"),
    (dict(sigma=[1.0, -2.0]), r"residual group 'r': sigma\[1\] = -2.0 is not a positive finite number"),
    (dict(sigma=[1.0, 2.0, 3.0]), r"sigma must be a scalar or shape \(2,\), got \(3,\)"),
    (dict(sigma=1.0, covariance=np.eye(2)), "give at most one of sigma, covariance, information"),
    (dict(covariance=np.ones((2, 3, 3))), r"covariance must have shape \(2, 2\) or \(2, 2, 2\), got \(2, 3, 3\)"),
    (dict(information=np.ones((3, 2, 2))), r"information must have shape \(2, 2\) or \(2, 2, 2\), got \(3, 2, 2\)"),
    (dict(covariance=[[[1.0, 0.5], [0.4, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]), r"covariance\[0\] is not symmetric"),
    (dict(information=[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]]),
     r"information\[1\] is not positive definite \(smallest eigenvalue -1\)"),
    (dict(covariance=[[1.0, 0.0], [0.0, 0.0]]), r"covariance\[0\] is not positive definite"),
    (dict(covariance=[[1.0, np.nan], [np.nan, 1.0]]), r"covariance: non-finite value nan at index \(0, 1\)"),
    (dict(loss="tukey"), r"unknown loss 'tukey'; choose one of \['arctan', 'cauchy', 'huber', 'linear', 'soft_l1'\]"),
    (dict(loss="huber", loss_scale=-1.0), "loss scale must be a positive finite number, got -1.0"),
])
def test_bad_weights_and_losses(base, spy_type, spy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        base.add_residual_group("r", spy_type, [("pts", [0, 1])], np.zeros((2, 2)), **kwargs)
    assert spy.calls == 0


def test_single_covariance_of_wrong_size_names_the_group(base, spy_type):
    with pytest.raises(ValueError, match=r"residual group 'r': covariance must have shape \(2, 2\)"):
        base.add_residual_group("r", spy_type, [("pts", [0, 1])], np.zeros((2, 2)), covariance=np.eye(3))


def test_solve_time_errors_come_before_any_kernel(base, spy_type, spy):
    base.add_residual_group("r", spy_type, [("pts", [0, 1, 2, 3])], np.ones((4, 2)))
    with pytest.raises(ValueError, match="unknown option"):
        sparselm.solve(base, max_iter=3)
    with pytest.raises(ValueError, match="option damping: unknown 'newton'"):
        sparselm.solve(base, damping="newton")
    base.set_constant("pts", [0, 1, 2, 3])
    base.set_constant("big", [0, 1])
    with pytest.raises(ValueError, match="every parameter block is constant: nothing to optimise"):
        sparselm.solve(base)
    assert spy.calls == 0
    with pytest.raises(ValueError, match="the problem has no residual groups"):
        sparselm.solve(sparselm.Problem())
    # and with valid input the spy kernels do run (so the zero above means something)
    base.set_constant("pts", [0, 1, 2, 3], constant=False)
    s = sparselm.solve(base)
    assert spy.calls > 0 and s.final_cost < 1e-12
    np.testing.assert_allclose(base.parameter_groups["pts"].values, 1.0)


def test_sizes(base):
    base.add_residual_group("d", models.DISTANCE_2D, [("pts", [0, 1, 2]), ("pts", [1, 2, 3])], [1.0, 1.0, 1.0],
                            loss="huber")
    base.add_residual_group("p", models.prior(3), [("big", [0])], np.zeros((1, 3)))
    base.set_constant("pts", [2])
    assert base.n_parameters == 14 and base.n_residuals == 6
    sizes = base.sizes()
    assert sizes["parameters"] == 14 and sizes["residuals"] == 6
    assert sizes["parameter_groups"]["pts"] == {"blocks": 4, "block_size": 2, "tangent_size": 2,
                                                "manifold": "euclidean(2)", "constant_blocks": 1,
                                                "constant_coordinates": 0, "eliminate": False}
    assert sizes["residual_groups"]["d"] == {"blocks": 3, "residual_size": 1, "type": "distance_2d", "loss": "huber"}
    assert sizes["residual_groups"]["p"]["loss"] == "linear"


# -- stored weights --------------------------------------------------------------------------------

def test_sqrt_information_forms(rng):
    assert sqrt_information_from("r", 3, 2) is None
    assert sqrt_information_from("r", 3, 2, sigma=4.0) == 0.25
    np.testing.assert_allclose(sqrt_information_from("r", 3, 2, sigma=[1.0, 2.0, 4.0]), [1.0, 0.5, 0.25])
    g = rng.normal(size=(3, 2, 2))
    cov = g @ np.swapaxes(g, 1, 2) + 0.1 * np.eye(2)
    inv = np.linalg.inv(cov)
    for a in (sqrt_information_from("r", 3, 2, covariance=cov), sqrt_information_from("r", 3, 2, information=inv)):
        assert a.shape == (3, 2, 2)
        np.testing.assert_allclose(np.swapaxes(a, 1, 2) @ a, inv, rtol=1e-10)
    one = sqrt_information_from("r", 3, 2, covariance=cov[0])  # one (m, m) matrix for every instance
    assert one.shape == (3, 2, 2)
    np.testing.assert_allclose(np.swapaxes(one, 1, 2) @ one, np.broadcast_to(inv[0], (3, 2, 2)), rtol=1e-10)


# -- weighting end to end --------------------------------------------------------------------------

class Linear:
    """60 instances of linear(3, 3) over 5 blocks, with non-diagonal SPD covariances (60, 3, 3)."""

    def __init__(self, rng):
        self.n, self.m, self.k, self.nb = 60, 3, 3, 5
        self.a = rng.normal(size=(self.n, self.m, self.k))
        self.b = rng.normal(size=(self.n, self.m)) * 3.0
        self.index = np.arange(self.n) % self.nb
        g = rng.normal(size=(self.n, self.m, self.m))
        self.cov = g @ np.swapaxes(g, 1, 2) + 0.3 * np.eye(self.m)
        self.x0 = rng.normal(size=(self.nb, self.k))

    def problem(self, a=None, b=None, **weights):
        p = sparselm.Problem()
        p.add_parameter_group("x", self.x0)
        p.add_residual_group("lin", models.linear(self.m, self.k), [("x", self.index)],
                             models.linear_data(self.a if a is None else a, self.b if b is None else b), **weights)
        return p

    def whitened(self):
        """A' = L^T A, b' = L^T b with Sigma^-1 = L L^T (numpy Cholesky of the information)."""
        lo = np.linalg.cholesky(np.linalg.inv(self.cov))
        lt = np.swapaxes(lo, 1, 2)
        return lt @ self.a, np.einsum("nij,nj->ni", lt, self.b)

    def lstsq(self, a, b):
        x = np.empty((self.nb, self.k))
        for blk in range(self.nb):
            rows = self.index == blk
            x[blk] = np.linalg.lstsq(a[rows].reshape(-1, self.k), b[rows].ravel(), rcond=None)[0]
        return x


def _solve(p, tight):
    # Near a minimum the cost is flat: LM's accept/reject decisions, made on cost differences, cannot
    # resolve x better than ~sqrt(eps) relative. To compare estimates to 1e-10, start with a radius
    # so large that the first step is Gauss-Newton to ~1e-16: on these linear problems it lands on
    # the minimum, and what is compared is the whitening, not the end-game of the damping.
    s = sparselm.solve(p, **dict(tight, initial_trust_region_radius=1e16))
    assert s.termination == "convergence", s.message
    return s, p.parameter_groups["x"].values.copy()


def test_block_covariance_equals_prewhitened_problem(rng, tight):
    lin = Linear(rng)
    s_w, x_w = _solve(lin.problem(covariance=lin.cov), tight)
    a_w, b_w = lin.whitened()
    s_p, x_p = _solve(lin.problem(a_w, b_w), tight)
    np.testing.assert_allclose(x_w, x_p, rtol=0, atol=1e-10)
    assert s_w.final_cost == pytest.approx(s_p.final_cost, rel=1e-10)
    assert s_w.initial_cost == pytest.approx(s_p.initial_cost, rel=1e-12)
    np.testing.assert_allclose(x_w, lin.lstsq(a_w, b_w), rtol=0, atol=1e-10)
    # and it differs from the unweighted estimate (the weights matter)
    _, x_u = _solve(lin.problem(), tight)
    assert np.abs(x_u - x_w).max() > 1e-3


@pytest.mark.parametrize("s", [1e-4, 0.25, 9.0, 1e6])
def test_scaling_sigma_scales_cost_only(rng, tight, s):
    lin = Linear(rng)
    s1, x1 = _solve(lin.problem(covariance=lin.cov), tight)
    s2, x2 = _solve(lin.problem(covariance=s * lin.cov), tight)
    np.testing.assert_allclose(x2, x1, rtol=0, atol=1e-10)
    assert s2.final_cost == pytest.approx(s1.final_cost / s, rel=1e-10)
    assert s2.initial_cost == pytest.approx(s1.initial_cost / s, rel=1e-12)


def test_covariance_and_information_agree(rng, tight):
    lin = Linear(rng)
    s1, x1 = _solve(lin.problem(covariance=lin.cov), tight)
    s2, x2 = _solve(lin.problem(information=np.linalg.inv(lin.cov)), tight)
    np.testing.assert_allclose(x2, x1, rtol=0, atol=1e-10)
    assert s2.final_cost == pytest.approx(s1.final_cost, rel=1e-10)


def test_scalar_sigma(rng, tight):
    lin = Linear(rng)
    s0, x0 = _solve(lin.problem(), tight)
    s1, x1 = _solve(lin.problem(sigma=0.3), tight)
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-10)
    assert s1.final_cost == pytest.approx(s0.final_cost / 0.09, rel=1e-10)
    # a scalar sigma equals the isotropic covariance sigma^2 I
    s2, x2 = _solve(lin.problem(covariance=0.09 * np.eye(3)), tight)
    np.testing.assert_allclose(x2, x1, rtol=0, atol=1e-10)
    assert s2.final_cost == pytest.approx(s1.final_cost, rel=1e-12)


def test_per_instance_sigma(rng, tight):
    lin = Linear(rng)
    sig = rng.uniform(0.1, 3.0, size=lin.n)
    s1, x1 = _solve(lin.problem(sigma=sig), tight)
    s2, x2 = _solve(lin.problem(lin.a / sig[:, None, None], lin.b / sig[:, None]), tight)
    np.testing.assert_allclose(x1, x2, rtol=0, atol=1e-10)
    assert s1.final_cost == pytest.approx(s2.final_cost, rel=1e-10)
    np.testing.assert_allclose(x1, lin.lstsq(lin.a / sig[:, None, None], lin.b / sig[:, None]), rtol=0, atol=1e-10)
    # the same as covariance sigma_i^2 I per instance
    s3, x3 = _solve(lin.problem(covariance=sig[:, None, None] ** 2 * np.eye(3)), tight)
    np.testing.assert_allclose(x3, x1, rtol=0, atol=1e-10)
