"""COLMAP reprojection residual types: the column-skipping kernels write exactly the wanted columns
(the same numbers as the full kernel, nothing elsewhere), the evaluator's Jacobian has zero columns
for every constant coordinate, and the kernels agree with each other and on pieces of a group."""
import numpy as np
import pytest

from sparselm.colmap.camera_models import CAMERA_MODELS
from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem
from sparselm.colmap.synthetic import synthetic_model
from sparselm.core.evaluator import Evaluator
from sparselm.core.layout import build_layout
from sparselm.util.timing import PhaseTimer

#: one model per kind of term (one focal; two focals and tangential; rational; fisheye and thin
#: prism): every variant is a compile of a few seconds
VARIANT_MODELS = ["SIMPLE_PINHOLE", "OPENCV", "FULL_OPENCV", "THIN_PRISM_FISHEYE"]


def _group_arrays(built, g=0):
    group = built.problem.residual_groups[g]
    params = tuple(built.problem.parameter_groups[name].values for name in group.groups)
    return group, params


def _widths(rt):
    return [k if rt.slot_manifold(j) is None else rt.slot_manifold(j).tangent_size for j, k in enumerate(rt.block_sizes)]


def _run(kernel, rt, params, group, fill):
    n = group.n_instances
    res = np.full((n, 2), fill)
    jac = tuple(np.full((n, 2, w), fill) for w in _widths(rt))
    kernel(params, group.index, group.data, res, jac)
    return res, jac


@pytest.mark.parametrize("layout", ["split", "joint"])
@pytest.mark.parametrize("name", VARIANT_MODELS)
def test_variants_write_only_the_needed_columns(name, layout):
    n_cameras = 2 if layout == "split" else 4
    model = synthetic_model(name, n_images=4, n_cameras=n_cameras, n_points=30, seed=5).initial
    built = build_problem(model, BundleAdjustmentOptions(refine_principal_point=True))
    group, params = _group_arrays(built)
    rt = group.residual_type
    full_res, full_jac = _run(rt.jacobian_kernel, rt, params, group, 0.0)
    k = CAMERA_MODELS[int(model.camera_model_ids[0])].n_params
    if layout == "split":  # every other intrinsic, and the point slot, not wanted
        cases = [((True,) * 7, tuple(j % 2 == 0 for j in range(k)), (False,) * 3),
                 ((False,) * 7, (False,) * k, (True,) * 3)]
        wanted = [[np.ones(6, bool), np.arange(k) % 2 == 0, np.zeros(3, bool)],
                  [np.zeros(6, bool), np.zeros(k, bool), np.ones(3, bool)]]
    else:  # the camera slot (pose and its free parameters) is all or nothing
        b = rt.block_sizes[0]
        cases = [((True,) * b, (False,) * 3), ((False,) * b, (True,) * 3)]
        wanted = [[np.ones(b - 1, bool), np.zeros(3, bool)], [np.zeros(b - 1, bool), np.ones(3, bool)]]
    for needed, columns in zip(cases, wanted):
        res, jac = _run(rt.jacobian_kernel_for(needed), rt, params, group, np.nan)
        np.testing.assert_array_equal(res, full_res)
        for j, (got, expected) in enumerate(zip(jac, full_jac)):
            np.testing.assert_array_equal(got[:, :, columns[j]], expected[:, :, columns[j]], err_msg=f"slot {j}")
            assert np.isnan(got[:, :, ~columns[j]]).all(), f"slot {j}: a column not wanted was written"


@pytest.mark.parametrize("options", [dict(), dict(refine_extra_params=False), dict(gauge="two_cams_from_world"),
                                     dict(refine_rig_from_world=False, refine_focal_length=False)])
@pytest.mark.parametrize("cameras", [2, 6])
def test_constant_coordinates_have_zero_columns(options, cameras):
    """Split and joint layouts, the principal point fixed (default), the extra parameters fixed, the
    gauge's constant translation coordinate (a manifold group: its tangent columns are written and
    then zeroed), all poses constant: every constant column is exactly zero after linearising twice."""
    model = synthetic_model("OPENCV", n_images=6, n_cameras=cameras, n_points=40, seed=2).initial
    problem = build_problem(model, BundleAdjustmentOptions(**options)).problem
    layout = build_layout(problem)
    evaluator = Evaluator(problem, layout, PhaseTimer())
    values = {name: g.values.copy() for name, g in problem.parameter_groups.items()}
    checked = 0
    for step in range(2):
        evaluator.linearize(values)
        for g, group in enumerate(problem.residual_groups):
            lay = layout.residuals[g]
            for j, name in enumerate(group.groups):
                pg = problem.parameter_groups[name]
                block = evaluator.jacobians[g][:, :, lay.slot_offset[j]:lay.slot_offset[j] + lay.slot_size[j]]
                constant = np.ones(lay.slot_size[j], bool) if pg.constant.all() else pg.constant_coordinates
                assert not block[:, :, constant].any(), f"{group.name} slot {name}: a constant column is not zero"
                checked += int(constant.sum())
        values["points"] = values["points"] + 1e-3  # a second linearisation at other values
    # the joint layout (a camera per image) keeps its fixed parameters out of the blocks: nothing to check
    held = any(g.constant.all() or g.constant_coordinates.any() for g in problem.parameter_groups.values())
    assert checked > 0 if held else checked == 0


def test_residual_kernel_and_pieces_agree():
    """The residual kernel gives the Jacobian kernel's residuals, and any piece of a group gives the
    same numbers as the whole (per-pose rotations, parallel loop), bit for bit."""
    model = synthetic_model("SIMPLE_RADIAL", n_images=8, n_cameras=3, n_points=300, seed=11).initial
    built = build_problem(model, BundleAdjustmentOptions())
    group, params = _group_arrays(built)
    rt = group.residual_type
    res, jac = _run(rt.jacobian_kernel, rt, params, group, 0.0)
    residuals = np.empty((group.n_instances, 2))
    rt.residual_kernel(params, group.index, group.data, residuals)
    np.testing.assert_array_equal(residuals, res)
    for lo in range(0, group.n_instances, 777):
        hi = min(group.n_instances, lo + 777)
        piece = type("Piece", (), dict(index=group.index[lo:hi], data=group.data[lo:hi], n_instances=hi - lo))
        piece_res, piece_jac = _run(rt.jacobian_kernel, rt, params, piece, 0.0)
        np.testing.assert_array_equal(piece_res, res[lo:hi])
        for got, expected in zip(piece_jac, jac):
            np.testing.assert_array_equal(got, expected[lo:hi])
