"""Weighting of a residual group: sigma, covariance or information -> square-root information.

Sigma (covariance) is block-diagonal, one m x m block per residual instance, given as a scalar
sigma for the whole group, a per-instance vector of sigmas, or full (n, m, m) covariance or
information matrices. It is stored as a square-root information matrix A_i with
A_i^T A_i = Sigma_i^-1 (A_i = C_i^-1 for the Cholesky factor Sigma_i = C_i C_i^T, or A_i = C_i^T
for the Cholesky factor Sigma_i^-1 = C_i C_i^T of an information matrix), so that the evaluator
whitens r'_i = A_i r_i and J'_i = A_i J_i and everything downstream is ordinary least squares.
"""
from __future__ import annotations

import numpy as np

from sparselm.util.numerics import MAX_MAGNITUDE, all_finite, first_beyond, magnitude_message


def float_array(name: str, values, ndim: int, bounded: bool = False) -> np.ndarray:
    """Convert to a C-contiguous float64 array of the given ndim, or raise a ValueError naming it (also
    for a non-finite value, and, when ``bounded``, for one beyond +-MAX_MAGNITUDE)."""
    try:
        arr = np.asarray(values)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: cannot be converted to an array ({exc})") from None
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not all_finite(arr):  # no boolean copy of the array unless there is something to report
        where = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: non-finite value {arr[tuple(where)]} at index {tuple(int(w) for w in where)}")
    where = first_beyond(arr) if bounded else None
    if where is not None:
        raise ValueError(f"{name}: {magnitude_message(arr[where])}, at index {where}")
    return arr


def sqrt_information_from(name: str, n: int, m: int, sigma=None, covariance=None, information=None):
    """Turn one of sigma / covariance / information into the stored square-root information.

    sigma        scalar or (n,) standard deviations (pixels, metres, ... in residual units).
    covariance   (m, m) or (n, m, m) SPD matrices Sigma_i.
    information  (m, m) or (n, m, m) SPD matrices Sigma_i^-1.
    Returns None, a float, an (n,) vector or an (n, m, m) array (see ResidualGroup).
    """
    given = [k for k, v in (("sigma", sigma), ("covariance", covariance), ("information", information)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"residual group {name!r}: give at most one of sigma, covariance, information (got {', '.join(given)})")
    if not given:
        return None
    if sigma is not None:
        s = np.asarray(sigma)
        if s.dtype.kind not in "fiu" or s.dtype == np.bool_:
            raise ValueError(f"residual group {name!r}: sigma: expected real numbers, got dtype {s.dtype}")
        s = s.astype(np.float64)
        if s.ndim != 0 and s.shape != (n,):
            raise ValueError(f"residual group {name!r}: sigma must be a scalar or shape ({n},), got {s.shape}")
        # sigma and 1/sigma (the weight) must both stay within +-MAX_MAGNITUDE.
        with np.errstate(divide="ignore"):
            bad = ~np.isfinite(s) | (s <= 0) | (s > MAX_MAGNITUDE) | (1.0 / s > MAX_MAGNITUDE)
        if bad.any():
            limits = f" (sigma and 1/sigma must lie within +-{MAX_MAGNITUDE:g})"
            if s.ndim == 0:
                raise ValueError(f"residual group {name!r}: sigma must be a positive finite number, got {float(s)}"
                                 + limits)
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"residual group {name!r}: sigma[{i}] = {s[i]} is not a positive finite number" + limits)
        return 1.0 / float(s) if s.ndim == 0 else np.ascontiguousarray(1.0 / s)
    kind = "covariance" if covariance is not None else "information"
    mats = float_array(f"residual group {name!r}: {kind}", covariance if covariance is not None else information,
                        np.asarray(covariance if covariance is not None else information).ndim)
    if mats.ndim == 2:
        if mats.shape != (m, m):
            raise ValueError(f"residual group {name!r}: {kind} must have shape ({m}, {m}) or ({n}, {m}, {m}), "
                             f"got {mats.shape}")
        mats = np.broadcast_to(mats, (n, m, m))
    if mats.shape != (n, m, m):
        raise ValueError(f"residual group {name!r}: {kind} must have shape ({m}, {m}) or ({n}, {m}, {m}), got {mats.shape}")
    asym = np.abs(mats - np.swapaxes(mats, 1, 2)).max(axis=(1, 2)) > 1e-10 * (1.0 + np.abs(mats).max(axis=(1, 2)))
    if asym.any():
        i = int(np.flatnonzero(asym)[0])
        raise ValueError(f"residual group {name!r}: {kind}[{i}] is not symmetric")
    eig_min = np.linalg.eigvalsh(mats)[:, 0]
    bad = eig_min <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"residual group {name!r}: {kind}[{i}] is not positive definite (smallest eigenvalue {eig_min[i]:.3g})")
    try:
        chol = np.linalg.cholesky(mats)  # mats = C C^T, C lower
        if kind == "covariance":
            # Sigma = C C^T  =>  Sigma^-1 = C^-T C^-1, so A = C^-1.
            eye = np.broadcast_to(np.eye(m), mats.shape)
            a = np.linalg.solve(chol, eye)
        else:
            # Sigma^-1 = C C^T  =>  A = C^T.
            a = np.swapaxes(chol, 1, 2)
    except np.linalg.LinAlgError:
        raise ValueError(f"residual group {name!r}: a {kind} matrix is numerically singular "
                         "(its Cholesky factorization failed)") from None
    bad = ~np.isfinite(a).all(axis=(1, 2)) | (np.abs(a).max(axis=(1, 2)) > MAX_MAGNITUDE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"residual group {name!r}: {kind}[{i}] gives square-root information entries beyond "
                         f"{MAX_MAGNITUDE:g}: weights that large overflow the cost")
    return np.ascontiguousarray(a)
