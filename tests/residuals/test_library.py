"""sparselm.residuals.library: each kernel against an independent numpy formula, analytic Jacobians against
central differences, the helpers (linear_data, prior, linear) and the published minima of the
classic test functions (Moré, Garbow, Hillstrom 1981)."""
from __future__ import annotations

import numpy as np
import pytest

from sparselm import check_jacobian, models
from sparselm.residuals import numeric_jacobian


def _eval(rt, params, index, data):
    n = index.shape[0]
    res = np.full((n, rt.residual_size), np.nan)
    rt.residual_kernel(tuple(params), index, data, res)
    return res


def _eval_jacobian_kernel(rt, params, index, data):
    n = index.shape[0]
    res = np.full((n, rt.residual_size), np.nan)
    jac = tuple(np.full((n, rt.residual_size, k), np.nan) for k in rt.block_sizes)
    rt.jacobian_kernel(tuple(params), index, data, res, jac)
    return res, jac


SINGLE_BLOCK = {
    # type, a point to evaluate at, data
    "rosenbrock": (models.ROSENBROCK, [-1.2, 1.0], np.zeros((1, 0))),
    "powell_singular": (models.POWELL, [3.0, -1.0, 0.3, 1.0], np.zeros((1, 0))),
    "freudenstein_roth": (models.FREUDENSTEIN, [0.5, -2.0], np.zeros((1, 0))),
    "bard": (models.BARD, [1.0, 1.2, 0.8], models.BARD_DATA),
    "meyer": (models.MEYER, [0.02, 4000.0, 250.0], models.MEYER_DATA),
    "exponential": (models.EXPONENTIAL, [2.0, 0.7], np.column_stack([np.linspace(0, 4, 9), np.linspace(1, 0, 9)])),
    "gaussian": (models.GAUSSIAN, [1.5, 0.3, 0.8], np.column_stack([np.linspace(-2, 2, 9), np.linspace(0, 1, 9)])),
}


@pytest.mark.parametrize("name", sorted(SINGLE_BLOCK))
def test_single_block_kernels_match_numpy(name, numpy_residuals):
    rt, x, data = SINGLE_BLOCK[name]
    assert rt.name == name
    x = np.array(x)
    # three blocks, the instances all touch block 1: the kernel must follow the index
    blocks = np.stack([x + 5.0, x, x - 3.0])
    index = np.ones((len(data), 1), dtype=np.int64)
    got = _eval(rt, [blocks], index, np.ascontiguousarray(data))
    np.testing.assert_allclose(got, numpy_residuals[name](x, data), rtol=1e-14, atol=1e-14)
    if rt.has_analytic_jacobian:
        res, _ = _eval_jacobian_kernel(rt, [blocks], index, np.ascontiguousarray(data))
        np.testing.assert_array_equal(res, got)


@pytest.mark.parametrize("name", sorted(SINGLE_BLOCK))
def test_analytic_jacobians_match_central_differences(name, rng):
    rt, x, data = SINGLE_BLOCK[name]
    if not rt.has_analytic_jacobian:
        assert name == "bard"  # the one type left to numeric differences
        with pytest.raises(ValueError, match="no analytic Jacobian"):
            check_jacobian(rt, [np.array([x])], np.zeros((len(data), 1), dtype=np.int64), data)
        return
    n = len(data)
    x = np.array(x)
    blocks = x * (1.0 + 0.1 * rng.uniform(-1, 1, size=(4, x.size)))
    index = rng.integers(0, 4, size=(n, 1))
    check = check_jacobian(rt, [blocks], index, data, tolerance=1e-7)
    assert check.ok, str(check)


def test_extended_rosenbrock_is_many_instances():
    """n instances over n blocks: each instance sees only its own block."""
    x = np.array([[-1.2, 1.0], [1.0, 1.0], [0.0, 0.0]])
    res = _eval(models.ROSENBROCK, [x], np.arange(3)[:, None], np.zeros((3, 0)))
    np.testing.assert_allclose(res, [[-4.4, 2.2], [0.0, 0.0], [0.0, 1.0]], atol=1e-14)


def test_classic_minima():
    """The published minimizers give the published minima (cost = 1/2 sum of squares)."""
    none = np.zeros((1, 0))
    i0 = np.zeros((1, 1), dtype=np.int64)
    assert np.all(_eval(models.ROSENBROCK, [np.array([[1.0, 1.0]])], i0, none) == 0.0)
    assert np.all(_eval(models.POWELL, [np.zeros((1, 4))], i0, none) == 0.0)
    assert np.all(_eval(models.FREUDENSTEIN, [np.array([[5.0, 4.0]])], i0, none) == 0.0)
    # MGH: Bard f = 8.21487e-3 (sum of squares) near x = (0.0824, 1.133, 2.344);
    # Meyer f = 87.9458 at (0.0056096, 6181.35, 345.224).
    bard = _eval(models.BARD, [np.array([[0.08241056, 1.13303608, 2.34369519]])], np.zeros((15, 1), np.int64),
                 models.BARD_DATA)
    assert np.sum(bard ** 2) == pytest.approx(8.21487e-3, rel=1e-5)
    meyer = _eval(models.MEYER, [np.array([[0.005609636, 6181.346, 345.2236]])], np.zeros((16, 1), np.int64),
                  models.MEYER_DATA)
    assert np.sum(meyer ** 2) == pytest.approx(87.9458, rel=1e-5)
    assert models.BARD_DATA.shape == (15, 4) and models.MEYER_DATA.shape == (16, 2)
    assert set(models.CLASSIC_STARTS) == {"rosenbrock", "powell_singular", "freudenstein_roth", "bard", "meyer"}


@pytest.mark.parametrize("m,k", [(1, 1), (1, 2), (3, 2), (2, 5)])
def test_linear_type(m, k, rng):
    rt = models.linear(m, k)
    assert (rt.residual_size, rt.block_sizes, rt.data_size) == (m, (k,), m * k + m)
    assert models.linear(m, k) is rt  # one type object per shape
    n, nb = 7, 3
    a = rng.normal(size=(n, m, k))
    b = rng.normal(size=(n, m))
    data = models.linear_data(a, b)
    assert data.shape == (n, m * k + m) and data.flags.c_contiguous
    x = rng.normal(size=(nb, k))
    index = rng.integers(0, nb, size=(n, 1))
    expect = np.einsum("nmk,nk->nm", a, x[index[:, 0]]) - b
    np.testing.assert_allclose(_eval(rt, [x], index, data), expect, rtol=1e-13, atol=1e-13)
    res, (jac,) = _eval_jacobian_kernel(rt, [x], index, data)
    np.testing.assert_allclose(res, expect, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(jac, a)


def test_linear_is_a_straight_line():
    t = np.array([0.0, 1.0, 2.0])
    y = np.array([1.0, 3.0, 4.0])
    data = np.column_stack([np.ones(3), t, y])
    assert models.LINEAR is models.linear(1, 2)
    res = _eval(models.LINEAR, [np.array([[1.0, 2.0]])], np.zeros((3, 1), np.int64), data)
    np.testing.assert_allclose(res[:, 0], 1.0 + 2.0 * t - y)


def test_distance_and_offset(rng):
    p = rng.normal(size=(5, 2))
    q = rng.normal(size=(4, 2))
    index = np.column_stack([rng.integers(0, 5, 12), rng.integers(0, 4, 12)])
    d = rng.uniform(0.5, 1.5, size=(12, 1))
    dist = _eval(models.DISTANCE_2D, [p, q], index, d)
    np.testing.assert_allclose(dist[:, 0], np.linalg.norm(p[index[:, 0]] - q[index[:, 1]], axis=1) - d[:, 0])
    check = check_jacobian(models.DISTANCE_2D, [p, q], index, d, tolerance=1e-8)
    assert check.ok, str(check)
    off = rng.normal(size=(12, 2))
    res = _eval(models.OFFSET_2D, [p, q], index, off)
    np.testing.assert_allclose(res, q[index[:, 1]] - p[index[:, 0]] - off, atol=1e-15)
    check = check_jacobian(models.OFFSET_2D, [p, q], index, off, tolerance=1e-8)
    assert check.ok, str(check)


def test_distance_jacobian_is_zero_at_coincident_points():
    p = np.array([[1.0, 2.0]])
    res, (jp, jq) = _eval_jacobian_kernel(models.DISTANCE_2D, [p, p], np.zeros((1, 2), np.int64), np.array([[0.5]]))
    assert res[0, 0] == -0.5
    assert np.all(jp == 0.0) and np.all(jq == 0.0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_prior(k, rng):
    rt = models.prior(k)
    assert models.prior(k) is rt and (rt.residual_size, rt.block_sizes, rt.data_size) == (k, (k,), k)
    x = rng.normal(size=(4, k))
    index = rng.integers(0, 4, size=(6, 1))
    data = rng.normal(size=(6, k))
    res, (jac,) = _eval_jacobian_kernel(rt, [x], index, data)
    np.testing.assert_allclose(res, x[index[:, 0]] - data)
    np.testing.assert_array_equal(jac, np.broadcast_to(np.eye(k), (6, k, k)))
    assert models.PRIOR_2D is models.prior(2)


def test_bard_numeric_jacobian_matches_formula():
    """The numeric fallback for BARD against the hand-derived derivative."""
    x = np.array([[0.5, 1.5, 2.0]])
    d = models.BARD_DATA
    n = len(d)
    res = np.empty((n, 1))
    jac = (np.empty((n, 1, 3)),)
    numeric_jacobian(models.BARD.residual_kernel, (x,), np.zeros((n, 1), np.int64), d, res, jac)
    den = d[:, 1] * x[0, 1] + d[:, 2] * x[0, 2]
    expect = np.column_stack([np.ones(n), -d[:, 0] * d[:, 1] / den ** 2, -d[:, 0] * d[:, 2] / den ** 2])
    np.testing.assert_allclose(jac[0][:, 0, :], expect, rtol=1e-8, atol=1e-10)
