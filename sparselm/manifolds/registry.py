"""The registry of manifolds: name -> Manifold (the provided ones registered on import), and the
resolution of a group's ``manifold=`` argument."""
from __future__ import annotations

from typing import Dict, Union

from sparselm.manifolds.base import Manifold
from sparselm.manifolds.euclidean import euclidean
from sparselm.manifolds.poses import SE2, SE3
from sparselm.manifolds.rotations import SO3_QUATERNION, SO3_ROTATION_VECTOR
from sparselm.manifolds.sphere import SPHERE2

_REGISTRY: Dict[str, Manifold] = {}


def register_manifold(manifold: Manifold) -> Manifold:
    """Make ``manifold`` available by name (``add_parameter_group(..., manifold="name")``)."""
    if not isinstance(manifold, Manifold):
        raise TypeError(f"register_manifold expects a Manifold, got {type(manifold).__name__}")
    known = _REGISTRY.get(manifold.name)
    if known is not None and known is not manifold:
        raise ValueError(f"a different manifold named {manifold.name!r} is already registered")
    _REGISTRY[manifold.name] = manifold
    return manifold


def registered_manifolds() -> Dict[str, Manifold]:
    """Name -> manifold of everything registered (a copy)."""
    return dict(_REGISTRY)


def resolve_manifold(manifold: Union[None, str, Manifold], block_size: int) -> Manifold:
    """The manifold for a group of blocks of ``block_size``: None means Euclidean of that size, a
    string is looked up in the registry, a Manifold is taken as is. Raises ValueError when unknown
    or when its ambient size differs from ``block_size``."""
    if manifold is None:
        return euclidean(block_size)
    if isinstance(manifold, str):
        try:
            manifold = _REGISTRY[manifold]
        except KeyError:
            raise ValueError(f"unknown manifold {manifold!r}; registered: {sorted(_REGISTRY)}") from None
    if not isinstance(manifold, Manifold):
        raise ValueError(f"manifold must be None, a registered name or a Manifold, got {type(manifold).__name__}")
    if manifold.ambient_size != block_size:
        raise ValueError(f"manifold {manifold.name!r} has blocks of size {manifold.ambient_size}, the values have "
                         f"{block_size} columns")
    return manifold


for provided in (SO3_QUATERNION, SO3_ROTATION_VECTOR, SE3, SE2, SPHERE2):
    register_manifold(provided)
