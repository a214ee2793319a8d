"""Model flop counts of a linear solver's phases, from the structure alone (for ``sparselm profile``).

Multiply-adds count as 2 flops; the counts follow the math, not the kernels' instruction stream:

    dense factor        n^3 / 3 (Cholesky of an n x n matrix), solve 2 n^2
    CHOLMOD factor      its own flop count of the analysed factor, solve 4 nnz(L)
    Schur complement    per eliminated block V^-1 (Cholesky + inverse, ke^3 / 3 + ke^3), per cell
                        Y = W V^-1 (2 kf ke^2) and the right-hand side (2 kf ke), per cell pair the
                        update S -= Y W^T (2 kf^2 ke)
    back substitution   per cell 2 kf ke, per eliminated block 2 ke^2
"""
from __future__ import annotations

from typing import Dict

from sparselm.linalg.base import StructureCounts


def dense_factor_flops(c: StructureCounts) -> Dict[str, float]:
    """Factorization and solve of a dense n x n matrix by LAPACK."""
    n = float(c.columns)
    return {"factorization": n ** 3 / 3.0, "solve": 2.0 * n * n}


def cholmod_factor_flops(c: StructureCounts) -> Dict[str, float]:
    """Factorization and solve by CHOLMOD (nothing when the factor was not analysed)."""
    if c.factor_flops is None or c.factor_nnz is None:
        return {}
    return {"factorization": float(c.factor_flops), "solve": 4.0 * float(c.factor_nnz)}


def schur_flops(c: StructureCounts) -> Dict[str, float]:
    """Assembly of V, W, U, the Schur complement (with its right-hand side) and back substitution."""
    kf, ke = float(c.kf), float(c.ke)
    cells, pairs, n_e = float(c.n_cells), float(c.n_pairs), float(c.n_e)
    return {"assembly": c.assembly,
            "schur_complement": n_e * (ke ** 3 / 3.0 + ke ** 3) + cells * 2.0 * kf * ke * ke
            + pairs * 2.0 * kf * kf * ke + cells * 2.0 * kf * ke,
            "back_substitution": cells * 2.0 * kf * ke + n_e * 2.0 * ke * ke}


def normal_assembly_flops(c: StructureCounts) -> Dict[str, float]:
    """Assembly of J^T J."""
    return {"assembly": c.assembly}
