"""sparselm.colmap.model: helpers on the model's row numbers (the data model itself is tested through
reading and writing in test_io.py)."""
from __future__ import annotations

import numpy as np

import pytest

from sparselm.colmap.model import DIRECT_LOOKUP_SPAN, present_rows, rows_of


def test_present_rows_is_the_sorted_set_of_rows():
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 50, 2000)
    rows[rows == 7] = 8  # one row absent
    assert np.array_equal(present_rows(rows, 60), np.unique(rows))
    assert 7 not in present_rows(rows, 60)
    assert present_rows(np.zeros(0, np.int64), 5).size == 0


def _rows_by_search(ids, wanted):
    """The first row of each wanted id, -1 where absent, by a plain Python search."""
    first = {}
    for row, i in enumerate(ids.tolist()):
        first.setdefault(i, row)
    return np.array([first.get(w, -1) for w in wanted.tolist()], dtype=np.int64)


@pytest.mark.parametrize("ids, wanted", [
    (np.array([3, 1, 2, 7]), np.array([7, 1, 4, -1, 0, 8, 3, 3])),  # small ids: the look-up table
    (np.array([5, 2, 5, 9]), np.array([5, 9, 2, 6])),  # a repeated id: its first row, by the sort
    (np.array([10**12, 4, 10**9]), np.array([4, 10**9, 10**12, 5])),  # large ids: the sort
    (np.array([-3, 4, 0]), np.array([-3, 0, 4, 1])),  # a negative id: the sort
    (np.array([], dtype=np.int64), np.array([1, 2])),
    (np.array([1, 2]), np.array([], dtype=np.int64)),
    (np.array([1, 2], dtype=np.uint32), np.array([2, 1, 3], dtype=np.int64)),
])
def test_rows_of_finds_the_first_row_of_each_id(ids, wanted):
    np.testing.assert_array_equal(rows_of(ids, wanted), _rows_by_search(ids, wanted))


def test_rows_of_table_and_sort_agree_on_random_ids():
    rng = np.random.default_rng(3)
    ids = rng.permutation(400)[:150] + 1
    wanted = rng.integers(-5, 420, 2000)
    assert ids.max() <= DIRECT_LOOKUP_SPAN * (len(ids) + len(wanted))  # the table path
    np.testing.assert_array_equal(rows_of(ids, wanted), _rows_by_search(ids, wanted))


def test_validate_names_the_first_camera_at_fault():
    """The first camera with any fault is named (camera parameters are checked all at once)."""
    from sparselm.colmap.model import ColmapFormatError, validate
    from sparselm.colmap.synthetic import synthetic_model

    files = {"cameras": "cameras.bin", "images": "images.bin", "points3D": "points3D.bin"}
    model = synthetic_model("SIMPLE_PINHOLE", n_images=4, n_cameras=3, n_points=20, seed=1).initial
    model.camera_params[model.camera_param_offsets[1]] = np.nan  # camera record 1
    model.camera_model_ids[2] = 99  # camera record 2
    with pytest.raises(ColmapFormatError, match=r"cameras.bin: camera \d+ \(record 1\): non-finite parameter"):
        validate(model, files)
    model.camera_model_ids[0] = 98
    with pytest.raises(ColmapFormatError, match=r"\(record 0\): unknown camera model id 98"):
        validate(model, files)
