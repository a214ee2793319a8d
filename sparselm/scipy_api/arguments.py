"""Checks of :func:`sparselm.least_squares`'s arguments, in scipy's order and with scipy's messages.

Where sparselm refuses something scipy accepts, the message says what to use instead.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import Bounds

from sparselm.scipy_api.jacobian import EPS
from sparselm.util.numerics import MAX_MAGNITUDE
SCIPY_LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
METHODS = ("trf", "lm")
DAMPINGS = ("marquardt", "levenberg", "gauss_newton")

DOGBOX_REFUSED = ("`method`='dogbox' is not supported: use method='trf' (the default), which in sparselm is a "
                  "Levenberg-Marquardt with bounds (projected steps, an active set) on the same problems")


def check_method(method, tr_solver, tr_options) -> None:
    if method == "dogbox":
        raise ValueError(DOGBOX_REFUSED)
    if method not in METHODS:
        raise ValueError("`method` must be 'trf', 'dogbox' or 'lm'.")
    if tr_solver not in (None, "exact", "lsmr"):
        raise ValueError("`tr_solver` must be None, 'exact' or 'lsmr'.")



def check_loss(loss, method) -> None:
    if not (loss in SCIPY_LOSSES or callable(loss)):
        raise ValueError(f"`loss` must be one of {SCIPY_LOSSES} or a callable.")
    if method == "lm" and loss != "linear":
        raise ValueError("method='lm' supports only 'linear' loss function.")


def prepare_bounds(bounds, x0: np.ndarray, method: str):
    """(lb, ub) as float arrays of x0's shape; scipy's checks and messages (x0 outside: ValueError)."""
    if isinstance(bounds, Bounds):
        pair = (bounds.lb, bounds.ub)
    else:
        try:
            pair = tuple(bounds)
        except TypeError:
            raise ValueError("`bounds` must contain 2 elements.") from None
        if len(pair) != 2:
            raise ValueError("`bounds` must contain 2 elements.")
    lb, ub = (np.asarray(b, dtype=float) for b in pair)
    if lb.ndim == 0:
        lb = np.resize(lb, x0.shape)
    if ub.ndim == 0:
        ub = np.resize(ub, x0.shape)
    if method == "lm" and not np.all((lb == -np.inf) & (ub == np.inf)):
        raise ValueError("Method 'lm' doesn't support bounds.")
    if lb.shape != x0.shape or ub.shape != x0.shape:
        raise ValueError("Inconsistent shapes between bounds and `x0`.")
    if np.any(lb >= ub):
        raise ValueError("Each lower bound must be strictly less than each upper bound.")
    if not np.all((x0 >= lb) & (x0 <= ub)):
        raise ValueError("Initial guess is outside of provided bounds")
    return lb, ub


def check_tolerances(ftol, xtol, gtol, method):
    """scipy's check_tolerance: None is 0; below EPS warns; 'lm' needs all three above EPS."""
    def check(tol, name):
        if tol is None:
            return 0.0
        try:
            tol = float(tol)
        except (TypeError, ValueError):
            raise ValueError(f"`{name}` must be a non-negative number, got {tol!r}") from None
        if not tol >= 0:
            raise ValueError(f"`{name}` must be non-negative, got {tol}")
        if tol < EPS:
            warnings.warn(f"Setting `{name}` below the machine epsilon ({EPS:.2e}) effectively disables the "
                          "corresponding termination condition.", stacklevel=4)
        return tol

    ftol, xtol, gtol = check(ftol, "ftol"), check(xtol, "xtol"), check(gtol, "gtol")
    if method == "lm" and (ftol < EPS or xtol < EPS or gtol < EPS):
        raise ValueError(f"All tolerances must be higher than machine epsilon ({EPS:.2e}) for method 'lm'.")
    if ftol < EPS and xtol < EPS and gtol < EPS:
        raise ValueError(f"At least one of the tolerances must be higher than machine epsilon ({EPS:.2e}).")
    return ftol, xtol, gtol


def check_f_scale(f_scale) -> float:
    """``f_scale`` as a float: positive, and its square neither overflowing nor underflowing."""
    try:
        value = float(f_scale)
    except (TypeError, ValueError):
        raise ValueError(f"`f_scale` must be a positive number, got {f_scale!r}") from None
    if not (1.0 / MAX_MAGNITUDE <= value <= MAX_MAGNITUDE):
        raise ValueError(f"`f_scale` must be positive, between {1.0 / MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g}; "
                         f"got {value}")
    return value


def check_x_scale(x_scale, n: int, method: str):
    """scipy's x_scale: None is 'jac' for 'lm' and 1 for 'trf'; else 'jac' or positive numbers (n,)."""
    if x_scale is None:
        x_scale = "jac" if method == "lm" else 1.0
    if isinstance(x_scale, str):
        if x_scale != "jac":
            raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
        return x_scale
    try:
        scale = np.asarray(x_scale, dtype=float)
        valid = bool(np.all(np.isfinite(scale)) and np.all(scale > 0))
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise ValueError("`x_scale` must be 'jac' or array_like with positive numbers.")
    if scale.ndim == 0:
        scale = np.full(n, float(scale))
    if scale.shape != (n,):
        raise ValueError("Inconsistent shapes between `x_scale` and `x0`.")
    return scale


def resolve_damping(x_scale_given, damping, n: int):
    """(damping of the strategy, fixed damping diagonal or None) from ``x_scale`` and ``damping``.

    ``x_scale`` None (the default) keeps Marquardt damping, lambda diag(J^T J), whatever the
    method (the scale of the trust radius is scipy's: see :func:`check_x_scale`); 'jac' is the
    same; an array s means the variables x / s, lambda diag(1 / s^2).
    """
    if damping is not None and damping not in DAMPINGS:
        raise ValueError(f"`damping`: unknown {damping!r}; choose one of {', '.join(DAMPINGS)}")
    if x_scale_given is None:
        d = damping or "marquardt"
        return d, (np.ones(n) if d == "levenberg" else None)
    if isinstance(x_scale_given, str):
        if damping not in (None, "marquardt"):
            raise ValueError(f"`x_scale`='jac' is Marquardt scaling; it contradicts damping={damping!r}")
        return "marquardt", None
    if damping not in (None, "levenberg"):
        raise ValueError(f"an array `x_scale` means damping lambda * diag(1/x_scale^2); it contradicts "
                         f"damping={damping!r} (give one of the two)")
    scale = np.broadcast_to(np.asarray(x_scale_given, dtype=float), (n,))
    return "marquardt", 1.0 / scale ** 2
