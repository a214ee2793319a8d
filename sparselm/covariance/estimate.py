"""Covariance of the estimate: blocks of Sigma_x = (J^T W J)^-1 at the solution, never a dense n x n.

Definitions. At the solution x*, with J the whitened, loss-corrected Jacobian over the free
coordinates (tangent coordinates of each block; W = Sigma^-1 is in the whitening, robust losses at
their final weights) and H = J^T J:

* H nonsingular (blocks held constant fix the gauge): Sigma_x = H^-1, exactly.
* H singular with null space N (orthonormal, n x d; gauge freedoms, see
  :mod:`sparselm.covariance.gauge`):

  - ``gauge="pinv"`` (default): the Moore-Penrose inverse H^+, the covariance on the complement of
    the gauge null space (the minimum-trace choice, invariant to how the gauge is fixed). Computed
    from any gauge-fixed inverse G (H restricted to the coordinates left after holding d
    coordinates C fixed, inverted, zero on C): G is a generalized inverse (H G H = H) because
    rank H_C = rank H, so with P = I - N N^T = H H^+ = H^+ H,

        H^+ = H^+ H G H H^+ = P G P,
        (H^+)_ab = G_ab - N_a Y_b^T - Y_a N_b^T + N_a K N_b^T,   Y = G N (d solves), K = N^T Y.

  - ``gauge="fix"``: G itself, the covariance with the d best-conditioned coordinates C held at
    their values (reported in ``Covariance.gauge``); zero rows and columns on C.
  - ``gauge=[(group, index), (group, index, coordinates), ...]``: G with those coordinates held
    (e.g. the first pose and one coordinate of a second for the scale); an error if they leave a
    direction free; more than d coordinates give the covariance conditional on all of them.

Blocks of G. With the reduced matrix M (S = U - W V^+ W^T when a group is eliminated, else H; see
:mod:`sparselm.covariance.information`) and Z = M_C^-1 from CHOLMOD's factor of M with C pinned:
kept blocks G_ab = Z_ab from the selected inverse (:mod:`sparselm.covariance.selected_inverse`),
eliminated blocks G_pp = V_p^+ + V_p^+ W_p^T Z W_p V_p^+ (:mod:`sparselm.covariance.eliminated`),
cross-covariances of chosen pairs from G e_j for the columns j of one block of the pair (solves).

Scale: ``residual_variance=True`` multiplies by s^2 = 2 cost / (m - r), m residuals, r = rank H,
the estimate of an unknown residual variance (scipy's curve_fit does the same for its pcov).
"""
from __future__ import annotations

import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

from sparselm.core.layout import Layout, build_layout
from sparselm.core.problem import Problem
from sparselm.covariance.eliminated import eliminated_blocks
from sparselm.covariance.gauge import GaugeError, fixing_coordinates, null_space, pin_coordinates
from sparselm.covariance.information import Information
from sparselm.covariance.result import Covariance, UndefinedCovarianceError
from sparselm.covariance.selected_inverse import SelectedInverse
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.lm.summary import NORMAL_ENDS
from sparselm.util.timing import PhaseTimer

GAUGE_MODES = ("pinv", "fix")
DENSE_INVERSE_MAX_COLUMNS = 2000  # a reduced matrix this small and this filled is inverted by column solves
DENSE_INVERSE_FILL = 0.3          # (see sparselm.covariance.selected_inverse)


class CovarianceError(ValueError):
    """The covariance cannot be computed as asked (the message says why)."""


def _tangent_size(problem: Problem, layout: Layout, group: str) -> int:
    ids = layout.block_id[group]
    free = ids[ids >= 0]
    if free.size:
        return int(layout.block_size[free[0]])
    g = problem.parameter_groups[group]
    return int(getattr(g, "tangent_size", g.block_size))


def _block_indices(problem: Problem, group: str, selection) -> np.ndarray:
    if group not in problem.parameter_groups:
        raise CovarianceError(f"unknown parameter group {group!r}; known: {sorted(problem.parameter_groups)}")
    n = problem.parameter_groups[group].n_blocks
    if selection is None or (isinstance(selection, str) and selection == "all"):
        return np.arange(n, dtype=np.int64)
    sel = np.atleast_1d(np.asarray(selection))
    if sel.dtype == np.bool_:
        if sel.shape != (n,):
            raise CovarianceError(f"blocks of {group!r}: a boolean mask must have shape ({n},), got {sel.shape}")
        return np.flatnonzero(sel).astype(np.int64)
    if sel.dtype.kind not in "iu" or sel.ndim != 1:
        raise CovarianceError(f"blocks of {group!r}: expected block indices, got {selection!r}")
    bad = (sel < 0) | (sel >= n)
    if bad.any():
        raise CovarianceError(f"blocks of {group!r}: index {int(sel[bad][0])} is out of range [0, {n})")
    return sel.astype(np.int64)


def parse_blocks(problem: Problem, blocks) -> Dict[str, np.ndarray]:
    """{group: block indices} from None (every block of the groups not eliminated), a group name,
    a list of names, or a dict {group: indices, mask, "all" or None}."""
    if blocks is None:
        kept = [g.name for g in problem.parameter_groups.values() if not g.eliminate]
        blocks = kept or list(problem.parameter_groups)
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, dict):
        blocks = {name: None for name in blocks}
    return {name: _block_indices(problem, name, sel) for name, sel in blocks.items()}


def _block_key(problem: Problem, key) -> Tuple[str, int]:
    try:
        group, index = key
    except (TypeError, ValueError):
        raise CovarianceError(f"a block is a (group, index) pair, got {key!r}") from None
    idx = _block_indices(problem, group, [int(index)])
    return group, int(idx[0])


class GaugeFixedInverse:
    """Applies G (the gauge-fixed inverse of H, see the module docstring) to full vectors."""

    def __init__(self, info: Information, factor: CholmodFactor, zeroed: np.ndarray):
        """zeroed: kept columns whose rows and columns of G are zero (held constant or gauge-fixed)."""
        self.info, self.factor, self.zeroed = info, factor, zeroed

    def apply(self, x: np.ndarray) -> np.ndarray:
        """G x for x (n_columns,) or (n_columns, r)."""
        cols = x.reshape(x.shape[0], -1)
        reduced = self.info.reduce(cols)
        reduced[self.zeroed] = 0.0
        kept = np.asarray(self.factor.solve(reduced)).reshape(reduced.shape)
        kept[self.zeroed] = 0.0
        return self.info.extend(kept, cols).reshape(x.shape)


def _gauge_columns(problem: Problem, layout: Layout, info: Information, gauge, null_tolerance: float,
                   ordering: str):
    """(fixed kept columns, null basis over the kept columns, mode)."""
    if isinstance(gauge, str):
        if gauge not in GAUGE_MODES:
            raise CovarianceError(f"unknown gauge {gauge!r}; choose one of {', '.join(GAUGE_MODES)} or a list of "
                                  "(group, index[, coordinates]) to hold fixed")
        basis = null_space(info.matrix, null_tolerance, ordering)
        allowed = ~info.held_columns[:info.n_kept_columns]
        for b in info.undefined:
            if b < info.n_kept_blocks:
                c0 = layout.block_col[b]
                allowed[c0:c0 + layout.block_size[b]] = False
        return fixing_coordinates(basis, allowed), basis, gauge
    columns: List[int] = []
    for item in gauge:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise CovarianceError(f"gauge: expected (group, index) or (group, index, coordinates), got {item!r}")
        group, index = _block_key(problem, item[:2])
        b = int(layout.block_id[group][index])
        if b < 0:
            continue  # already constant
        if b >= info.n_kept_blocks:
            raise CovarianceError(f"gauge: block {index} of {group!r} is eliminated; hold it with set_constant instead")
        k = int(layout.block_size[b])
        coords = np.arange(k) if len(item) == 2 else np.atleast_1d(np.asarray(item[2], dtype=np.int64))
        if ((coords < 0) | (coords >= k)).any():
            raise CovarianceError(f"gauge: coordinates {coords.tolist()} of {group!r} out of range [0, {k})")
        columns.extend((int(layout.block_col[b]) + coords).tolist())
    fixed = np.unique(np.asarray(columns, dtype=np.int64))
    pinned, _ = pin_coordinates(info.matrix, fixed)
    remaining = null_space(pinned, null_tolerance, ordering)
    if remaining.shape[1]:
        raise GaugeError(f"gauge: holding the given coordinates leaves {remaining.shape[1]} direction(s) of the "
                         "parameters free (the information matrix is still singular); hold more coordinates")
    return fixed, np.zeros((info.n_kept_columns, 0)), "explicit"


def _owners(layout: Layout):
    """(group name, block index) of every free block id."""
    group_of = np.empty(layout.n_blocks, dtype=object)
    index_of = np.empty(layout.n_blocks, dtype=np.int64)
    for name, ids in layout.block_id.items():
        free = np.flatnonzero(ids >= 0)
        group_of[ids[free]] = name
        index_of[ids[free]] = free
    return group_of, index_of


def covariance(problem: Problem, summary=None, blocks=None, pairs: Sequence = (), gauge="pinv",
               residual_variance: bool = False, rank_tolerance: float = 1e-10, null_tolerance: float = 1e-10,
               ordering: str = "amd") -> Covariance:
    """Covariance blocks of the estimate at the problem's current values (after a solve).

    problem            the solved Problem (its groups hold the solution).
    summary            the solve's Summary or None; a solve that did not end normally is noted in
                       ``Covariance.warning`` (the matrices describe that point all the same).
    blocks             which diagonal blocks: None (every block of the groups not eliminated: BA's
                       cameras), a group name, a list of names, or {group: indices | mask | None}.
    pairs              ((group, index), (group, index)) pairs whose cross-covariance is wanted.
    gauge              "pinv" (Moore-Penrose, default), "fix", or coordinates to hold; see the
                       module docstring for the formulas.
    residual_variance  scale by 2 cost / (m - rank H) (for problems without a known Sigma).
    rank_tolerance     relative eigenvalue below which a block's own information is rank-deficient.
    null_tolerance     eigenvalue (of H scaled to unit diagonal) below which a direction is a gauge.
    Raises CovarianceError / GaugeError for requests that cannot be met, UndefinedCovarianceError
    when the single block asked for has no defined covariance.
    """
    start = time.perf_counter()
    timer = PhaseTimer()
    layout = build_layout(problem)
    requests = parse_blocks(problem, blocks)
    pair_keys = [(_block_key(problem, a), _block_key(problem, b)) for a, b in pairs]
    info = Information(problem, layout, timer, rank_tolerance)
    with timer.phase("covariance_gauge"):
        fixed, basis, mode = _gauge_columns(problem, layout, info, gauge, null_tolerance, ordering)
    inverse, selected = _gauge_fixed_inverse(info, fixed, ordering, timer)
    with timer.phase("covariance_gauge"):
        correction = _pinv_correction(info, inverse, basis if mode == "pinv" else basis[:, :0])
    with timer.phase("covariance_blocks"):
        matrices, undefined = {}, {}
        for group, idx in requests.items():
            matrices[group], undefined[group] = _group_blocks(problem, layout, info, selected, inverse.zeroed,
                                                              correction, group, idx)
    with timer.phase("covariance_pairs"):
        cross = _pairs(problem, layout, info, inverse, correction, pair_keys)
    rank = int((~info.held_columns).sum()) - basis.shape[1] - info.local_null_dimension
    scale = _residual_variance(info, rank) if residual_variance else 1.0
    for m in list(matrices.values()) + list(cross.values()):
        m *= scale
    _refuse_single_undefined(requests, undefined, pair_keys)
    warning = None
    if summary is not None and getattr(summary, "termination", None) not in NORMAL_ENDS:
        warning = (f"the solve ended with {summary.termination!r}: the covariance describes that point, which is "
                   "not a minimum")
    group_of, index_of = _owners(layout)
    owner = np.searchsorted(layout.block_col, fixed, side="right") - 1
    fixed_named = [(str(group_of[b]), int(index_of[b]), int(c - layout.block_col[b])) for c, b in zip(fixed, owner)]
    gauge_info = {"mode": mode, "null_space_dimension": int(basis.shape[1]), "fixed_coordinates": fixed_named,
                  "rank": rank}
    return Covariance(matrices, requests, undefined, cross, gauge_info, scale, time.perf_counter() - start,
                      dict(timer.seconds), warning)


def _gauge_fixed_inverse(info: Information, fixed: np.ndarray, ordering: str, timer: PhaseTimer):
    """Factor M with the ``fixed`` columns pinned; (G as an operator, Z = M_C^-1 on the factor's pattern)."""
    with timer.phase("covariance_factorization"):
        lower, pinned = pin_coordinates(info.matrix, fixed)
        factor = CholmodFactor(lower, ordering)
        if not factor.factorize(lower):
            raise CovarianceError("the information matrix with the gauge fixed is not positive definite: a rank "
                                  "deficiency beyond the gauge (try a larger null_tolerance)")
    with timer.phase("covariance_selected_inversion"):
        lower_factor, permutation = factor.lower_factor()
        n = lower_factor.shape[0]
        if n <= DENSE_INVERSE_MAX_COLUMNS and lower_factor.nnz >= DENSE_INVERSE_FILL * n * (n + 1) / 2:
            selected = SelectedInverse.from_dense(np.asarray(factor.solve(np.eye(n))))
        else:
            selected = SelectedInverse(lower_factor, permutation)
    return GaugeFixedInverse(info, factor, pinned | info.held_columns[:info.n_kept_columns]), selected


def _pinv_correction(info: Information, inverse: GaugeFixedInverse, basis: np.ndarray):
    """(N, Y = G N, K = N^T Y) for H^+ = P G P, N the null basis lifted to all columns (d may be 0)."""
    n = info.layout.n_columns
    if basis.shape[1] == 0:
        return np.zeros((n, 0)), np.zeros((n, 0)), np.zeros((0, 0))
    null_full, _ = np.linalg.qr(info.extend(basis, np.zeros((n, basis.shape[1]))))
    g_null = inverse.apply(null_full)
    return null_full, g_null, null_full.T @ g_null


def _residual_variance(info: Information, rank: int) -> float:
    """s^2 = 2 cost / (m - rank)."""
    dof = info.n_residuals - rank
    if dof <= 0:
        raise CovarianceError(f"residual_variance needs more residuals than parameters: m = {info.n_residuals}, "
                              f"rank = {rank}")
    return 2.0 * info.cost / dof


def _refuse_single_undefined(requests, undefined, pair_keys) -> None:
    """Raise UndefinedCovarianceError when exactly one block was asked for and it is undefined."""
    if pair_keys or sum(int(i.size) for i in requests.values()) != 1:
        return
    group = next(g for g, i in requests.items() if i.size)
    index = int(requests[group][0])
    why = undefined[group].get(index)
    if why is not None:
        raise UndefinedCovarianceError(f"block {index} of {group!r}: covariance not defined: {why}")


def _group_blocks(problem, layout, info, selected, zeroed, correction, group, idx):
    """(n, k, k) covariances of blocks ``idx`` of ``group`` and {index: reason} of undefined ones."""
    k = _tangent_size(problem, layout, group)
    ids = layout.block_id[group][idx]
    out = np.zeros((idx.size, k, k))
    undefined: Dict[int, str] = {}
    free = np.flatnonzero(ids >= 0)
    if free.size == 0:
        return out, undefined
    b = ids[free]
    cols = layout.block_col[b][:, None] + np.arange(k)[None]
    kept = b < info.n_kept_blocks
    if kept.all():
        mask = np.where(zeroed[cols], -1, cols)
        g = selected.gather(mask, mask)
    elif not kept.any():
        st = info.schur
        w = info.w
        g = np.zeros((b.size, k, k))
        eliminated_blocks(b - info.n_kept_blocks, st.cells_of_e, st.cell_f, layout.block_col, layout.block_size, w,
                          info.v_pinv, selected.colptr, selected.rowind, selected.values, selected.inverse_perm,
                          zeroed, np.zeros((max(st.max_cells, 1), w.shape[1], w.shape[2])), g)
    else:
        raise CovarianceError(f"group {group!r} mixes eliminated and kept blocks")  # cannot happen: one group
    null_full, g_null, k_null = correction
    if null_full.shape[1]:
        nb, yb = null_full[cols], g_null[cols]
        g = g - nb @ np.swapaxes(yb, 1, 2) - yb @ np.swapaxes(nb, 1, 2) + nb @ k_null @ np.swapaxes(nb, 1, 2)
    held = info.held_columns[cols]
    g = g * ~held[:, :, None] * ~held[:, None, :]
    for j, (row, block) in enumerate(zip(free, b)):
        why = info.undefined.get(int(block))
        if why is not None:
            g[j] = np.nan
            undefined[int(idx[row])] = why
    out[free] = g
    return out, undefined


def _pairs(problem, layout, info, inverse, correction, pair_keys):
    """Cross-covariances of the chosen pairs, from G applied to the columns of each pair's second block."""
    null_full, g_null, k_null = correction
    out = {}
    columns_cache: Dict[int, np.ndarray] = {}
    for a, b in pair_keys:
        ida, idb = int(layout.block_id[a[0]][a[1]]), int(layout.block_id[b[0]][b[1]])
        ka, kb = _tangent_size(problem, layout, a[0]), _tangent_size(problem, layout, b[0])
        if ida < 0 or idb < 0:
            out[(a, b)] = np.zeros((ka, kb))
            continue
        ca = layout.block_col[ida] + np.arange(ka)
        cb = layout.block_col[idb] + np.arange(kb)
        if idb not in columns_cache:
            unit = np.zeros((layout.n_columns, kb))
            unit[cb, np.arange(kb)] = 1.0
            columns_cache[idb] = inverse.apply(unit)
        g = columns_cache[idb][ca]
        if null_full.shape[1]:
            na, nb, ya, yb = null_full[ca], null_full[cb], g_null[ca], g_null[cb]
            g = g - na @ yb.T - ya @ nb.T + na @ k_null @ nb.T
        g = g * ~info.held_columns[ca][:, None] * ~info.held_columns[cb][None, :]
        if ida in info.undefined or idb in info.undefined:
            g = np.full((ka, kb), np.nan)
        out[(a, b)] = g
    return out

