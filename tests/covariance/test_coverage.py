"""Coverage: 95% confidence ellipsoids of camera centres contain the true centre in 95% +- 2% of
1,000 seeded trials (synthetic BA with known pixel noise, sigma given, the gauge held by two
cameras at their true values)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

import sparselm
from sparselm.bal import build_problem, synthetic_problem
from sparselm.covariance import covariance

TRIALS = 1000
CAMERA = 3


def centre(pose):
    """Camera centre -R(w)^T t of a BAL pose (w, t)."""
    return -Rotation.from_rotvec(pose[:3]).as_matrix().T @ pose[3:6]


def centre_jacobian(pose, h=1e-7):
    """d centre / d (w, t), (3, 6), by central differences (the map is smooth)."""
    out = np.empty((3, 6))
    for i in range(6):
        step = np.zeros(9)
        step[i] = h
        out[:, i] = (centre(pose + step) - centre(pose - step)) / (2 * h)
    return out


def test_camera_centre_ellipsoids_cover_the_truth():
    threshold = chi2.ppf(0.95, 3)
    inside = 0
    for trial in range(TRIALS):
        syn = synthetic_problem(5, 40, observations_per_point=3.0, seed=trial, pixel_noise=1.0, param_noise=0.002)
        bal = syn.initial
        bal.cameras[:2] = syn.ground_truth.cameras[:2]
        problem = build_problem(bal, fix_cameras=[0, 1], sigma=1.0)
        summary = sparselm.solve(problem, max_iterations=50)
        assert summary.termination == "convergence", trial
        cov = covariance(problem, summary, blocks={"cameras": [CAMERA]})
        pose = problem.parameter_groups["cameras"].values[CAMERA]
        a = centre_jacobian(pose)
        sigma_c = a @ cov.block("cameras", CAMERA)[:6, :6] @ a.T
        err = centre(pose) - centre(syn.ground_truth.cameras[CAMERA])
        inside += float(err @ np.linalg.solve(sigma_c, err)) <= threshold
    assert 0.93 <= inside / TRIALS <= 0.97, inside / TRIALS
