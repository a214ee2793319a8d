"""Statistics of a COLMAP model (``sparselm info``): sizes, tracks, co-visibility, cost."""
import numpy as np

from sparselm.colmap import read_model
from sparselm.colmap.report import model_statistics, statistics_lines
from sparselm.colmap.synthetic import synthetic_model


def test_statistics_of_a_real_model(video7_dir):
    model = read_model(video7_dir)
    s = model_statistics(model)
    assert (s["images"], s["cameras"], s["points"], s["observations"]) == (7, 7, 699, 2616)
    assert s["camera_models"] == {"SIMPLE_RADIAL": 7}
    assert s["track_length"]["min"] >= 2 and s["observations_behind_camera"] == 0
    assert abs(s["cost"] - 635.5376) < 1e-3
    assert s["covisibility"]["connected_components"] == 1
    assert any("co-visibility" in line for line in statistics_lines(s))


def test_statistics_count_points_behind_the_camera():
    model = synthetic_model("PINHOLE", n_images=6, n_points=50, seed=1).ground_truth
    s0 = model_statistics(model)
    moved = model.with_values(points_xyz=-model.points_xyz * 10)  # far behind the cameras on the other side
    s1 = model_statistics(moved)
    assert s0["observations_behind_camera"] == 0 and s1["observations_behind_camera"] > 0
    assert any("behind their camera" in line for line in statistics_lines(s1))
    assert np.isfinite(s1["cost"])
