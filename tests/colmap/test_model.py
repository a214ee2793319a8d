"""sparselm.colmap.model: helpers on the model's row numbers (the data model itself is tested through
reading and writing in test_io.py)."""
from __future__ import annotations

import numpy as np

from sparselm.colmap.model import present_rows


def test_present_rows_is_the_sorted_set_of_rows():
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 50, 2000)
    rows[rows == 7] = 8  # one row absent
    assert np.array_equal(present_rows(rows, 60), np.unique(rows))
    assert 7 not in present_rows(rows, 60)
    assert present_rows(np.zeros(0, np.int64), 5).size == 0
