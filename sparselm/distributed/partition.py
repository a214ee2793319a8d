"""Splitting a Schur-eliminable problem over K ranks.

The kept blocks (BA: cameras) are replicated on every rank; the eliminated blocks (BA: points) and
the residual blocks are partitioned:

1. **Kept blocks over ranks.** The co-visibility graph has one vertex per kept block of the
   eliminated group's residual group(s) (BA: per camera, weighted by its observation count) and an
   edge between two kept blocks that share an eliminated block (weight: how many they share).
   METIS (``pymetis``, part of the ``mpi`` extra) cuts it into K parts of balanced vertex weight with
   a small edge cut; without pymetis, kept blocks are cut in id order into K runs of equal
   observation count (deterministic; good for sequences, poor for unordered collections).
2. **Eliminated blocks follow their kept blocks.** Each eliminated block, with all its residual
   blocks, lives on the rank that owns most of the kept blocks it is observed by (ties: the lowest
   rank). A residual block touching no eliminated block goes to rank 0.

Only the kept-block vectors cross ranks afterwards (see :mod:`sparselm.distributed.solver`). The
partition is computed once, on rank 0, from the index arrays alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from sparselm.core.covisibility import covisibility
from sparselm.core.problem import ParameterGroup, Problem, ResidualGroup


class NotDistributable(ValueError):
    """The problem cannot be split: no single eliminated group, or more ranks than eliminated blocks."""


@dataclass
class Partition:
    """part[r]: which blocks of the eliminated group and which instances of each residual group rank r holds."""

    method: str                            # 'metis' or 'contiguous'
    kept_part: np.ndarray                  # (n_kept_blocks of the main kept group,) rank of each
    eliminated_group: str
    eliminated_owner: np.ndarray           # (n_eliminated_blocks,) rank of each
    instance_owner: List[np.ndarray]       # per residual group: (n,) rank of each instance

    def blocks_of(self, rank: int) -> np.ndarray:
        """Global ids of the eliminated blocks on ``rank``, ascending."""
        return np.flatnonzero(self.eliminated_owner == rank)

    def counts(self, n_ranks: int) -> dict:
        """Eliminated blocks and residual blocks per rank (for reports)."""
        return {"eliminated_blocks": np.bincount(self.eliminated_owner, minlength=n_ranks).tolist(),
                "residual_blocks": sum(np.bincount(o, minlength=n_ranks) for o in self.instance_owner).tolist()}


def eliminated_group(problem: Problem) -> ParameterGroup:
    """The one group marked eliminate=True; NotDistributable otherwise."""
    groups = [g for g in problem.parameter_groups.values() if g.eliminate]
    if len(groups) != 1:
        raise NotDistributable(f"the distributed solve needs exactly one eliminated parameter group "
                               f"(bundle adjustment: the points), this problem has {len(groups)}")
    return groups[0]


def _incidence(problem: Problem, e_name: str) -> Tuple[str, np.ndarray, np.ndarray]:
    """(kept group, kept ids, eliminated ids) of every (kept slot, eliminated slot) use, over the residual
    groups that touch the eliminated group; the kept group is the one most of those uses name."""
    uses = {}
    for rg in problem.residual_groups:
        if e_name not in rg.groups:
            continue
        je = rg.groups.index(e_name)
        for j, g in enumerate(rg.groups):
            if j != je and not problem.parameter_groups[g].eliminate:
                uses.setdefault(g, []).append((rg.index[:, j], rg.index[:, je]))
    if not uses:
        raise NotDistributable(f"no residual group ties the eliminated group {e_name!r} to a kept group")
    kept = max(uses, key=lambda g: sum(u[0].size for u in uses[g]))
    return kept, np.concatenate([u[0] for u in uses[kept]]), np.concatenate([u[1] for u in uses[kept]])


def covisibility_graph(kept: np.ndarray, elim: np.ndarray, n_kept: int, n_elim: int):
    """(xadj, adjncy, edge weights, vertex weights) of the kept blocks' co-visibility graph (CSR, no self
    loops; edge weight: eliminated blocks shared; vertex weight: observations)."""
    c = covisibility(kept, elim, n_kept, n_elim)
    c.setdiag(0)
    c.eliminate_zeros()
    c.sort_indices()
    vertex_weight = np.bincount(kept, minlength=n_kept)
    return c.indptr.astype(np.int64), c.indices.astype(np.int64), c.data.astype(np.int64), vertex_weight


def partition_kept(kept: np.ndarray, elim: np.ndarray, n_kept: int, n_elim: int, n_ranks: int,
                   method: Optional[str] = None) -> Tuple[np.ndarray, str]:
    """(rank of each kept block, method used); method None: METIS when pymetis imports, else contiguous."""
    weight = np.bincount(kept, minlength=n_kept)
    if n_ranks == 1:
        return np.zeros(n_kept, dtype=np.int64), "single"
    if method in (None, "metis"):
        try:
            import pymetis
        except ImportError:
            if method == "metis":
                raise
        else:
            xadj, adjncy, eweights, vweights = covisibility_graph(kept, elim, n_kept, n_elim)
            opts = pymetis.Options(seed=0)
            _, parts = pymetis.part_graph(n_ranks, pymetis.CSRAdjacency(xadj, adjncy),
                                          vweights=np.maximum(vweights, 1), eweights=eweights, options=opts)
            return np.asarray(parts, dtype=np.int64), "metis"
    cum = np.cumsum(weight)
    total = max(int(cum[-1]), 1)
    return np.minimum((cum - weight) * n_ranks // total, n_ranks - 1).astype(np.int64), "contiguous"


def make_partition(problem: Problem, n_ranks: int, method: Optional[str] = None) -> Partition:
    """Partition ``problem`` over ``n_ranks`` (see the module docstring)."""
    e_group = eliminated_group(problem)
    e_name, n_e = e_group.name, e_group.n_blocks
    if n_ranks > n_e:
        raise NotDistributable(f"{n_ranks} ranks for {n_e} eliminated blocks: use at most {n_e} ranks")
    kept_name, kept, elim = _incidence(problem, e_name)
    n_kept = problem.parameter_groups[kept_name].n_blocks
    kept_part, used = partition_kept(kept, elim, n_kept, n_e, n_ranks, method)
    votes = np.bincount(elim * n_ranks + kept_part[kept], minlength=n_e * n_ranks).reshape(n_e, n_ranks)
    owner = np.argmax(votes, axis=1).astype(np.int64)  # ties: lowest rank; unobserved blocks: rank 0
    del votes
    empty = np.flatnonzero(np.bincount(owner, minlength=n_ranks) == 0)
    if empty.size:  # a rank without eliminated blocks: give it the last few blocks of the largest rank
        for r in empty:
            big = int(np.argmax(np.bincount(owner, minlength=n_ranks)))
            owner[np.flatnonzero(owner == big)[-1]] = r
    inst_owner = []
    for rg in problem.residual_groups:
        if e_name in rg.groups:
            inst_owner.append(owner[rg.index[:, rg.groups.index(e_name)]])
        else:
            inst_owner.append(np.zeros(rg.n_instances, dtype=np.int64))
    return Partition(used, kept_part, e_name, owner, inst_owner)


def _slice_weighting(sqrt_information, rows: np.ndarray):
    if sqrt_information is None or isinstance(sqrt_information, float):
        return sqrt_information
    return np.ascontiguousarray(sqrt_information[rows])


def local_problem(problem: Problem, part: Partition, rank: int) -> Problem:
    """Rank ``rank``'s problem: every kept group whole, its eliminated blocks (renumbered in ascending
    global order), the residual blocks it owns (in their global order). Arrays are copies."""
    e_name = part.eliminated_group
    e_ids = part.blocks_of(rank)
    local_id = np.full(problem.parameter_groups[e_name].n_blocks, -1, dtype=np.int64)
    local_id[e_ids] = np.arange(e_ids.size)
    out = Problem()
    for g in problem.parameter_groups.values():
        if g.name == e_name:
            out.parameter_groups[g.name] = ParameterGroup(g.name, g.values[e_ids].copy(), g.constant[e_ids].copy(),
                                                          g.constant_coordinates.copy(), True)
        else:
            out.parameter_groups[g.name] = ParameterGroup(g.name, g.values.copy(), g.constant.copy(),
                                                          g.constant_coordinates.copy(), g.eliminate)
    for rg, owner in zip(problem.residual_groups, part.instance_owner):
        rows = np.flatnonzero(owner == rank)
        if rows.size == 0:
            continue
        index = rg.index[rows].copy()
        for j, g in enumerate(rg.groups):
            if g == e_name:
                index[:, j] = local_id[index[:, j]]
        out.residual_groups.append(ResidualGroup(rg.name, rg.residual_type, rg.groups, index,
                                                 np.ascontiguousarray(rg.data[rows]),
                                                 _slice_weighting(rg.sqrt_information, rows), rg.loss))
    return out
