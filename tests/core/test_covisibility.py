"""sparselm.core.covisibility: kept blocks sharing eliminated blocks, counted once per pair."""
import numpy as np

from sparselm.core.covisibility import covisibility


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
