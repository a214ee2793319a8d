"""The registry: names resolve, sizes are checked, a user's manifold can be registered."""
import numpy as np
import pytest

from sparselm.manifolds import (SE3, SO3_QUATERNION, Manifold, check_manifold, euclidean, register_manifold,
                                registered_manifolds, resolve_manifold)
from sparselm.manifolds.euclidean import _minus, _plus, _plus_jacobian


def test_names_resolve_to_the_registered_objects():
    assert resolve_manifold("so3_quaternion", 4) is SO3_QUATERNION
    assert resolve_manifold("se3", 7) is SE3
    assert resolve_manifold(None, 5) is euclidean(5)
    assert {"so3_quaternion", "so3_rotation_vector", "se3", "se2", "sphere2"} <= set(registered_manifolds())


def test_unknown_names_and_wrong_sizes_are_errors():
    with pytest.raises(ValueError, match="unknown manifold 'so4'"):
        resolve_manifold("so4", 4)
    with pytest.raises(ValueError, match="size 4, the values have 3"):
        resolve_manifold("so3_quaternion", 3)
    with pytest.raises(ValueError, match="tangent_size"):
        Manifold("bad", 2, 3, _plus, _minus, _plus_jacobian)


def test_a_user_manifold_registers_once_and_checks():
    mine = Manifold("test_vector_2", 2, 2, _plus, _minus, _plus_jacobian)
    assert register_manifold(mine) is mine
    assert register_manifold(mine) is mine
    assert resolve_manifold("test_vector_2", 2) is mine
    with pytest.raises(ValueError, match="already registered"):
        register_manifold(Manifold("test_vector_2", 2, 2, _plus, _minus, _plus_jacobian))
    assert check_manifold(mine, np.zeros((3, 2))).ok
