r"""Geometry helpers for residual functions: rotations written with :mod:`sparselm.math`.

They work traced (inside ``@sparselm.residual`` functions and ``precompute`` functions) and on plain
numbers. Matrices are flat row-major sequences of 9 numbers.

Angle-axis (Rodrigues) rotation: with ``theta = |w|``,

.. math::

    R(w) = \cos\theta\, I + a [w]_\times + b\, w w^T, \qquad a = \sin\theta / \theta,
    \qquad b = (1 - \cos\theta) / \theta^2 = 2 \sin^2(\theta/2) / \theta^2 .

``a`` and ``b`` have a removable singularity at ``theta = 0`` (and their closed forms lose accuracy
near it); for ``theta^2 < 1e-2`` they are evaluated by their Taylor series through ``theta^8``
(truncation error below 1e-17 relative), which are exact at 0 (``R = I``) and whose derivatives are
exact there too. ``sm.where`` makes the switch: the derivative is that of the branch taken.
"""
from __future__ import annotations

from sparselm import math as sm

__all__ = ["angle_axis_to_matrix", "matrix_times", "TAYLOR_THETA2"]

#: below this theta^2 the Rodrigues coefficients are evaluated by their Taylor series.
TAYLOR_THETA2 = 1e-2


def angle_axis_to_matrix(w):
    """R(w) as 9 numbers, row-major, for an angle-axis vector w (3 numbers, radians)."""
    w0, w1, w2 = w[0], w[1], w[2]
    t2 = w0 * w0 + w1 * w1 + w2 * w2
    t4 = t2 * t2
    t6 = t4 * t2
    t8 = t4 * t4
    small = t2 < TAYLOR_THETA2
    theta = sm.sqrt(t2)
    b_series = 0.5 - t2 / 24.0 + t4 / 720.0 - t6 / 40320.0 + t8 / 3628800.0
    a = sm.where(small, 1.0 - t2 / 6.0 + t4 / 120.0 - t6 / 5040.0 + t8 / 362880.0, sm.sin(theta) / theta)
    half_sin = sm.sin(0.5 * theta)
    b = sm.where(small, b_series, 2.0 * half_sin * half_sin / t2)
    cs = sm.where(small, 1.0 - t2 * b_series, sm.cos(theta))
    return [cs + b * w0 * w0, -a * w2 + b * w0 * w1, a * w1 + b * w0 * w2,
            a * w2 + b * w0 * w1, cs + b * w1 * w1, -a * w0 + b * w1 * w2,
            -a * w1 + b * w0 * w2, a * w0 + b * w1 * w2, cs + b * w2 * w2]


def matrix_times(m, x):
    """M x for a row-major 3x3 matrix m (9 numbers) and a 3-vector x."""
    return [m[3 * r] * x[0] + m[3 * r + 1] * x[1] + m[3 * r + 2] * x[2] for r in range(3)]
