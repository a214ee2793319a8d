"""sparselm.core.covisibility: kept blocks sharing eliminated blocks, counted once per pair; the lower
pattern of it, marked in a table for few kept blocks (also when every pair is covisible and the
sweep stops early) and from the sparse product for many."""
import numpy as np
import pytest

from sparselm.core import covisibility as covisibility_module
from sparselm.core.covisibility import covisibility, covisible_lower_pairs


def test_counts_shared_eliminated_blocks_once_per_pair():
    # cameras 0..2, points 0..2: p0 {c0, c1}, p1 {c1, c2}, p2 {c0, c1, c2}, camera 0 sees p0 twice
    cameras = np.array([0, 1, 1, 2, 0, 1, 2, 0])
    points = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    c = covisibility(cameras, points, 3, 3).toarray()
    np.testing.assert_array_equal(c, [[2, 2, 1], [2, 3, 2], [1, 2, 2]])
    assert (c == c.T).all()


def test_kept_block_without_eliminated_ones_is_isolated():
    c = covisibility(np.array([0, 1]), np.array([0, 0]), 3, 1).toarray()
    assert c[2].sum() == 0 and c[0, 1] == 1


@pytest.mark.parametrize("dense_marks_max_kept", [covisibility_module.DENSE_MARKS_MAX_KEPT, 0], ids=["marked", "product"])
def test_lower_pairs_are_the_lower_pattern_of_covisibility(dense_marks_max_kept, monkeypatch):
    monkeypatch.setattr(covisibility_module, "DENSE_MARKS_MAX_KEPT", dense_marks_max_kept)
    rng = np.random.default_rng(3)
    n_kept, n_elim = 30, 200
    kept = rng.integers(0, n_kept - 2, 700)  # the last two kept blocks see nothing
    elim = rng.integers(0, n_elim, 700)
    rows, cols = covisible_lower_pairs(kept, elim, n_kept, n_elim)
    lower = np.tril(covisibility(kept, elim, n_kept, n_elim).toarray())
    expected_cols, expected_rows = np.nonzero(lower.T)  # column by column, rows ascending
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)
    assert 0 < rows.size < n_kept * (n_kept + 1) // 2 and (rows >= cols).all()


@pytest.mark.parametrize("complete_at", [0, 199])
def test_lower_pairs_when_every_pair_is_covisible(complete_at):
    """Every kept pair shares an eliminated block (small SfM): the marked sweep may stop as soon as all
    are marked, at the first eliminated block or the last, with the pattern of the sparse product."""
    rng = np.random.default_rng(4)
    n_kept, n_elim = 12, 200
    kept = np.r_[rng.integers(0, n_kept, 500), np.arange(n_kept)]
    elim = np.r_[rng.integers(0, n_elim, 500), np.full(n_kept, complete_at)]
    rows, cols = covisible_lower_pairs(kept, elim, n_kept, n_elim)
    expected_cols, expected_rows = np.nonzero(np.tril(covisibility(kept, elim, n_kept, n_elim).toarray()).T)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)
    assert rows.size == n_kept * (n_kept + 1) // 2
