"""Synthetic COLMAP models: valid, deterministic in the seed, ground truth consistent with the noise,
readable by pycolmap when it is installed."""
import numpy as np
import pytest

from sparselm.colmap import read_model, write_model
from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.cameras import PROJECTABLE_MODEL_IDS
from sparselm.colmap.model import validate
from sparselm.colmap.reprojection import observation_errors
from sparselm.colmap.synthetic import synthetic_model

MODELS = [CAMERA_MODELS[i].name for i in PROJECTABLE_MODEL_IDS]
FILES = {"cameras": "cameras", "images": "images", "points3D": "points3D"}


@pytest.mark.parametrize("name", MODELS)
def test_synthetic_model_is_valid_and_its_truth_fits_the_noise(name):
    s = synthetic_model(name, noise_px=0.5, seed=5)
    validate(s.initial, FILES)
    validate(s.ground_truth, FILES)
    errors, in_front = observation_errors(s.ground_truth)
    assert in_front.all()
    assert np.sqrt(np.mean(errors ** 2)) == pytest.approx(0.5 * np.sqrt(2), rel=0.1)
    assert np.sqrt(np.mean(observation_errors(s.initial)[0] ** 2)) > 5.0  # perturbed: far from the truth


def test_synthetic_model_is_deterministic_and_outliers_are_marked():
    a = synthetic_model("OPENCV", outlier_fraction=0.1, seed=9)
    b = synthetic_model("OPENCV", outlier_fraction=0.1, seed=9)
    np.testing.assert_array_equal(a.initial.points_xyz, b.initial.points_xyz)
    np.testing.assert_array_equal(a.outliers, b.outliers)
    assert 0.05 < a.outliers.mean() < 0.15
    errors, _ = observation_errors(a.ground_truth)
    assert np.median(errors[a.outliers]) > 20 * np.median(errors[~a.outliers])


def test_pycolmap_reads_what_we_write(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    s = synthetic_model("THIN_PRISM_FISHEYE", seed=1)
    folder = write_model(s.ground_truth, tmp_path / "m")
    rec = pycolmap.Reconstruction(str(folder))
    assert rec.num_reg_images() == s.ground_truth.n_images and rec.num_points3D() == s.ground_truth.n_points
    assert read_model(folder).n_observations == s.ground_truth.n_observations
