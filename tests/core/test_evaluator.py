"""sparselm.core.evaluator: cost, whitening by Sigma, robust-loss correction, gradient, model decrease,
constant blocks/coordinates and non-finite detection, against numpy written here."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm import models
from sparselm.core.evaluator import Evaluator, NonFiniteError
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer


def _spd(rng, n, m):
    g = rng.normal(size=(n, m, m))
    return g @ np.swapaxes(g, 1, 2) + 0.5 * np.eye(m)


def _rho(name, s, a):
    """(rho, rho') of scipy's losses with f_scale a, at s = squared norm."""
    z = s / a ** 2
    if name == "huber":
        return a ** 2 * np.where(z <= 1, z, 2 * np.sqrt(z) - 1), np.where(z <= 1, 1.0, 1 / np.sqrt(np.maximum(z, 1)))
    if name == "cauchy":
        return a ** 2 * np.log1p(z), 1 / (1 + z)
    if name == "soft_l1":
        return a ** 2 * 2 * (np.sqrt(1 + z) - 1), 1 / np.sqrt(1 + z)
    if name == "arctan":
        return a ** 2 * np.arctan(z), 1 / (1 + z ** 2)
    return s, np.ones_like(s)


class Case:
    """Groups x (4 x 2, block 3 constant) and e (2 x 2); residual groups
    lin   linear(3, 2) on x, per-instance covariance (10, 3, 3)
    exp   EXPONENTIAL on e, per-instance sigma, huber loss (scale 0.5)
    dist  DISTANCE_2D on (x, x), scalar sigma 0.3, cauchy loss (scale 0.2)."""

    def __init__(self, rng, losses=("huber", "cauchy")):
        self.rng = rng
        self.x = rng.normal(size=(4, 2))
        self.e = np.array([[2.0, 0.5], [1.0, 1.5]])
        self.a = rng.normal(size=(10, 3, 2))
        self.b = rng.normal(size=(10, 3))
        self.ix = np.arange(10) % 4
        self.cov = _spd(rng, 10, 3)
        self.t = np.linspace(0, 3, 8)
        self.ie = np.arange(8) % 2
        self.y = 1.5 * np.exp(-0.8 * self.t) + 0.3 * rng.normal(size=8)
        self.sig_e = rng.uniform(0.5, 2.0, size=8)
        self.pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [1, 3]])
        self.d = rng.uniform(0.5, 2.0, size=6)
        self.losses = losses
        p = sparselm.Problem()
        p.add_parameter_group("x", self.x, constant=[3])
        p.add_parameter_group("e", self.e)
        p.add_residual_group("lin", models.linear(3, 2), [("x", self.ix)], models.linear_data(self.a, self.b),
                             covariance=self.cov)
        p.add_residual_group("exp", models.EXPONENTIAL, [("e", self.ie)], np.column_stack([self.t, self.y]),
                             sigma=self.sig_e, loss=losses[0], loss_scale=0.5)
        p.add_residual_group("dist", models.DISTANCE_2D, [("x", self.pairs[:, 0]), ("x", self.pairs[:, 1])],
                             self.d, sigma=0.3, loss=losses[1], loss_scale=0.2)
        self.problem = p
        self.layout = build_layout(p)
        self.timer = PhaseTimer()
        self.ev = Evaluator(p, self.layout, self.timer)

    def values(self, x=None, e=None):
        return {"x": (self.x if x is None else x).copy(), "e": (self.e if e is None else e).copy()}

    def free_vector(self):
        return np.concatenate([self.x[:3].ravel(), self.e.ravel()])  # layout: x blocks 0-2, then e

    def from_free(self, v):
        x = self.x.copy()
        x[:3] = v[:6].reshape(3, 2)
        return x, v[6:].reshape(2, 2)

    def cost(self, x, e):
        inv = np.linalg.inv(self.cov)
        r = np.einsum("nmk,nk->nm", self.a, x[self.ix]) - self.b
        c_lin = 0.5 * np.einsum("nm,nmq,nq->", r, inv, r)
        r_e = (e[self.ie, 0] * np.exp(-e[self.ie, 1] * self.t) - self.y) / self.sig_e
        c_exp = 0.5 * np.sum(_rho(self.losses[0], r_e ** 2, 0.5)[0])
        r_d = (np.linalg.norm(x[self.pairs[:, 0]] - x[self.pairs[:, 1]], axis=1) - self.d) / 0.3
        c_d = 0.5 * np.sum(_rho(self.losses[1], r_d ** 2, 0.2)[0])
        return c_lin + c_exp + c_d


@pytest.mark.parametrize("losses", [("huber", "cauchy"), ("soft_l1", "arctan"), (None, None)])
def test_cost_and_gradient_match_numpy(rng, losses):
    c = Case(rng, losses)
    expect = c.cost(c.x, c.e)
    assert c.ev.cost_at(c.values()) == pytest.approx(expect, rel=1e-13)
    assert c.ev.linearize(c.values()) == pytest.approx(expect, rel=1e-13)
    assert c.ev.cost == pytest.approx(expect, rel=1e-13)
    # the loss-corrected gradient J''^T r'' is the exact gradient of the cost
    v = c.free_vector()
    fd = np.empty_like(v)
    for j in range(v.size):
        h = 1e-6 * max(1.0, abs(v[j]))
        vp, vm = v.copy(), v.copy()
        vp[j] += h
        vm[j] -= h
        fd[j] = (c.cost(*c.from_free(vp)) - c.cost(*c.from_free(vm))) / (2 * h)
    np.testing.assert_allclose(c.ev.gradient, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())


def test_whitening_by_block_covariance(rng):
    """With a trivial loss, J'^T J' = sum A_i^T Sigma_i^-1 A_i and |r'|^2 = sum r_i^T Sigma_i^-1 r_i."""
    c = Case(rng)
    c.ev.linearize(c.values())
    order = c.layout.residuals[0].order  # the evaluator's arrays are in the layout's instance order
    inv = np.linalg.inv(c.cov)
    r = np.einsum("nmk,nk->nm", c.a, c.x[c.ix]) - c.b
    np.testing.assert_allclose(np.sum(c.ev.residuals[0] ** 2), np.einsum("nm,nmq,nq->", r, inv, r), rtol=1e-12)
    jac = c.ev.jacobians[0]  # (10, 3, 2): whitened blocks
    np.testing.assert_allclose(np.swapaxes(jac, 1, 2) @ jac, (np.swapaxes(c.a, 1, 2) @ inv @ c.a)[order],
                               rtol=1e-10, atol=1e-12)
    # the whitened residual is A_i r_i with A_i^T A_i = Sigma_i^-1 (so A_i is a square root of it)
    sqrt_info = c.problem.residual_groups[0].sqrt_information
    np.testing.assert_allclose(np.swapaxes(sqrt_info, 1, 2) @ sqrt_info, inv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.ev.residuals[0], np.einsum("nmq,nq->nm", sqrt_info, r)[order], rtol=1e-12,
                               atol=1e-12)


def test_sigma_vector_and_scalar_whitening(rng):
    c = Case(rng, (None, None))
    c.ev.linearize(c.values())
    e = c.e
    r_e = e[c.ie, 0] * np.exp(-e[c.ie, 1] * c.t) - c.y
    order = [rl.order for rl in c.layout.residuals]
    np.testing.assert_allclose(c.ev.residuals[1][:, 0], (r_e / c.sig_e)[order[1]], rtol=1e-13)
    r_d = np.linalg.norm(c.x[c.pairs[:, 0]] - c.x[c.pairs[:, 1]], axis=1) - c.d
    np.testing.assert_allclose(c.ev.residuals[2][:, 0], (r_d / 0.3)[order[2]], rtol=1e-13)


def test_robust_correction_scales_by_sqrt_rho_prime(rng):
    """All built-in losses have rho'' <= 0, where the correction (as Ceres') is r'' = sqrt(rho') r',
    J'' = sqrt(rho') J'."""
    plain = Case(np.random.default_rng(5), (None, None))
    robust = Case(np.random.default_rng(5), ("huber", "cauchy"))
    plain.ev.linearize(plain.values())
    robust.ev.linearize(robust.values())
    for g, (name, scale) in ((1, ("huber", 0.5)), (2, ("cauchy", 0.2))):
        r = plain.ev.residuals[g]
        s = np.sum(r ** 2, axis=1)
        w = np.sqrt(_rho(name, s, scale)[1])
        np.testing.assert_allclose(robust.ev.residuals[g], w[:, None] * r, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(robust.ev.jacobians[g], w[:, None, None] * plain.ev.jacobians[g], rtol=1e-12,
                                   atol=1e-14)


def test_model_cost_change_and_apply_step(rng):
    c = Case(rng, (None, None))
    c.ev.linearize(c.values())
    step = 1e-3 * rng.normal(size=c.layout.n_columns)
    # L(0) - L(d) = -(J d)^T (r + J d / 2), with J d from a central directional derivative of the
    # whitened residual vector (independent of the Jacobian kernels and of layout.model_decrease).
    def residual_vector(v):
        x, e = c.from_free(v)
        c.ev.linearize(c.values(x, e))
        return np.concatenate([r.ravel() for r in c.ev.residuals])
    v = c.free_vector()
    r0 = residual_vector(v)
    h = 1e-6
    jd = (residual_vector(v + h * step) - residual_vector(v - h * step)) / (2 * h)
    residual_vector(v)  # back to the linearisation at v
    expect = -jd @ (r0 + 0.5 * jd)
    assert c.ev.model_cost_change(step) == pytest.approx(expect, rel=1e-6)
    out = {k: np.empty_like(val) for k, val in c.values().items()}
    c.ev.apply_step(c.values(), step, out)
    np.testing.assert_array_equal(out["x"][3], c.x[3])  # constant block copied bitwise
    np.testing.assert_allclose(out["x"][:3].ravel(), c.x[:3].ravel() + step[:6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(out["e"].ravel(), c.e.ravel() + step[6:], rtol=0, atol=1e-15)


def test_constant_coordinates_get_zero_columns(rng):
    p = sparselm.Problem()
    p.add_parameter_group("x", rng.normal(size=(3, 2)), constant_coordinates=[1])
    a = rng.normal(size=(6, 2, 2))
    p.add_residual_group("lin", models.linear(2, 2), [("x", np.arange(6) % 3)], models.linear_data(a, np.ones((6, 2))))
    layout = build_layout(p)
    ev = Evaluator(p, layout, PhaseTimer())
    ev.linearize({"x": p.parameter_groups["x"].values})
    assert np.all(ev.jacobians[0][:, :, 1] == 0.0)
    np.testing.assert_array_equal(ev.jacobians[0][:, :, 0], a[layout.residuals[0].order, :, 0])
    assert np.all(ev.gradient[1::2] == 0.0) and np.all(ev.column_norms[1::2] == 0.0)
    assert np.all(ev.gradient[0::2] != 0.0)


@pytest.mark.parametrize("kernel", ["variant", "numeric"])
def test_constant_columns_are_zero_whoever_writes_them(rng, kernel):
    """A type with ``jacobian_kernel_for`` is asked for a kernel that skips the constant column (the
    evaluator then leaves it alone); a type differentiated numerically writes it and the evaluator
    zeroes it. Either way the column is zero after every linearisation."""
    import dataclasses

    linear = models.linear(2, 2)
    rt = linear if kernel == "variant" else dataclasses.replace(linear, name="linear_numeric", jacobian_kernel=None,
                                                                jacobian_kernel_for=None)
    p = sparselm.Problem()
    p.add_parameter_group("x", rng.normal(size=(3, 2)), constant_coordinates=[1])
    a = rng.normal(size=(6, 2, 2))
    p.add_residual_group("lin", rt, [("x", np.arange(6) % 3)], models.linear_data(a, np.ones((6, 2))))
    ev = Evaluator(p, build_layout(p), PhaseTimer())
    for shift in (0.0, 0.5):
        ev.linearize({"x": p.parameter_groups["x"].values + shift})
        assert np.all(ev.jacobians[0][:, :, 1] == 0.0) and np.all(ev.jacobians[0][:, :, 0] != 0.0)


def test_non_finite_residual_names_group_and_instance():
    p = sparselm.Problem()
    p.add_parameter_group("e", np.array([[1.0, 0.5], [1.0, -400.0]]))
    t = np.linspace(0, 2, 6)
    p.add_residual_group("decay", models.EXPONENTIAL, [("e", [0, 0, 0, 1, 1, 1])], np.column_stack([t, 0 * t]))
    ev = Evaluator(p, build_layout(p), PhaseTimer())
    values = {"e": p.parameter_groups["e"].values}
    assert np.isnan(ev.cost_at(values))  # a trial cost is NaN, not an exception
    # exp(400 t) overflows (> 1.8e308) for t = 2 only: instance 5
    with pytest.raises(NonFiniteError, match=r"residual group 'decay': instance 5 \(e\[1\]\) .*\(1 instances in all\)"):
        ev.linearize(values)
    with pytest.raises(NonFiniteError, match="'decay': instance 5"):
        sparselm.solve(p)


def test_timer_counts_phases(rng):
    c = Case(rng)
    for _ in range(3):
        c.ev.linearize(c.values())
    c.ev.cost_at(c.values())
    table = c.timer.table()
    assert table["jacobian"]["calls"] == 3 and table["gradient"]["calls"] == 3
    assert table["residual"]["calls"] == 1
    assert all(v["seconds"] >= 0 for v in table.values())
