"""COLMAP's unit quaternions (qw, qx, qy, qz; Hamilton) and rotation vectors, converted both ways.

A rotation vector ``w = theta * axis`` and the quaternion ``q = (cos(theta/2), sin(theta/2) axis)``
describe the same rotation ``R``; ``q`` and ``-q`` are the same rotation, so a rotation vector is taken
from the quaternion with ``qw >= 0`` (``|w| <= pi``), and a quaternion's sign can be chosen to agree
with a reference. Near ``theta = 0`` the series ``w = 2 v / qw`` and ``sin(theta/2)/theta = 1/2 -
theta^2/48`` avoid 0/0.
"""
from __future__ import annotations

import numpy as np

from sparselm.util.numerics import unit_rows

__all__ = ["rotvec_from_quaternion", "quaternion_from_rotvec"]

_SMALL = 1e-8


def rotvec_from_quaternion(q) -> np.ndarray:
    """Rotation vectors (n, 3) of quaternions (n, 4), which are normalised first; ``|w| <= pi``."""
    q = unit_rows(np.asarray(q, dtype=np.float64))[0]  # overflow-safe: 1e200 entries are a valid direction
    q = np.where(q[:, :1] < 0, -q, q)
    s = np.linalg.norm(q[:, 1:], axis=1)
    theta = 2.0 * np.arctan2(s, q[:, 0])
    small = s < _SMALL
    factor = np.where(small, 2.0 / np.where(small, q[:, 0], 1.0), theta / np.where(small, 1.0, s))
    return q[:, 1:] * factor[:, None]


def quaternion_from_rotvec(w, like=None) -> np.ndarray:
    """Unit quaternions (n, 4) of rotation vectors (n, 3); with ``like`` (n, 4) each sign is chosen so
    that the result points into the same half-space as ``like``'s row."""
    w = np.asarray(w, dtype=np.float64)
    theta = np.linalg.norm(w, axis=1)
    half = 0.5 * theta
    small = theta < _SMALL
    k = np.where(small, 0.5 - theta ** 2 / 48.0, np.sin(half) / np.where(small, 1.0, theta))
    q = np.concatenate([np.cos(half)[:, None], w * k[:, None]], axis=1)
    if like is not None:
        q = np.where((np.sum(q * np.asarray(like), axis=1) < 0)[:, None], -q, q)
    return q
