"""Takahashi selected inversion against the dense inverse, on CHOLMOD's real factors."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.covariance.selected_inverse import PatternNotClosedError, SelectedInverse
from sparselm.linalg.cholmod import CholmodFactor


def random_spd(n, density, seed):
    a = sp.random(n, n, density, random_state=seed)
    return sp.csc_matrix(a @ a.T + 0.5 * sp.eye(n))


@pytest.mark.parametrize("mode", ["supernodal", "simplicial"])
@pytest.mark.parametrize("ordering", ["amd", "natural"])
def test_entries_on_the_pattern_equal_the_dense_inverse(mode, ordering):
    a = random_spd(300, 0.01, 1)
    lower = sp.csc_matrix(sp.tril(a))
    factor = CholmodFactor(lower, ordering, mode)
    assert factor.factorize(lower)
    selected = SelectedInverse(*factor.lower_factor())
    dense = np.linalg.inv(a.toarray())
    rows, cols = a.nonzero()  # every entry of A's pattern is on L's (fill included)
    got = selected.gather(rows[:, None], cols[:, None])[:, 0, 0]
    assert np.abs(got - dense[rows, cols]).max() <= 1e-12 * np.abs(dense).max()
    blocks = selected.gather(np.array([[0, 1, -1]]), np.array([[0, 1]]))
    assert blocks.shape == (1, 3, 2) and np.all(blocks[0, 2] == 0.0)


def test_entries_off_the_pattern_are_nan():
    a = sp.csc_matrix(np.diag([2.0, 3.0, 4.0]))
    factor = CholmodFactor(sp.csc_matrix(sp.tril(a)), "natural", "simplicial")
    assert factor.factorize(sp.csc_matrix(sp.tril(a)))
    selected = SelectedInverse(*factor.lower_factor())
    assert np.isnan(selected.gather(np.array([[0]]), np.array([[2]]))[0, 0, 0])
    assert selected.gather(np.array([[2]]), np.array([[2]]))[0, 0, 0] == pytest.approx(0.25, rel=1e-15)


def test_a_pattern_that_is_not_closed_is_refused():
    # L with entries (1,0) and (2,0) but not (2,1): column 0's structure {1, 2} is not a clique.
    lower = sp.csc_matrix(np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0.5, 0, 1.0]]))
    with pytest.raises(PatternNotClosedError, match="column 0"):
        SelectedInverse(lower, np.arange(3))
