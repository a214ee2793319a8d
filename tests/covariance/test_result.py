"""The Covariance object: lookups, standard deviations, the .npz file."""
from __future__ import annotations

import numpy as np
import pytest

from sparselm.covariance.result import Covariance


def make():
    mats = {"cameras": np.stack([np.diag([4.0, 9.0]), np.full((2, 2), np.nan)]), "points": np.zeros((1, 3, 3))}
    return Covariance(mats, {"cameras": np.array([3, 5]), "points": np.array([0])},
                      {"cameras": {5: "rank 1 < 2"}, "points": {}},
                      {(("cameras", 3), ("points", 0)): np.ones((2, 3))},
                      {"mode": "pinv", "null_space_dimension": 7, "fixed_coordinates": []}, 1.0, 0.5)


def test_lookups_and_standard_deviations():
    cov = make()
    assert np.array_equal(cov.std("cameras", 3), [2.0, 3.0])
    assert np.isnan(cov.std("cameras")[1]).all()
    assert cov.reason("cameras", 5) == "rank 1 < 2" and cov.reason("cameras", 3) is None
    assert cov.pair(("points", 0), ("cameras", 3)).shape == (3, 2)
    with pytest.raises(KeyError, match="block 4"):
        cov.block("cameras", 4)
    with pytest.raises(KeyError, match="not asked for"):
        cov.pair(("cameras", 5), ("points", 0))


def test_npz_holds_one_array_per_group_and_the_indices(tmp_path):
    cov = make()
    path = tmp_path / "cov.npz"
    cov.save_npz(path)
    with np.load(path) as data:
        assert data["cameras"].shape == (2, 2, 2) and data["cameras_indices"].tolist() == [3, 5]
        assert data["cameras_undefined"].tolist() == [5] and int(data["null_space_dimension"]) == 7
        assert data["points"].shape == (1, 3, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["cov.npz"]  # no temporary left behind
    assert cov.report()["groups"]["cameras"] == {"blocks": 2, "tangent_size": 2, "undefined": 1}
