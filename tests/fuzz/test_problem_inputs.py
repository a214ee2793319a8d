"""Fuzz Problem.add_parameter_group / add_residual_group (shapes, dtypes, index ranges, weightings,
losses, extreme and denormal numbers) through a solve: every drawn problem is either refused with a
ValueError / NonFiniteError naming the group, or solved with a reported cost equal to the cost computed
independently at the returned point (see properties.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from .budget import budget
from .cases import SMALL_SPEC, solve_problem_spec
from .properties import solved_or_refused, solved_warm_up

#: accepted extremes (zeros, denormals, tiny and huge magnitudes up to the limit) and refused ones.
EXTREME = [0.0, -0.0, 1e-300, 5e-324, 1e-310, 1e20, -1e20, 1e150, -1e150]
INVALID = [1e151, 1e300, -1e300, np.nan, np.inf, -np.inf]
NAMES = ["'a'", "'b'", "'r0'", "'r1'", "parameter group", "residual group"]


def numbers(allow_extreme: bool):
    """Mostly ordinary numbers; with ``allow_extreme`` also accepted extremes."""
    plain = st.floats(-10.0, 10.0, allow_nan=False)
    return st.one_of(*[plain] * 4, st.sampled_from(EXTREME)) if allow_extreme else plain


@st.composite
def array_like(draw, shape, allow_extreme=True):
    """Mostly a float array of ``shape``; sometimes another dtype, layout or shape."""
    kind = draw(st.sampled_from(["float"] * 30 + ["float32", "int", "list", "fortran", "bool", "complex", "text",
                                                  "wrong_shape", "empty", "poisoned", "poisoned"]))
    values = np.array(draw(st.lists(numbers(allow_extreme), min_size=int(np.prod(shape)),
                                    max_size=int(np.prod(shape))))).reshape(shape)
    if kind == "float32":
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, to be refused
            return values.astype(np.float32)
    if kind == "int":
        return np.nan_to_num(values, posinf=7, neginf=-7).clip(-1e6, 1e6).astype(np.int64)
    if kind == "list":
        return values.tolist()
    if kind == "fortran":
        return np.asfortranarray(values)
    if kind == "bool":
        return values > 0
    if kind == "complex":
        return values.astype(complex)
    if kind == "text":
        return values.astype(str)
    if kind == "wrong_shape":
        return values.ravel()
    if kind == "empty":
        return np.zeros((0,) + tuple(shape[1:]))
    if kind == "poisoned":  # one refused value: NaN, an infinity, or beyond +-1e150
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(INVALID))
    return values


@st.composite
def index_array(draw, n, n_blocks):
    kind = draw(st.sampled_from(["ok"] * 30 + ["negative", "too_big", "float_int", "float_frac", "2d", "text"]))
    idx = np.array(draw(st.lists(st.integers(0, n_blocks - 1), min_size=n, max_size=n)), dtype=np.int64)
    if kind == "negative":
        idx[0] = -1
    elif kind == "too_big":
        idx[-1] = n_blocks + draw(st.sampled_from([0, 5, 2 ** 40]))
    elif kind == "float_int":
        return idx.astype(float)
    elif kind == "float_frac":
        return idx + 0.5
    elif kind == "2d":
        return idx[:, None]
    elif kind == "text":
        return idx.astype(str)
    return idx


@st.composite
def weighting(draw, n):
    kind = draw(st.sampled_from(["none"] * 4 + ["sigma", "sigmas", "covariance", "information", "two"]))
    if kind == "sigma":
        return {"sigma": draw(st.sampled_from([0.5, 2.0, 0.0, -1.0, 1e-300, 1e-200, 1e200, np.nan]))}
    if kind == "sigmas":
        return {"sigma": draw(array_like((n,)))}
    if kind in ("covariance", "information"):
        a, b, c = (draw(st.sampled_from([1.0, 0.5, -0.2, 2.0, 0.0, 1e-300, 1e-170, 1e200])) for _ in range(3))
        return {kind: np.array([[a, b], [draw(st.sampled_from([b, b, c])), c]])}
    if kind == "two":
        return {"sigma": 1.0, "information": np.eye(2)}
    return {}


@st.composite
def problem_specs(draw):
    n_a, n_b = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    groups = [("a", draw(array_like((n_a, 2))), {}),
              ("b", draw(array_like((n_b, 2))), {"constant": draw(st.sampled_from([None, [0], [n_b], [True]]))})]
    residuals = []
    for r in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(["prior_2d", "offset_2d", "distance_2d"]))
        n = draw(st.integers(1, 5))
        if key == "prior_2d":
            g = draw(st.sampled_from(["a", "b"]))
            blocks = [(g, draw(index_array(n, n_a if g == "a" else n_b)))]
        else:
            blocks = [("a", draw(index_array(n, n_a))), ("b", draw(index_array(n, n_b)))]
        data_size = 1 if key == "distance_2d" else 2
        data = draw(array_like((n, data_size)))
        kwargs = dict(draw(weighting(n)))
        loss = draw(st.sampled_from([None, None, "huber", "cauchy", "soft_l1", "arctan", "tukey"]))
        if loss is not None:
            kwargs.update(loss=loss, loss_scale=draw(st.sampled_from([1.0, 0.5, 3.0, 0.0, -1.0, np.inf])))
        residuals.append((f"r{r}", key, blocks, data, kwargs))
    return {"groups": groups, "residuals": residuals}


@pytest.fixture(scope="module")
def warm_worker(worker):
    solved_warm_up(worker, solve_problem_spec, SMALL_SPEC)
    return worker


@budget(150)
@given(problem_specs())
def test_problems_are_solved_with_their_true_cost_or_refused(warm_worker, spec):
    solved_or_refused(warm_worker, "Problem groups", NAMES, solve_problem_spec, spec)
