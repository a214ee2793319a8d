"""Bundle adjustment of COLMAP models: the reprojection Jacobian against finite differences, the
cost against COLMAP's, recovery of ground truth on synthetic models of every camera model (with and
without outliers), the options (what is refined, constant images/points, gauges), and on the real
models a final cost no worse than pycolmap 4.2.1's."""
import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import sparselm
from sparselm.colmap import read_model
from sparselm.colmap.adjust import bundle_adjust
from sparselm.colmap.camera_models import CAMERA_MODELS, camera_model_by_name
from sparselm.colmap.cameras import PROJECTABLE_MODEL_IDS, img_from_cam
from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem, solution_to_model
from sparselm.colmap.reprojection import observation_errors
from sparselm.colmap.synthetic import WIDTH, HEIGHT, synthetic_model

from tests.colmap.conftest import model_dir_or_skip

MODELS = [CAMERA_MODELS[i].name for i in PROJECTABLE_MODEL_IDS]
#: pycolmap 4.2.1's final costs with default options (the data folder's README).
PYCOLMAP_FINAL_COST = {"sfm-92": 28629.82, "video-7": 635.5376}


def cost(model):
    errors, in_front = observation_errors(model)
    return 0.5 * float(np.sum(errors[in_front] ** 2))


@pytest.mark.parametrize("layout", ["shared-cameras", "one-camera-per-image"])
@pytest.mark.parametrize("name", MODELS)
def test_reprojection_jacobian_matches_finite_differences(name, layout):
    """Both layouts: poses and intrinsics in separate groups (cameras shared by images, all parameters
    refined), and one joint block per image (pose then the refined intrinsics; the principal point
    fixed, as by default) when every camera has one image."""
    n_cameras = 2 if layout == "shared-cameras" else 4
    model = synthetic_model(name, n_images=4, n_cameras=n_cameras, n_points=30, seed=3).ground_truth
    built = build_problem(model, BundleAdjustmentOptions(refine_principal_point=layout == "shared-cameras"))
    group = built.problem.residual_groups[0]
    expected = "cameras_" if layout == "one-camera-per-image" else "poses"
    assert group.groups[0].startswith(expected)
    params = [built.problem.parameter_groups[g].values for g in group.groups]
    check = sparselm.check_jacobian(group.residual_type, params, group.index, group.data, tolerance=1e-5)
    assert check.ok, check


def test_cost_is_colmaps_and_points_behind_drop_out(video7_dir):
    model = read_model(video7_dir)
    assert cost(model) == pytest.approx(635.5376, rel=1e-6)  # pycolmap's initial cost (README)
    behind = model.with_values(points_xyz=model.points_xyz.copy())
    image_row, point_row, _ = model.observations()
    # move one point behind the first camera that sees it: its observations there leave the cost
    p = point_row[0]
    q, t = model.image_qvecs[image_row[0]], model.image_tvecs[image_row[0]]
    rot = Rotation.from_quat(q[[1, 2, 3, 0]])
    in_cam = rot.apply(model.points_xyz[p]) + t
    behind.points_xyz[p] = rot.inv().apply(in_cam * [1, 1, -1] - t)
    errors, in_front = observation_errors(behind)
    assert not in_front[0] and errors[0] == 0.0
    assert build_problem(behind).n_behind >= 1


def _aligned_errors(estimated, truth):
    """Rotation error (rad) and centre error of each image after the similarity that best maps the
    estimated camera centres onto the true ones (Umeyama), i.e. up to the gauge."""
    def centres(m):
        return -Rotation.from_quat(m.image_qvecs[:, [1, 2, 3, 0]]).inv().apply(m.image_tvecs)

    a, b = centres(estimated), centres(truth)
    ma, mb = a.mean(0), b.mean(0)
    u, s, vt = np.linalg.svd((b - mb).T @ (a - ma))
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / np.sum((a - ma) ** 2)
    aligned = scale * (a - ma) @ r.T + mb
    rot_est = Rotation.from_quat(estimated.image_qvecs[:, [1, 2, 3, 0]]) * Rotation.from_matrix(r.T)
    rot_err = (rot_est * Rotation.from_quat(truth.image_qvecs[:, [1, 2, 3, 0]]).inv()).magnitude()
    return rot_err, np.linalg.norm(aligned - b, axis=1)


def _projection_map_error(model_id, estimated, truth):
    """Max pixel difference between two cameras' projections of directions in the part of the image
    the synthetic scene covers (|x/z| <= 0.35, |y/z| <= 0.3; distortion is unconstrained outside)."""
    xy = np.stack(np.meshgrid(np.linspace(-0.35, 0.35, 8), np.linspace(-0.3, 0.3, 7)), -1).reshape(-1, 2)
    dirs = np.c_[xy, np.ones(len(xy))]
    return float(np.max(np.abs(img_from_cam(model_id, estimated, dirs) - img_from_cam(model_id, truth, dirs))))


@pytest.mark.parametrize("outliers", [0.0, 0.1], ids=["clean", "10pc-outliers"])
@pytest.mark.parametrize("name", MODELS)
def test_synthetic_model_recovers_ground_truth(name, outliers):
    synthetic = synthetic_model(name, outlier_fraction=outliers, seed=7)
    spec = camera_model_by_name(name)
    loss = dict(loss_function_type="cauchy", loss_function_scale=2.0) if outliers else {}
    adjusted, summary = bundle_adjust(synthetic.initial, BundleAdjustmentOptions(**loss))
    assert summary.final_cost < summary.initial_cost
    rot_err, centre_err = _aligned_errors(adjusted, synthetic.ground_truth)
    assert rot_err.max() < np.radians(0.1), rot_err.max()
    assert centre_err.max() < 0.02, centre_err.max()  # scene radius 10
    true_params = synthetic.ground_truth.camera_params.reshape(-1, spec.n_params)
    est_params = adjusted.camera_params.reshape(-1, spec.n_params)
    for est, true in zip(est_params, true_params):
        assert _projection_map_error(spec.model_id, est, true) < 1.0
        if name != "FULL_OPENCV":  # its rational distortion trades off with the focal length
            np.testing.assert_allclose(est[list(spec.focal_indices)], true[list(spec.focal_indices)], rtol=3e-3)
    inliers = ~synthetic.outliers
    errors, _ = observation_errors(adjusted)
    assert np.sqrt(np.mean(errors[inliers] ** 2)) < 0.8  # noise 0.5 px per coordinate: RMS 0.707


def test_options_hold_what_they_should():
    synthetic = synthetic_model("OPENCV", seed=2)
    model = synthetic.initial
    options = BundleAdjustmentOptions(refine_focal_length=False, refine_extra_params=False,
                                      constant_image_ids=[int(model.image_ids[3])],
                                      constant_point3D_ids=[int(model.point3D_ids[5])])
    adjusted, summary = bundle_adjust(model, options)
    assert summary.final_cost < summary.initial_cost
    np.testing.assert_array_equal(adjusted.camera_params, model.camera_params)
    np.testing.assert_array_equal(adjusted.image_qvecs[3], model.image_qvecs[3])
    np.testing.assert_array_equal(adjusted.image_tvecs[3], model.image_tvecs[3])
    np.testing.assert_array_equal(adjusted.points_xyz[5], model.points_xyz[5])
    moved, _ = bundle_adjust(model, refine_principal_point=True)
    assert not np.array_equal(moved.camera_params[2:4], model.camera_params[2:4])
    with pytest.raises(ValueError, match="image 999 is not in the model"):
        build_problem(model, BundleAdjustmentOptions(constant_image_ids=[999]))
    with pytest.raises(ValueError, match="loss_function_type"):
        BundleAdjustmentOptions(loss_function_type="arctan")


@pytest.mark.parametrize("layout", ["shared-cameras", "one-camera-per-image"])
def test_poses_on_the_quaternion_manifold_stay_unit(layout):
    """Poses are (q, t) blocks on SO(3) x R^(3 + refined intrinsics): 6 tangent columns plus the
    refined intrinsics; every quaternion is unit to 1e-12 after a solve, in the group and the model."""
    synthetic = synthetic_model("RADIAL", n_cameras=3 if layout == "shared-cameras" else 12, seed=5)
    built = build_problem(synthetic.initial)
    pose_group = built.problem.parameter_groups[built.pose_groups[0][0]]
    free = 0 if layout == "shared-cameras" else 3  # RADIAL: f, k1, k2 refined in the joint block
    assert pose_group.manifold.name == f"so3_quaternion x R^{3 + free}"
    assert pose_group.manifold.tangent_size == 6 + free
    summary = sparselm.solve(built.problem, max_iterations=30, function_tolerance=0.0)
    assert summary.final_cost < summary.initial_cost
    assert np.abs(np.linalg.norm(pose_group.values[:, :4], axis=1) - 1.0).max() < 1e-12
    adjusted = solution_to_model(built)
    assert np.abs(np.linalg.norm(adjusted.image_qvecs, axis=1) - 1.0).max() < 1e-12
    assert cost(adjusted) == pytest.approx(summary.final_cost, rel=1e-9)


@pytest.mark.parametrize("gauge", ["two_cams_from_world", "three_points"])
def test_fixed_gauges(gauge):
    """Two poses' worth (7 dof) is exactly the gauge: same minimum. Three points hold 9 coordinates,
    2 more than the gauge (their distances), so the minimum can only be higher."""
    synthetic = synthetic_model("SIMPLE_RADIAL", seed=4)
    free, s_free = bundle_adjust(synthetic.initial)
    fixed, s_fixed = bundle_adjust(synthetic.initial, gauge=gauge)
    if gauge == "two_cams_from_world":
        assert s_fixed.final_cost == pytest.approx(s_free.final_cost, rel=1e-6)
        np.testing.assert_array_equal(fixed.image_tvecs[0], synthetic.initial.image_tvecs[0])
    else:
        assert s_fixed.final_cost >= s_free.final_cost * (1 - 1e-9)
        lengths = np.diff(synthetic.initial.track_offsets)
        held = np.argsort(-lengths, kind="stable")[:3]
        np.testing.assert_array_equal(fixed.points_xyz[held], synthetic.initial.points_xyz[held])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PYCOLMAP_FINAL_COST))
def test_real_model_final_cost_at_most_pycolmaps(name):
    model = read_model(model_dir_or_skip(name))
    adjusted, summary = bundle_adjust(model)
    assert summary.final_cost <= PYCOLMAP_FINAL_COST[name] * (1 + 1e-6)
    assert cost(adjusted) == pytest.approx(summary.final_cost, rel=1e-9)


def test_sfm92_reduced_system_is_dense_and_solved_densely():
    """Every pair of sfm-92's 92 images shares points: S's factor is full, and 'auto' factors it with
    LAPACK (dense_schur) rather than CHOLMOD."""
    from sparselm.core.layout import build_layout
    from sparselm.linalg.auto import choose_linear_solver

    layout = build_layout(build_problem(read_model(model_dir_or_skip("sfm-92"))).problem)
    choice = choose_linear_solver(layout, "auto")
    n = layout.n_reduced_columns
    assert n == 92 * 8 and choice.factor_estimate["nnz"] == n * (n + 1) // 2
    assert choice.name == "dense_schur"


def test_unsupported_camera_model_and_unobserved_images():
    model = synthetic_model("SIMPLE_RADIAL", n_images=6, n_cameras=2, n_points=60, seed=2).initial
    fov = dataclasses.replace(model, camera_model_ids=np.full(2, camera_model_by_name("FOV").model_id),
                              camera_params=np.tile([500.0, 500.0, 320.0, 240.0, 0.1], 2),
                              camera_param_offsets=np.arange(3) * 5)
    with pytest.raises(ValueError, match="camera 1: camera model FOV is not supported"):
        build_problem(fov)
    # an image whose 2-D points observe nothing stays as it was; the others are adjusted
    lone = dataclasses.replace(model, image_ids=np.r_[model.image_ids, 99], image_camera_ids=np.r_[model.image_camera_ids, 1],
                               image_qvecs=np.r_[model.image_qvecs, [[1.0, 0, 0, 0]]],
                               image_tvecs=np.r_[model.image_tvecs, [[0.0, 0, 5]]], image_names=model.image_names + ["x"],
                               points2D_xy=np.r_[model.points2D_xy, [[1.0, 2.0]]],
                               points2D_point3D_ids=np.r_[model.points2D_point3D_ids, -1],
                               points2D_offsets=np.r_[model.points2D_offsets, model.points2D_offsets[-1] + 1])
    adjusted, summary = bundle_adjust(lone)
    assert summary.final_cost < summary.initial_cost
    np.testing.assert_array_equal(adjusted.image_qvecs[-1], [1.0, 0, 0, 0])
    np.testing.assert_array_equal(adjusted.image_tvecs[-1], [0.0, 0, 5])
