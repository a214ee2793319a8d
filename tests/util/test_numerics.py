"""The overflow-safe norms and row normalisation of sparselm.util.numerics, against a 60-digit decimal
reference, and the readers that normalise quaternions with them (g2o, COLMAP): a quaternion with
entries of 1e200 is a valid direction, not the zero vector an overflowing norm made of it."""
from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from sparselm.util import numerics
from sparselm.util.numerics import all_finite, combined_norm, stable_norm, unit_rows


def exact_norm(values) -> float:
    with decimal.localcontext() as context:
        context.prec = 60
        return float(sum((decimal.Decimal(float(v)) ** 2 for v in values), decimal.Decimal(0)).sqrt())


@pytest.mark.parametrize("values", [np.array([3.0, 4.0]), np.array([1e200, 1e200]), np.array([1e-300, -1e-300, 0.0]),
                                    np.array([5e-324, 0.0]), np.array([-0.0]), np.array([]), np.full(7, 1e307)])
def test_stable_norm_agrees_with_a_high_precision_reference(values):
    assert stable_norm(values) == pytest.approx(exact_norm(values), rel=1e-14, abs=0.0)
    assert combined_norm([stable_norm(values), 0.0]) == stable_norm(values)


def test_stable_norm_of_nan_and_beyond_dbl_max():
    assert math.isnan(stable_norm(np.array([1.0, np.nan])))
    assert stable_norm(np.array([1.7e308, 1.7e308])) == math.inf  # the norm itself exceeds DBL_MAX
    assert np.linalg.norm(np.array([1e200, 1e200])) == math.inf  # what the old |x| computed


@pytest.mark.parametrize("row", [[0.0, 0.0, 1e200, 1e200], [1e-200, 0.0, -1e-200, 0.0], [3.0, 4.0, 0.0, 0.0],
                                 [5e-324, 0.0, 0.0, 0.0], [1.7e308, 1.7e308, 0.0, 0.0]])
def test_unit_rows_without_overflow_or_underflow(row):
    unit, norm = unit_rows(np.array([row]))
    exact = exact_norm(row)
    assert norm[0] == pytest.approx(exact, rel=1e-14) or (exact == math.inf and norm[0] == math.inf)
    np.testing.assert_allclose(np.linalg.norm(unit[0]), 1.0, rtol=1e-15)
    np.testing.assert_allclose(unit[0], np.array(row) / np.max(np.abs(row)) / np.linalg.norm(
        np.array(row) / np.max(np.abs(row))), rtol=1e-15)


def test_unit_rows_of_a_zero_row():
    unit, norm = unit_rows(np.zeros((1, 4)))
    assert norm[0] == 0.0 and not unit.any()


def test_g2o_quaternion_with_huge_entries_is_normalised(tmp_path):
    from sparselm.g2o import read_g2o

    path = tmp_path / "q.g2o"
    path.write_text("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 1e200 1e200\n"
                    "EDGE_SE3:QUAT 0 1 1 0 0 0 0 0.0998334 0.995004 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4\n")
    np.testing.assert_allclose(read_g2o(path).poses[1, 3:], [0.0, 0.0, 0.5 ** 0.5, 0.5 ** 0.5], rtol=1e-15)


def test_colmap_rotation_vector_of_a_quaternion_with_huge_or_tiny_entries():
    from sparselm.colmap.rotation import rotvec_from_quaternion

    expected = rotvec_from_quaternion(np.array([[1.0, 1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(expected, [[np.pi / 2, 0.0, 0.0]], rtol=1e-15)
    for scale in (1e200, 1e-200):
        np.testing.assert_allclose(rotvec_from_quaternion(np.array([[scale, scale, 0.0, 0.0]])), expected, rtol=1e-15)


@pytest.mark.parametrize("parallel_min_entries", [numerics.PARALLEL_MIN_ENTRIES, 0], ids=["serial", "parallel"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_bad_entry_anywhere(bad, parallel_min_entries, monkeypatch):
    monkeypatch.setattr(numerics, "PARALLEL_MIN_ENTRIES", parallel_min_entries)  # both counting paths
    rng = np.random.default_rng(3)
    values = rng.normal(size=(1000, 2, 12)) * 1e150
    assert all_finite(values)
    for flat_index in (0, 7, values.size - 1):
        v = values.copy()
        v.reshape(-1)[flat_index] = bad
        assert not all_finite(v)
        assert all_finite(v[:, :, ::2]) == (flat_index % 2 == 1)  # a strided view: only even columns seen
    assert all_finite(np.zeros((0, 2)))
