"""Concurrent solves (sparselm.util.threads.one_solve_at_a_time): solves started from several Python
threads never abort the process (numba's workqueue layer, the fallback where TBB does not load, would:
"Concurrent access has been detected"); they wait for each other and each gives bitwise the result of
the same solve run alone in the same process. The parallel kernels run on TBB (a dependency), which
hands out loop iterations dynamically: these bitwise comparisons are what shows that no sum depends
on which thread ran what. Solves in worker processes (fork and spawn, ProcessPoolExecutor and
multiprocessing.Pool) give bitwise the same results too, also when the fork happens while another
thread is in the middle of a solve (holding the lock).

The bitwise comparisons are the reproducibility promise of docs/guarantees.md (same problem, options
and thread count on one machine), not an accident of round-off.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import sparselm
from sparselm.bal import build_problem, read_bal, synthetic_problem
from sparselm.residuals import library

BAL_FILE = "variants/bal-ladybug-problem-49-7776-pre-shrink-1800.txt.bz2"


def _fingerprint(summary, problem) -> bytes:
    """Every bit of the result: the final cost, each iteration's cost and the solution."""
    costs = np.array([summary.final_cost] + [it.cost for it in summary.iterations])
    return costs.tobytes() + b"".join(g.values.tobytes() for g in problem.parameter_groups.values())


def solve_real_bal(path: str) -> bytes:
    """A real BAL file (1800 points, 10863 observations), Schur complement with CHOLMOD."""
    problem = build_problem(read_bal(path))
    return _fingerprint(sparselm.solve(problem, max_iterations=6, linear_solver="sparse_schur"), problem)


def solve_synthetic_ba(_=None) -> bytes:
    """A synthetic BA problem, iterative Schur (conjugate gradients)."""
    problem = build_problem(synthetic_problem(12, 500, seed=3).initial)
    return _fingerprint(sparselm.solve(problem, max_iterations=6, linear_solver="iterative_schur"), problem)


def solve_graph(_=None) -> bytes:
    """A random 2-D graph (offsets and ranges), sparse normal equations."""
    rng = np.random.default_rng(5)
    n, beacons = 600, 8
    truth, btruth = rng.uniform(0, 50, (n, 2)), rng.uniform(0, 50, (beacons, 2))
    edges = np.column_stack([np.arange(n - 1), np.arange(1, n)])
    seen = rng.integers(0, beacons, n)
    problem = sparselm.Problem()
    problem.add_parameter_group("points", truth + rng.normal(size=(n, 2)))
    problem.add_parameter_group("beacons", btruth, constant=np.arange(beacons))
    problem.add_residual_group("odometry", library.OFFSET_2D, [("points", edges[:, 0]), ("points", edges[:, 1])],
                               truth[1:] - truth[:-1] + 0.05 * rng.normal(size=(n - 1, 2)), sigma=0.05)
    problem.add_residual_group("ranges", library.DISTANCE_2D, [("points", np.arange(n)), ("beacons", seen)],
                               np.linalg.norm(truth - btruth[seen], axis=1), sigma=0.1, loss="huber")
    return _fingerprint(sparselm.solve(problem, max_iterations=8, linear_solver="sparse_normal_cholesky"), problem)


def _chain(x, y):
    return np.concatenate([x[1:] - x[:-1] ** 2 - y[1:], [x[0] - y[0]]])


def solve_least_squares(_=None) -> bytes:
    """sparselm.least_squares (scipy's front door) on a sparse chain, finite differences with colouring."""
    n = 400
    y = np.linspace(0.1, 0.9, n)
    sparsity = sp.diags([np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n)).tolil()
    sparsity = sp.vstack([sparsity, sp.eye(1, n)])
    result = sparselm.least_squares(_chain, np.full(n, 0.5), jac_sparsity=sparsity, args=(y,), max_nfev=30)
    return np.concatenate([[result.cost], result.x]).tobytes()


def all_solves(bal_path: str) -> list:
    """The four solves, one after another, in this process."""
    return [solve_real_bal(bal_path), solve_synthetic_ba(), solve_graph(), solve_least_squares()]


@pytest.fixture(scope="module")
def bal_path(request) -> str:
    path = request.getfixturevalue("bal_data") / BAL_FILE
    if not path.is_file():
        pytest.fail(f"{path} is missing")
    return str(path)


@pytest.fixture(scope="module")
def sequential(bal_path) -> list:
    return all_solves(bal_path)


def test_four_concurrent_solves_from_threads_equal_the_sequential_ones_bitwise(bal_path, sequential):
    jobs = [(solve_real_bal, bal_path), (solve_synthetic_ba, None), (solve_graph, None), (solve_least_squares, None)]
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(function, argument) for function, argument in jobs]
            concurrent = [f.result(timeout=600) for f in futures]
        assert concurrent == sequential


def test_the_same_solve_from_four_threads_at_once(sequential, bal_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(solve_real_bal, [bal_path] * 4, timeout=600))
    assert results == [sequential[0]] * 4


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pool_solves_equal_the_in_process_ones_bitwise(bal_path, sequential, method):
    """ProcessPoolExecutor with each start method, after this process has run parallel regions."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context(method)) as pool:
        results = list(pool.map(all_solves, [bal_path, bal_path], timeout=600))
    assert results == [sequential, sequential]


def test_multiprocessing_pool_with_fork(bal_path, sequential):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(solve_real_bal, [bal_path] * 3)
    assert results == [sequential[0]] * 3


def _solve_in_child(bal_path: str, queue) -> None:
    queue.put(solve_real_bal(bal_path))


def test_fork_while_another_thread_is_solving(bal_path, sequential):
    """A child forked while a thread of the parent holds the solve lock (paused in a callback) gets a
    free lock of its own: its solve finishes instead of waiting forever."""
    inside, release = threading.Event(), threading.Event()

    def pause_once(record):
        if not inside.is_set():
            inside.set()
            release.wait(120)
        return False

    def long_solve():
        problem = build_problem(synthetic_problem(6, 60, seed=1).initial)
        sparselm.solve(problem, max_iterations=3, callbacks=[pause_once])

    solver = threading.Thread(target=long_solve)
    solver.start()
    try:
        assert inside.wait(300)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_solve_in_child, args=(bal_path, queue))
        child.start()
        result = queue.get(timeout=300)
        child.join(60)
        assert child.exitcode == 0
        assert result == sequential[0]
    finally:
        release.set()
        solver.join(300)


def test_the_blas_scan_is_kept_until_a_module_is_imported(monkeypatch):
    import sys
    import types

    from sparselm.util import threads

    real = threads.loaded_blas_libraries()
    monkeypatch.setattr(threads, "mapped_libraries", lambda: ["/opt/x/libfakeblas.so"])
    assert threads.loaded_blas_libraries() == real  # no new module: the last scan stands
    monkeypatch.setitem(sys.modules, "sparselm_test_freshly_imported", types.ModuleType("fresh"))
    assert threads.loaded_blas_libraries() == ["/opt/x/libfakeblas.so"]  # a new module: scanned again


def test_the_openblas_setters_are_kept_with_the_blas_scan(monkeypatch):
    """limit_blas_threads opens the OpenBLAS libraries once per scan, not at every solve."""
    from sparselm.util import threads

    first = threads.limit_blas_threads(1)

    def no_reopening(*args, **kwargs):
        raise AssertionError("a library was opened again without a new scan")

    monkeypatch.setattr(threads.ctypes, "CDLL", no_reopening)
    assert threads.limit_blas_threads(1) == first


def test_parallel_kernels_run_on_tbb(bal_path, sequential):
    """TBB's runtime, from the tbb wheel, is found and numba's parallel regions run on it."""
    import numba

    assert numba.threading_layer() == "tbb"


def test_a_threading_layer_chosen_by_the_user_is_kept():
    """NUMBA_THREADING_LAYER set before sparselm is imported wins over sparselm's default."""
    code = ("import sparselm, numba\n"
            "sparselm.solve(sparselm.bal.build_problem(sparselm.bal.synthetic_problem(4, 50, seed=1).initial),"
            " max_iterations=1)\n"
            "print(numba.threading_layer())")
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "workqueue"
