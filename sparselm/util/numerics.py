"""Overflow-safe norms and the range of magnitudes sparselm computes with.

Levenberg-Marquardt decides termination and step acceptance from squared quantities: the cost
1/2 sum |r_i|^2, J^T J, and the norms |x| and |step| of the parameter-tolerance test. A norm computed
as sqrt(sum v^2) overflows as soon as one |v| exceeds sqrt(DBL_MAX) ~ 1.3e154, and an infinite |x|
makes that test pass for any step (``|step| <= parameter_tolerance * inf``): a false "converged".

Norms are therefore computed scaled, |v| = m sqrt(sum (v / m)^2) with m = max |v_i|, which is exact
to rounding for any finite v (entries below m * 1e-308 underflow harmlessly), and combined across
groups with :func:`math.hypot`, which is scaled too.

Input magnitudes are bounded by ``MAX_MAGNITUDE = 1e150``: a square is then at most 1e300, and a sum
of up to 1e8 such squares stays below DBL_MAX ~ 1.8e308. Values beyond it are refused where they enter
(problem groups, data, weightings, file readers) with a message naming them, rather than overflowing
half-way through a solve. Tiny values (down to denormals) and -0.0 are accepted: they underflow to
zero gracefully.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple

import numba
import numpy as np

#: largest magnitude accepted for a parameter value, datum or weight (see the module docstring).
MAX_MAGNITUDE = 1e150


def stable_norm(values: np.ndarray) -> float:
    """Euclidean norm of ``values`` (any shape) without intermediate overflow; inf only when the norm
    itself exceeds DBL_MAX, NaN when an entry is NaN."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0
    largest = float(np.max(np.abs(v)))  # NaN if any entry is NaN
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    return largest * float(np.sqrt(np.sum(np.square(v / largest))))


#: below this many entries a serial pass beats waking numba's worker threads (measured on numba's
#: workqueue layer, where a parallel region cost 0.1-0.2 ms to launch on a 2-core virtual machine; on
#: TBB, sparselm's layer now, it costs ~0.02 ms, and the threshold has not been measured again)
PARALLEL_MIN_ENTRIES = 1 << 20


def all_finite(values: np.ndarray) -> bool:
    """True when no entry of ``values`` (float64, any shape) is NaN or infinite. Unlike
    ``np.isfinite(values).all()`` it allocates nothing for a contiguous array (a Jacobian is
    192 bytes per BA observation; a boolean copy of it would be 24 more at the memory peak)."""
    flat = np.ravel(values)  # a view when contiguous
    if flat.size < PARALLEL_MIN_ENTRIES:
        return _count_non_finite(flat, 0, flat.size) == 0
    return _count_non_finite_in_chunks(flat, numba.get_num_threads()) == 0


@numba.njit(inline="always")
def chunk_range(ch, n_chunks, n):
    """Indices [start, stop) of chunk ``ch`` when 0..n-1 is cut into ``n_chunks`` contiguous chunks.

    Parallel sums cut their range this way, one chunk per prange iteration, and add the chunks'
    partial sums in chunk order afterwards: a float sum across a ``prange`` itself would depend on
    which thread ran which iterations (TBB assigns them dynamically)."""
    return ch * n // n_chunks, (ch + 1) * n // n_chunks


@numba.njit(inline="always")
def sum_in_order(partial):
    """partial[0] + partial[1] + ..., left to right."""
    total = 0.0
    for ch in range(partial.shape[0]):
        total += partial[ch]
    return total


@numba.njit(cache=True)
def _count_non_finite(flat, start, stop):
    count = 0
    for i in range(start, stop):
        if not math.isfinite(flat[i]):
            count += 1
    return count


@numba.njit(parallel=True, cache=True)
def _count_non_finite_in_chunks(flat, n_chunks):
    n = flat.shape[0]
    count = 0
    for ch in numba.prange(n_chunks):
        count += _count_non_finite(flat, ch * n // n_chunks, (ch + 1) * n // n_chunks)
    return count


def combined_norm(norms: Iterable[float]) -> float:
    """sqrt(sum n_k^2) of partial norms, without overflow."""
    return math.hypot(*norms)


def first_beyond(values: np.ndarray, limit: float = MAX_MAGNITUDE) -> Optional[Tuple[int, ...]]:
    """The index of the first entry with |value| > limit, or None."""
    if values.size == 0 or (values.max() <= limit and values.min() >= -limit):  # no temporary arrays
        return None
    beyond = np.abs(values) > limit
    if not beyond.any():
        return None
    return tuple(int(w) for w in np.argwhere(beyond)[0])


def magnitude_message(value: float) -> str:
    """Why ``value`` is refused, for error messages."""
    return (f"value {value:.6g} is beyond +-{MAX_MAGNITUDE:g}, the largest magnitude sparselm accepts "
            "(its square would leave the float64 range)")


def unit_rows(vectors: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(rows scaled to unit length, their norms), without overflow or underflow: each row is divided by
    its largest magnitude before its norm is taken, so (0, 0, 1e200, 1e200) becomes (0, 0, 0.707, 0.707)
    instead of zeros. Rows of norm 0 stay 0 (norm 0); a row holding NaN has norm NaN."""
    v = np.asarray(vectors, dtype=np.float64)
    largest = np.max(np.abs(v), axis=1, keepdims=True) if v.shape[1] else np.zeros((v.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(largest > 0.0, v / np.where(largest > 0.0, largest, 1.0), 0.0)
        lengths = np.linalg.norm(scaled, axis=1, keepdims=True)
        unit = np.where(lengths > 0.0, scaled / np.where(lengths > 0.0, lengths, 1.0), 0.0)
    return unit, (largest * lengths)[:, 0]
