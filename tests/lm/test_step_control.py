"""Step control of the LM loop: trust radius in scaled variables, undamped steps, the box."""
import numpy as np

from sparselm.lm.step_control import PIN_FACTOR, Box, ScaledStepControl


def control(x0, scale=None, box=None):
    sc = ScaledStepControl(lambda values: values["x"], np.asarray(x0, float), scale, box)
    sc.linearized(np.ones(len(x0)))
    return sc


def test_box_active_set_coleman_li_and_mask():
    box = Box(np.array([0.0, 0.0, -np.inf]), np.array([1.0, np.inf, 2.0]))
    x = np.array([0.0, 0.5, 2.0])
    g = np.array([1.0, -1.0, -3.0])
    np.testing.assert_array_equal(box.active(x, g), [True, False, True])
    np.testing.assert_array_equal(box.coleman_li(x, g), [0.0, 1.0, 0.0])  # v = x - lb, 1 (ub inf), ub - x
    np.testing.assert_array_equal(box.active_mask(np.array([1e-10, 0.5, 2.0 - 1e-10]), rtol=1e-8), [-1, 0, 1])
    np.testing.assert_array_equal(box.active_mask(np.array([1e-10, 0.5, 2.0]), rtol=0.0), [0, 0, 1])


def test_radius_starts_at_scaled_x0_and_caps_the_step():
    sc = control([3.0, 4.0])
    assert sc.radius == 5.0
    values = {"x": np.array([3.0, 4.0])}
    step = sc.shape(values, np.array([30.0, 40.0]))
    np.testing.assert_allclose(step, [3.0, 4.0])
    assert sc.excess(np.array([30.0, 40.0])) == 10.0
    sc.judged(0.9, True)  # at the radius with a good ratio: doubles
    assert sc.radius == 10.0
    sc.judged(0.1, False)  # poor ratio: a quarter of the step
    assert sc.radius == 0.25 * 5.0
    assert control([0.0, 0.0]).radius == 1.0
    scaled = control([3.0, 4.0], scale=np.array([3.0, 4.0]))
    assert scaled.radius == np.sqrt(2.0)


def test_exact_model_makes_the_next_trial_undamped():
    sc = control([1.0])
    values = {"x": np.array([1.0])}
    sc.shape(values, np.array([0.1]))
    sc.judged(1.0 + 1e-6, True)
    np.testing.assert_array_equal(sc.damping(values, np.array([1.0]), np.array([5.0])), [0.0])
    sc.invalid()
    np.testing.assert_array_equal(sc.damping(values, np.array([1.0]), np.array([5.0])), [5.0])


def test_box_pins_active_coordinates_and_projects():
    box = Box(np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    sc = control([0.0, 0.5], box=box)
    values = {"x": np.array([0.0, 0.5])}
    d = sc.damping(values, np.array([2.0, -1.0]), np.array([1.0, 3.0]))
    assert d[0] == PIN_FACTOR * 4.0 and d[1] == 3.0
    step = sc.shape(values, np.array([-0.3, 0.8]))
    np.testing.assert_allclose(step, [0.0, 0.5])  # pinned, then clipped at ub
    assert sc.optimality(values, np.array([2.0, 0.0])) == 0.0  # KKT: outward gradient at the bound
