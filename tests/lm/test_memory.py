"""sparselm.lm.memory: the up-front memory estimate and the check that refuses a problem that cannot fit.

The estimate is checked three ways: its structural counts against the structures the solvers build
(S blocks, cell pairs, nonzeros), its total against the bytes a real solve allocates (tracemalloc
sees every numpy array; CHOLMOD's factor is C memory and left out of both sides), and its own cost
(it must not allocate anything like what it estimates). The check is tested with fake small
``available`` figures and fake /proc and cgroup files.
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import sparselm
from sparselm.linalg.schur import memory as schur_memory
from sparselm.lm import memory
from sparselm.bal import build_problem, synthetic_problem
from sparselm.lm.memory import (InsufficientMemoryError, MemoryEstimate, available_memory, check_memory,
                             estimate_memory, format_bytes)
from sparselm.core.layout import build_layout, build_normal_pattern
from sparselm.util import pages

GiB = 2**30


def ba_problem(n_cameras=12, n_points=800, seed=1, **kwargs):
    return build_problem(synthetic_problem(n_cameras, n_points, seed=seed).initial, **kwargs)


# -- the check ---------------------------------------------------------------------------------------

def test_check_refuses_with_a_message_naming_the_numbers():
    est = MemoryEstimate("sparse_schur", {"jacobian": int(12.1 * GiB), "schur: accumulators": 8 * GiB,
                                          "S values": int(11.1 * GiB)})
    with pytest.raises(InsufficientMemoryError) as info:
        check_memory(est, available=int(22.9 * GiB))
    err = info.value
    assert isinstance(err, MemoryError)
    assert err.available == int(22.9 * GiB) and err.estimate is est
    text = str(err)
    assert "needs about 31.2 GiB (jacobian 12.1 GiB, S values 11.1 GiB, schur: accumulators 8.0 GiB)" in text
    assert "22.9 GiB available" in text and "sparse_schur" in text and "\n" not in text


def test_check_passes_when_it_fits_and_can_be_switched_off(monkeypatch):
    est = MemoryEstimate("dense", {"jacobian": 1000})
    assert check_memory(est, available=1000) == 1000  # equal is enough
    with pytest.raises(InsufficientMemoryError):
        check_memory(est, available=999)
    monkeypatch.setenv(memory.ENV_SKIP, "1")
    assert check_memory(est, available=1) is None
    monkeypatch.setenv(memory.ENV_SKIP, "0")
    with pytest.raises(InsufficientMemoryError):
        check_memory(est, available=1)


def test_check_reads_the_system_when_not_told(monkeypatch):
    est = MemoryEstimate("dense", {"jacobian": 5 * GiB})
    monkeypatch.setattr(memory, "available_memory", lambda: (4 * GiB, "MemAvailable in /proc/meminfo"))
    with pytest.raises(InsufficientMemoryError, match=r"4.0 GiB available \(MemAvailable in /proc/meminfo\)"):
        check_memory(est)
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # not Linux: nothing to compare with
    assert check_memory(est) is None


def test_available_memory_on_this_machine():
    found = available_memory()
    if not Path("/proc/meminfo").exists():
        assert found is None
        return
    available, source = found
    assert 0 < available and source


def _fake_system(tmp_path: Path, mem_available_kb: int, cgroup: str, files: dict):
    tmp_path.mkdir(parents=True, exist_ok=True)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       99999999 kB\nMemFree:  1 kB\nMemAvailable:   {mem_available_kb} kB\n")
    proc = tmp_path / "cgroup"
    proc.write_text(cgroup)
    root = tmp_path / "fs"
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return dict(meminfo=str(meminfo), proc_cgroup=str(proc), cgroup_root=str(root))


def test_available_memory_takes_the_smaller_of_meminfo_and_a_cgroup_limit(tmp_path):
    # cgroup v2: limit 2 GiB, 1.5 GiB used of which 0.5 GiB inactive page cache -> 1 GiB left
    v2 = _fake_system(tmp_path / "v2", 8 * 2**20, "0::/job/step\n", {
        "job/step/memory.max": str(2 * GiB), "job/step/memory.current": str(3 * GiB // 2),
        "job/step/memory.stat": f"anon 1\ninactive_file {GiB // 2}\n", "job/memory.max": "max"})
    assert available_memory(**v2) == (GiB, "memory cgroup limit minus usage")
    # cgroup v1 with an unlimited group: MemAvailable (8 GiB) wins
    v1 = _fake_system(tmp_path / "v1", 8 * 2**20, "4:memory:/job\n1:cpu:/\n", {
        "memory/job/memory.limit_in_bytes": str(2**63 - 4096), "memory/job/memory.usage_in_bytes": "5"})
    assert available_memory(**v1) == (8 * GiB, "MemAvailable in /proc/meminfo")
    # cgroup v1 with a parent limit of 3 GiB, 1 GiB used
    v1b = _fake_system(tmp_path / "v1b", 8 * 2**20, "4:memory:/job/task\n", {
        "memory/job/memory.limit_in_bytes": str(3 * GiB), "memory/job/memory.usage_in_bytes": str(GiB),
        "memory/job/memory.stat": "total_inactive_file 0\n"})
    assert available_memory(**v1b) == (2 * GiB, "memory cgroup limit minus usage")
    # nothing readable
    assert available_memory(meminfo=str(tmp_path / "none"), proc_cgroup=str(tmp_path / "none"),
                            cgroup_root=str(tmp_path)) is None


def test_format_bytes():
    assert format_bytes(980) == "980 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(512 * 2**20) == "512 MiB"
    assert format_bytes(31.2 * GiB) == "31.2 GiB"
    assert format_bytes(3 * 2**40) == "3.0 TiB"


# -- the estimate against the real structures ---------------------------------------------------------

@pytest.mark.parametrize("fix", [(), [0, 3]])
@pytest.mark.parametrize("exact", [False, True])
def test_schur_counts_match_the_structure(monkeypatch, fix, exact):
    from sparselm.linalg.schur.structure import build_schur_structure

    if exact:  # force the exact count of S blocks (used for big S) on a small problem
        monkeypatch.setattr(schur_memory, "EXACT_PAIRS_ABOVE", 0)
    p = ba_problem(30, 2000, fix_cameras=fix)
    layout = build_layout(p)
    st = build_schur_structure(layout)
    est = estimate_memory(p, "sparse_schur", layout, threads=2)
    kf, ke, n_r = 9, 3, layout.n_reduced_columns
    note = est.notes[0]
    assert f"{st.n_pairs} cell pairs" in note
    assert est.items["schur: cell blocks"] == st.n_cells * kf * ke * 8 + 4 * st.n_cells * 8
    assert est.items["schur: point blocks"] == (2 * st.n_e_blocks * ke * ke + 2 * st.n_e_blocks * ke) * 8
    if exact:  # counted from the layout's co-visibility pattern, and without a layout by the marker count
        assert f"S has {st.pattern.n_targets} blocks" in note
        assert est.items["S values"] == 3 * st.pattern.nnz * 8 + n_r * 8
        assert f"S has {st.pattern.n_targets} blocks" in estimate_memory(p, "sparse_schur", threads=2).notes[0]
    else:
        assert "S has at most" in note and est.items["S values"] >= 3 * st.pattern.nnz * 8 + n_r * 8
    assert "layout" not in est.items  # a layout that exists is not counted again
    assert "layout" in estimate_memory(p, "sparse_schur", threads=2).items


def test_normal_matrix_count_matches_the_pattern():
    p = ba_problem(10, 500)
    layout = build_layout(p)
    nnz = build_normal_pattern(layout).pattern.nnz
    est = estimate_memory(p, "sparse_normal_cholesky", layout)
    assert est.items["normal matrix"] == 3 * nnz * 8 + layout.n_columns * 8  # BA: every (camera, point) once
    assert est.items["cholesky factor"] >= nnz * 8
    with_factor = estimate_memory(p, "sparse_normal_cholesky", layout, factor_nnz=10 * nnz)
    assert with_factor.items["cholesky factor"] > est.items["cholesky factor"]
    assert not any("fill-in" in n for n in with_factor.notes) and any("fill-in" in n for n in est.notes)


@pytest.mark.parametrize("route", ["dense-triangle", "block-graph", "given"])
def test_factor_of_s_is_estimated_from_the_layout(monkeypatch, route):
    """sparse_schur's factor: the dense triangle of S when small, else (given the layout) the block
    graph estimate of sparselm.linalg.schur.factor_estimate, or the one given (as solve() passes the
    auto choice's); CHOLMOD's real factor (after a solve) lies between the nonzeros of S and the
    estimate with supernodal padding."""
    p = ba_problem(60, 3000)
    layout = build_layout(p)
    if route != "dense-triangle":
        monkeypatch.setattr(schur_memory, "EXACT_PAIRS_ABOVE", 0)
    est = estimate_memory(p, "sparse_schur", layout, threads=2, factor_nnz=123456 if route == "given" else None)
    assert not any("fill-in" in n for n in est.notes)
    nnz_s = (est.items["S values"] - layout.n_reduced_columns * 8) // 24
    factor_nnz = (est.items["cholesky factor"] - nnz_s * 12) // 8
    s = sparselm.solve(ba_problem(60, 3000), linear_solver="sparse_schur", max_iterations=1, threads=2)
    real = s.linear_solver["factor_nnz"]
    if route == "given":
        assert factor_nnz == 123456
    elif route == "dense-triangle":
        assert factor_nnz == layout.n_reduced_columns * (layout.n_reduced_columns + 1) // 2 >= real
    else:
        assert nnz_s <= factor_nnz <= real <= 2 * factor_nnz
    # without a layout and with a big S only a lower bound is known, and the note says so
    if route == "block-graph":
        bare = estimate_memory(p, "sparse_schur", threads=2)
        assert any("fill-in" in n for n in bare.notes)
        assert bare.items["cholesky factor"] == nnz_s * 20 <= est.items["cholesky factor"]


def test_private_accumulators_follow_threads_and_the_cap(monkeypatch):
    p = ba_problem(40, 3000)
    one = estimate_memory(p, "sparse_schur", threads=1).items["schur: accumulators"]
    four = estimate_memory(p, "sparse_schur", threads=4).items["schur: accumulators"]
    assert 3.5 * one < four < 4.5 * one
    monkeypatch.setattr("sparselm.linalg.schur.memory.PRIVATE_S_BYTES", 1)  # cap: a single chunk whatever the threads
    assert estimate_memory(p, "sparse_schur", threads=4).items["schur: accumulators"] == one


def test_auto_resolves_like_solve_and_unknown_names_are_refused():
    p = ba_problem(8, 300)
    s = sparselm.solve(ba_problem(8, 300), max_iterations=0)
    assert estimate_memory(p, "auto").linear_solver == s.options_used["linear_solver"]
    with pytest.raises(ValueError, match="unknown linear solver 'cholesky'"):
        estimate_memory(p, "cholesky")


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind,solver", [
    ("ba", "sparse_schur"), ("ba", "dense_schur"), ("ba", "iterative_schur"), ("ba", "sparse_normal_cholesky"),
    ("small ba", "dense"), ("graph", "sparse_normal_cholesky"),
])
def test_estimate_is_close_to_what_a_solve_allocates(kind, solver, make_graph, monkeypatch):
    """numpy allocations of a whole solve (setup, linearisations, trials) seen by tracemalloc, against
    the estimate without CHOLMOD's factor (C memory, invisible to tracemalloc). The big arrays that
    util.pages maps itself are made by numpy here instead (same sizes), so that tracemalloc sees them."""
    monkeypatch.setattr(pages, "MAPPED_MIN_BYTES", 2**62)
    make = {"ba": lambda: ba_problem(16, 6000), "small ba": lambda: ba_problem(3, 150),
            "graph": lambda: make_graph(n_points=6000, n_beacons=60, n_loops=6000).problem}[kind]
    sparselm.solve(make(), linear_solver=solver, max_iterations=2, threads=2)  # compile and warm up
    p = make()
    est = estimate_memory(p, solver, threads=2)
    expected = est.total - est.items.get("cholesky factor", 0)
    peak = _traced_peak(lambda: sparselm.solve(p, linear_solver=solver, max_iterations=3, threads=2))
    assert 0.6 * peak <= expected <= 2.0 * peak, (format_bytes(expected), format_bytes(peak), est.describe(9))


def test_the_estimate_itself_is_cheap():
    p = ba_problem(40, 20000)
    layout = build_layout(p)
    estimate_memory(p, "sparse_schur", layout)  # warm up (imports)
    est = estimate_memory(p, "sparse_schur", layout)
    peak = _traced_peak(lambda: estimate_memory(p, "sparse_schur", layout))
    assert peak < 0.1 * est.total, (format_bytes(peak), est.describe())


# -- wiring into solve (the lead adds the snippet to solver.py) --------------------------------------------

def test_small_estimates_do_not_read_the_system(monkeypatch):
    def unreadable():
        raise AssertionError("the system's figures were read")

    monkeypatch.setattr(memory, "available_memory", unreadable)
    assert check_memory(MemoryEstimate("dense", {"jacobian": memory.CHECK_MIN_BYTES - 1})) is None
    with pytest.raises(AssertionError, match="were read"):
        check_memory(MemoryEstimate("dense", {"jacobian": memory.CHECK_MIN_BYTES}))


def test_solve_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr(memory, "CHECK_MIN_BYTES", 0)  # the problem is small: check it all the same
    monkeypatch.setattr(memory, "available_memory", lambda: (2**20, "MemAvailable in /proc/meminfo"))
    p = ba_problem(8, 300)
    before = p.parameter_groups["points"].values.copy()
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* 1.0 MiB available"):
        sparselm.solve(p)
    np.testing.assert_array_equal(p.parameter_groups["points"].values, before)
