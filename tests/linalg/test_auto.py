"""sparselm.linalg.auto: the memory rule of the 'auto' choice."""
import numpy as np

from sparselm.bal import build_problem, synthetic_problem
from sparselm.core.layout import build_layout
from sparselm.linalg.auto import choose_linear_solver, sparse_schur_bytes_lower_bound
from sparselm.linalg.schur.direct import SparseSchur
from sparselm.core.evaluator import Evaluator
from sparselm.linalg.base import LinearSolverOptions
from sparselm.util.timing import PhaseTimer


def test_the_lower_bound_counts_jacobian_w_and_cell_pairs():
    problem = build_problem(synthetic_problem(12, 300, 4.0, seed=2).initial)
    layout = build_layout(problem)
    solver = SparseSchur(layout, Evaluator(problem, layout, PhaseTimer()), PhaseTimer(), LinearSolverOptions())
    st = solver.structure
    n = problem.residual_groups[0].n_instances
    expected = n * 2 * 12 * 8 + st.n_cells * 9 * 3 * 8 + 48 * st.n_pairs  # one observation per cell here
    assert st.n_cells == n
    assert sparse_schur_bytes_lower_bound(problem) == expected
    assert solver.w.nbytes + n * 2 * 12 * 8 <= sparse_schur_bytes_lower_bound(problem)


def test_auto_takes_the_iterative_solver_when_sparse_schur_would_not_fit():
    problem = build_problem(synthetic_problem(60, 2000, 4.0, seed=1).initial)
    layout = build_layout(problem)
    roomy = choose_linear_solver(layout, "auto", problem, available=1e12)
    assert roomy.name == "sparse_schur"  # a banded camera graph: S's factor is cheap
    need = sparse_schur_bytes_lower_bound(problem)
    tight = choose_linear_solver(layout, "auto", problem, available=1.9 * need)
    assert tight.name == "iterative_schur" and "GiB" in tight.reason
    assert choose_linear_solver(layout, "auto", problem, available=2.1 * need).name == "sparse_schur"
    assert tight.factor_estimate is None  # decided by the memory rule, before the co-visibility graph is built
    assert np.isfinite(roomy.factor_estimate["flops"])
