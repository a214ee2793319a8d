"""COLMAP camera models: projections match pycolmap's Camera.img_from_cam on a grid of points,
Jacobians (parameters and camera-frame point) match central differences, failed projections."""
import numpy as np
import pytest

from sparselm.colmap.camera_models import CAMERA_MODELS, camera_model_by_name
from sparselm.colmap.cameras import PROJECTABLE_MODEL_IDS, img_from_cam, img_from_cam_jacobians

REQUIRED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV",
            "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE")
MODELS = [CAMERA_MODELS[i].name for i in PROJECTABLE_MODEL_IDS]


def camera_params(name, seed=0, distortion=0.05):
    """Plausible parameters: focal ~500 px, principal point near the centre of 640x480, small distortion."""
    rng = np.random.default_rng(seed)
    model = camera_model_by_name(name)
    params = rng.normal(0.0, distortion, model.n_params)
    params[list(model.focal_indices)] = 500.0 + rng.uniform(0.0, 50.0, model.n_focal)
    params[list(model.principal_point_indices)] = (320.5, 240.5) + rng.normal(0.0, 3.0, 2)
    return params


def grid_points():
    """Camera-frame points over the field of view, at several depths (plus the optical axis)."""
    xy = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 9), np.linspace(-0.6, 0.6, 7)), -1).reshape(-1, 2)
    depth = np.repeat([0.5, 2.0, 30.0], len(xy))
    return np.c_[np.tile(xy, (3, 1)) * depth[:, None], depth]


def test_every_required_model_is_supported():
    assert set(REQUIRED) <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_projection_matches_pycolmap(name):
    pycolmap = pytest.importorskip("pycolmap")
    for seed in range(3):
        params = camera_params(name, seed)
        camera = pycolmap.Camera(model=name, width=640, height=480, params=params)
        points = grid_points()
        expected = camera.img_from_cam(points)
        np.testing.assert_allclose(img_from_cam(camera_model_by_name(name).model_id, params, points), expected,
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_jacobians_match_central_differences(name):
    model = camera_model_by_name(name)
    params = camera_params(name, seed=1, distortion=0.1)
    points = grid_points()
    _, j_params, j_point = img_from_cam_jacobians(model.model_id, params, points)
    for k in range(model.n_params):
        h = 1e-6 * max(1.0, abs(params[k]))
        up, down = params.copy(), params.copy()
        up[k] += h
        down[k] -= h
        numeric = (img_from_cam(model.model_id, up, points) - img_from_cam(model.model_id, down, points)) / (2 * h)
        np.testing.assert_allclose(j_params[:, :, k], numeric, rtol=1e-6, atol=1e-6 * 500, err_msg=f"param {k}")
    for k in range(3):
        h = 1e-6 * np.maximum(1.0, np.abs(points[:, k]))
        up, down = points.copy(), points.copy()
        up[:, k] += h
        down[:, k] -= h
        numeric = (img_from_cam(model.model_id, params, up) - img_from_cam(model.model_id, params, down)) / (2 * h[:, None])
        np.testing.assert_allclose(j_point[:, :, k], numeric, rtol=1e-6, atol=1e-4, err_msg=f"point coordinate {k}")


@pytest.mark.parametrize("name", ["OPENCV_FISHEYE", "THIN_PRISM_FISHEYE"])
def test_fisheye_near_the_optical_axis(name):
    """The fisheye map's small-angle branch: the Jacobian is continuous through rho = 1e-4 and equals
    the focal length times (I + D) on the axis."""
    model = camera_model_by_name(name)
    params = camera_params(name)
    points = np.array([[0.0, 0.0, 1.0], [0.99999e-4, 0.0, 1.0], [1.00001e-4, 0.0, 1.0]])
    _, _, j_point = img_from_cam_jacobians(model.model_id, params, points)
    np.testing.assert_allclose(j_point[1], j_point[2], rtol=1e-6, atol=1e-5)
    assert j_point[0, 0, 0] == pytest.approx(params[0]) and j_point[0, 1, 1] == pytest.approx(params[1])


def test_points_behind_the_camera_do_not_project():
    model = camera_model_by_name("SIMPLE_RADIAL")
    pixels, j_params, j_point = img_from_cam_jacobians(model.model_id, camera_params("SIMPLE_RADIAL"),
                                                       [[0.1, 0.2, -1.0], [0.1, 0.2, 0.0], [0.1, 0.2, 1.0]])
    assert np.isnan(pixels[:2]).all() and np.isfinite(pixels[2]).all()
    assert not j_params[:2].any() and not j_point[:2].any()


def test_unsupported_model_and_wrong_parameter_count_are_errors():
    with pytest.raises(ValueError, match="FOV is not supported"):
        img_from_cam(camera_model_by_name("FOV").model_id, np.ones(5), np.ones((1, 3)))
    with pytest.raises(ValueError, match="OPENCV takes 8 parameters"):
        img_from_cam(camera_model_by_name("OPENCV").model_id, np.ones(4), np.ones((1, 3)))
