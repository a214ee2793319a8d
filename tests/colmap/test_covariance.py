"""Pose covariances against pycolmap 4's estimate_ba_covariance on the shared real models (the gauge
held the same way in both: the first two images' poses constant)."""
from __future__ import annotations

import numpy as np
import pytest

import sparselm
from sparselm.colmap import read_model
from sparselm.colmap.covariance import cam_cov_from_world, colmap_rotation_tangent
from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem

pycolmap = pytest.importorskip("pycolmap")  # the bench extra; CI installs it


def pycolmap_covariance(folder, constant_ids):
    rec = pycolmap.Reconstruction(str(folder))
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)
    for image_id in constant_ids:
        config.set_constant_rig_from_world_pose(int(image_id))
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(options, config, rec)
    options = pycolmap.BACovarianceOptions()
    options.damping = 0.0  # pycolmap adds 1e-8 to the diagonal of S by default; compare the exact inverse
    return pycolmap.estimate_ba_covariance(options, rec, adjuster)


def test_pose_covariances_match_pycolmap(real_model_dir):
    model = read_model(real_model_dir)
    held = [int(i) for i in model.image_ids[:2]]
    theirs = pycolmap_covariance(real_model_dir, held)
    assert theirs is not None
    problem = build_problem(model, BundleAdjustmentOptions(constant_image_ids=held))
    cov = sparselm.covariance(problem.problem, None, blocks=[g for g, _ in problem.pose_groups])
    ours = cam_cov_from_world(problem, cov)
    assert len(ours) == len(model.image_ids)
    for image_id, mine in ours.items():
        if image_id in held:
            assert np.all(mine == 0.0)
            continue
        ref = theirs.get_cam_cov_from_world(image_id)
        scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
        # each entry relative to its standard deviations. Measured: 2e-11 on video-7; on sfm-92 a median
        # of 2.4e-4 and at most 3.2e-4 over its 90 free images, whose reduced camera matrix is badly
        # conditioned (4,200 px focal lengths, large k): the size of either side's rounding (not settled)
        assert np.abs((mine - ref) / scale).max() <= 1e-3, image_id


def test_rotation_tangent_maps_the_right_step_to_colmaps_left_step():
    """R Exp(dw) = Exp(2 d) R with d = colmap_rotation_tangent(q) dw (to first order in dw)."""
    from scipy.spatial.transform import Rotation
    q = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_quat()  # (qx, qy, qz, qw)
    dw = 1e-6 * np.array([1.0, 2.0, -0.5])
    rot = Rotation.from_quat(q)
    left = (rot * Rotation.from_rotvec(dw)) * rot.inv()
    assert np.allclose(left.as_rotvec(), 2.0 * colmap_rotation_tangent(q) @ dw, rtol=1e-5, atol=1e-14)


def test_gauge_free_covariance_where_pycolmap_returns_none(video7_dir):
    assert pycolmap_covariance(video7_dir, []) is None  # "Schur complement ... rank deficient" (undamped)
    problem = build_problem(read_model(video7_dir))
    cov = sparselm.covariance(problem.problem, None, blocks=[g for g, _ in problem.pose_groups])
    assert cov.gauge["null_space_dimension"] == 7  # the similarity of the world
    poses = np.stack(list(cam_cov_from_world(problem, cov).values()))
    assert poses.shape == (7, 6, 6) and np.isfinite(poses).all()
    assert (np.linalg.eigvalsh(poses) > 0).all()
