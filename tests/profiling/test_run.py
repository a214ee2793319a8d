"""sparselm.profiling.run: sizes, sparsity, fill-in and orderings checked against independent computations
(scipy products, CHOLMOD factors built here, the solver's own statistics); the JSON contract; the
text report; plots; the ``sparselm profile`` command."""
import json
import math
import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.bal.synthetic import synthetic_problem
from sparselm.linalg.cholmod import CholmodFactor, available_orderings
from sparselm.profiling.result import JSON_SCHEMA, schema_errors
from sparselm.profiling.run import load_problem, profile

PNG = b"\x89PNG\r\n\x1a\n"


def small_bal(seed=3):
    return synthetic_problem(8, 300, observations_per_point=3.5, seed=seed).initial


@pytest.fixture(scope="module")
def schur_profile():
    """sparse_schur on a small synthetic BA problem (CHOLMOD on S: the solver reports its own factor)."""
    return profile(small_bal(), linear_solver="sparse_schur", iterations=4)


@pytest.fixture(scope="module")
def normal_profile():
    return profile(small_bal(), linear_solver="sparse_normal_cholesky", iterations=3, jit=False)


def jacobian_pattern(bal):
    """Independent scipy pattern of J for a BA problem: 2 rows per observation, 9 camera + 3 point columns,
    cameras first (the solver's column order)."""
    n_obs, nc = bal.n_observations, bal.n_cameras
    rows = np.repeat(np.arange(2 * n_obs), 12)
    obs = rows // 2
    k = np.tile(np.arange(12), 2 * n_obs)
    cols = np.where(k < 9, 9 * bal.camera_index[obs] + k, 9 * nc + 3 * bal.point_index[obs] + (k - 9))
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(2 * n_obs, 9 * nc + 3 * bal.n_points))


def test_json_is_complete_finite_and_typed(schur_profile):
    d = schur_profile.to_dict()
    assert schema_errors(d) == []
    back = json.loads(schur_profile.to_json())  # allow_nan=False inside: raises on NaN/inf
    assert schema_errors(back) == []
    # a BA problem has every optional section
    for key in ("covisibility", "reprojection"):
        assert back[key] is not None
    for key in ("reduced_columns", "reduced_nnz_lower", "reduced_density"):
        assert key in back["sparsity"]
    assert back["jit"]["measured"] is True
    assert set(back) == set(JSON_SCHEMA)


def test_schema_check_catches_mistakes(schur_profile):
    d = json.loads(schur_profile.to_json())
    d["sparsity"]["jacobian_nnz"] = float(d["sparsity"]["jacobian_nnz"])
    d["solve"]["total_seconds"] = None
    del d["memory"]["peak_rss_bytes"]
    d["factorization"]["supernodal"] = 1
    d["extra"] = 1
    errors = schema_errors(d)
    assert any("jacobian_nnz" in e for e in errors)
    assert any("total_seconds" in e for e in errors)
    assert any("peak_rss_bytes: missing" in e for e in errors)
    assert any("supernodal" in e for e in errors)
    assert any("extra: unexpected" in e for e in errors)
    assert schema_errors({"x": float("nan")}, {"x": float}) == ["profile.x: not finite (nan)"]


def test_sizes_and_sparsity_match_scipy(schur_profile):
    bal = small_bal()
    p = schur_profile
    assert p.problem["parameter_groups"]["cameras"]["blocks"] == bal.n_cameras
    assert p.problem["parameter_groups"]["points"]["blocks"] == bal.n_points
    assert p.problem["parameter_groups"]["points"]["eliminate"] is True
    assert p.problem["residual_blocks"] == bal.n_observations
    assert p.problem["residuals"] == 2 * bal.n_observations
    assert p.problem["parameters"] == 9 * bal.n_cameras + 3 * bal.n_points
    j = jacobian_pattern(bal)
    s = p.sparsity
    assert (s["jacobian_rows"], s["jacobian_columns"]) == j.shape
    assert s["jacobian_nnz"] == j.nnz
    assert math.isclose(s["jacobian_density"], j.nnz / (j.shape[0] * j.shape[1]))
    h = (j.T @ j).tocsc()
    assert s["normal_nnz_lower"] == sp.tril(h).nnz
    # S pattern: the camera block (rows/cols < 9 nc) of the Schur complement's pattern, computed densely
    # on random values with J's pattern: S = U - W V^-1 W^T
    n_f = 9 * bal.n_cameras
    rng = np.random.default_rng(0)
    jr = j.copy()
    jr.data = rng.normal(size=jr.nnz)
    hr = (jr.T @ jr).toarray() + np.eye(j.shape[1])
    u, w, v = hr[:n_f, :n_f], hr[:n_f, n_f:], hr[n_f:, n_f:]
    schur = u - w @ np.linalg.solve(v, w.T)
    expected = sp.csc_matrix(np.tril(np.abs(schur) > 1e-12 * np.abs(schur).max()))
    got = p.reduced_matrix
    assert got.shape == (n_f, n_f)
    assert s["reduced_nnz_lower"] == got.nnz == expected.nnz
    assert (abs(got) != 0).astype(int).sum() == got.nnz
    assert ((got != 0).astype(int) - (expected != 0).astype(int)).nnz == 0
    # and the solver's own count
    assert s["reduced_nnz_lower"] == p.summary.linear_solver["nnz_lower_S"]


def test_factor_matches_cholmod(schur_profile):
    p = schur_profile
    fa = p.factorization
    assert fa["matrix"] == "S" and fa["solver"] == "sparse_schur" and fa["solver_uses_cholmod"]
    independent = CholmodFactor(p.reduced_matrix, fa["ordering"], fa["mode"])
    assert independent.factorize(p.reduced_matrix)
    counts = independent.column_counts()
    assert fa["nnz_L"] == independent.factor_nnz() == int(counts.sum())
    assert fa["flops"] == float(np.sum(counts.astype(float) ** 2))
    # the solver factored the real S (other values, same pattern): same nnz(L)
    assert fa["solver_factor_nnz"] == fa["nnz_L"] == p.summary.linear_solver["factor_nnz"]
    assert math.isclose(fa["fill_ratio"], fa["nnz_L"] / fa["nnz_lower"])
    assert fa["nnz_L"] >= fa["nnz_lower"]
    assert p.memory["factor_values_bytes"] == 8 * fa["nnz_L"]
    assert p.memory["matrix_values_bytes"] == 8 * fa["nnz_lower"]
    assert p.flop_estimates["factorization"]["flops_per_call"] == fa["flops"]
    assert p.flop_estimates["solve"]["flops_per_call"] == 4.0 * fa["nnz_L"]
    assert not any("differs" in w for w in p.warnings)


def test_ordering_comparison(schur_profile):
    p = schur_profile
    available = set(available_orderings())
    by_name = {d["ordering"]: d for d in p.orderings}
    assert list(by_name) == ["amd", "metis", "nesdis", "natural"]
    for name, d in by_name.items():
        assert d["available"] == (name in available)
        if not d["ok"]:
            assert d["note"]
            continue
        f = CholmodFactor(p.reduced_matrix, name, p.factorization["mode"])
        assert f.factorize(p.reduced_matrix)
        assert d["nnz_L"] == f.factor_nnz()
        assert d["analysis_seconds"] > 0 and d["factorization_seconds"] > 0
    ok = [d for d in p.orderings if d["ok"]]
    assert p.best_ordering == min(ok, key=lambda d: (d["nnz_L"], d["ordering"] != "amd"))["ordering"]
    assert by_name[p.best_ordering]["nnz_L"] == min(d["nnz_L"] for d in ok)
    assert p.fastest_ordering in by_name


def test_covisibility(schur_profile):
    bal = small_bal()
    cv = schur_profile.covisibility
    pairs = set()
    cams_of_point = {}
    for c, q in zip(bal.camera_index, bal.point_index):
        cams_of_point.setdefault(int(q), set()).add(int(c))
    for cams in cams_of_point.values():
        for a in cams:
            for b in cams:
                if a < b:
                    pairs.add((a, b))
    degree = np.zeros(bal.n_cameras)
    for a, b in pairs:
        degree[a] += 1
        degree[b] += 1
    assert cv["vertices"] == bal.n_cameras and cv["edges"] == len(pairs)
    assert cv["degree"]["max"] == degree.max() and cv["degree"]["min"] == degree.min()
    assert math.isclose(cv["degree"]["mean"], degree.mean())
    track = np.array([len(c) for c in cams_of_point.values()])
    assert cv["kept_per_eliminated"]["max"] == track.max()
    assert cv["cells"] == sum(track)
    assert cv["cell_pairs"] == int(np.sum(track * (track + 1) // 2))
    assert cv["cell_pairs"] == schur_profile.summary.linear_solver["cell_pairs"]
    obs = np.bincount(bal.camera_index, minlength=bal.n_cameras)
    assert cv["residuals_per_kept"]["max"] == obs.max()


def test_phases_and_flops(schur_profile):
    p = schur_profile
    summary = p.summary
    n = summary.n_iterations
    assert p.solve["iterations"] == n >= 1
    assert "symbolic" not in p.phases
    for name, ph in p.phases.items():
        assert ph["seconds"] == summary.phases[name]["seconds"]
        assert ph["calls"] == summary.phases[name]["calls"]
        assert math.isclose(ph["seconds_per_iteration"], ph["seconds"] / n)
    assert {"schur_complement", "factorization", "solve", "back_substitution"} <= set(p.phases)
    total = sum(ph["seconds"] for ph in p.phases.values()) + p.solve["other_seconds"]
    assert math.isclose(total, p.solve["loop_seconds"], rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(p.solve["loop_seconds"] + p.solve["setup_seconds"], summary.total_time_s)
    assert p.time_dominant_phase == max(p.phases, key=lambda k: p.phases[k]["seconds"])
    # S is 72 x 72 here: forming it costs far more flops than factoring it
    assert p.flop_dominant_phase == "schur_complement"
    assert p.flop_estimates["schur_complement"]["flops"] > 10 * p.flop_estimates["factorization"]["flops"]
    assert p.solve["final_cost"] < p.solve["initial_cost"]
    assert p.solve["final_cost"] == summary.final_cost


def test_jit_memory_threads(schur_profile):
    p = schur_profile
    j = p.jit
    assert j["measured"] and j["first_call_overhead_seconds"] >= 0
    assert j["first_solve_seconds"] >= j["warm_solve_seconds"] - 1e-9 or j["first_call_overhead_seconds"] == 0
    assert isinstance(j["what"], str) and "first" in j["what"]
    m = p.memory
    assert m["peak_rss_bytes"] >= m["rss_before_solve_bytes"] > 0
    assert m["jacobian_values_bytes"] == small_bal().n_observations * 2 * 12 * 8
    import numba

    assert p.threads["numba_threads"] == numba.get_num_threads()
    assert p.blas["cholmod_blas_kind"] in p.blas["summary"]


def test_reprojection(schur_profile):
    r = schur_profile.reprojection
    assert r["observations"] == small_bal().n_observations
    assert r["after"]["rms"] < r["before"]["rms"]
    before = schur_profile.initial_values
    bal = small_bal()
    np.testing.assert_array_equal(before["cameras"], bal.cameras)  # the starting point is kept
    from sparselm.bal.problem import reprojection_errors

    np.testing.assert_allclose(r["before"]["max"], reprojection_errors(bal).max())


def test_normal_solver_profile(normal_profile):
    p = normal_profile
    fa = p.factorization
    assert fa["matrix"] == "H" and fa["solver"] == "sparse_normal_cholesky"
    assert fa["nnz_lower"] == p.sparsity["normal_nnz_lower"] == p.summary.linear_solver["nnz_lower"]
    assert fa["solver_factor_nnz"] == fa["nnz_L"]
    independent = CholmodFactor(p.factored_matrix, fa["ordering"], fa["mode"])
    assert independent.factorize(p.factored_matrix)
    assert independent.factor_nnz() == fa["nnz_L"]
    assert fa["supernodal"] == (independent.method() == "supernodal")
    assert p.reduced_matrix is None
    assert p.covisibility is not None  # still a BA problem
    assert p.jit == {"measured": False}
    assert schema_errors(json.loads(p.to_json())) == []


@pytest.mark.parametrize("solver, matrix, phase", [
    ("dense_schur", "S", "schur_complement"),
    ("iterative_schur", "S", "cg"),
    ("dense", "H", "factorization"),
])
def test_other_solvers(solver, matrix, phase):
    p = profile(small_bal(), linear_solver=solver, iterations=3, orderings=("amd",))
    assert p.solve["linear_solver"] == solver
    assert p.factorization["matrix"] == matrix and not p.factorization["solver_uses_cholmod"]
    assert phase in p.phases
    assert schema_errors(json.loads(p.to_json())) == []
    assert "does not use CHOLMOD" in p.report()


def test_problem_without_eliminated_group(make_graph):
    g = make_graph(n_points=150, n_beacons=6, n_loops=100)
    p = profile(g.problem, iterations=3, jit=False, orderings=("amd", "natural"))
    assert p.covisibility is None and p.reprojection is None
    assert "reduced_columns" not in p.sparsity
    assert p.factorization["matrix"] == "H"
    assert schema_errors(json.loads(p.to_json())) == []
    # the Problem object is solved in place
    assert p.problem_object is g.problem
    assert p.solve["final_cost"] < p.solve["initial_cost"]
    assert "Co-visibility" not in p.report()


def test_report_text(schur_profile):
    text = schur_profile.report()
    for needle in ("Problem", "Sparsity", "lower(S)", "L of S (CHOLMOD)", "Co-visibility", "Orderings on lower(S)",
                   "Time per phase", "schur_complement", "JIT", "Memory", "peak RSS", "Reprojection error",
                   "BLAS under CHOLMOD", "<- best"):
        assert needle in text, needle
    assert f"{schur_profile.factorization['nnz_L']:,}" in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_load_problem_variants(tmp_path):
    from sparselm.bal.io import write_bal

    bal = small_bal()
    problem, desc = load_problem(bal)
    assert problem.parameter_groups["points"].eliminate
    path = write_bal(bal, tmp_path / "p.txt")
    problem2, desc2 = load_problem(str(path))
    assert desc2 == str(path)
    np.testing.assert_allclose(problem2.parameter_groups["cameras"].values, bal.cameras, rtol=1e-15)
    built_in, desc3 = load_problem(None)
    assert "synthetic" in desc3 and built_in.residual_groups[0].n_instances > 1000
    with pytest.raises(TypeError):
        load_problem(42)
    with pytest.raises(ValueError):
        profile(bal, iterations=0)
    from sparselm.bal.registry import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        profile(str(tmp_path / "missing.txt"))


def test_cold_jit_option(monkeypatch):
    """cold_jit runs the subprocess measurement; here its result is stubbed (the real one takes a minute)."""
    import sparselm.profiling.run as prof_mod

    calls = []

    def fake(solver, timeout=600.0):
        calls.append(solver)
        return {"ok": True, "linear_solver": solver, "compile_seconds": 12.5, "first_solve_seconds": 13.0,
                "warm_solve_seconds": 0.5, "import_seconds": 0.8, "process_seconds": 15.0}

    monkeypatch.setattr(prof_mod, "measure_cold_jit", fake)
    p = profile(small_bal(), iterations=2, jit=False, cold_jit=True, orderings=("amd",))
    assert calls and p.jit["cold"]["compile_seconds"] == 12.5
    assert schema_errors(json.loads(p.to_json())) == []
    assert "cold compile" in p.report()


@pytest.mark.slow
def test_cold_jit_measured_for_real():
    from sparselm.profiling.jit import measure_cold_jit

    d = measure_cold_jit("dense_schur")
    assert d["ok"], d
    assert d["compile_seconds"] > 0.5  # an empty numba cache really compiles


# -- plots ------------------------------------------------------------------------------------------

def test_plots_synthetic(schur_profile, tmp_path):
    pytest.importorskip("matplotlib")
    from sparselm.profiling.plots import write_plots

    paths = write_plots(schur_profile, schur_profile.summary, schur_profile.problem_object, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["convergence.png", "phases.png", "reprojection.png", "sparsity.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    assert not [f for f in os.listdir(tmp_path / "plots") if f.endswith(".tmp")]  # atomic writes leave nothing


def test_plots_without_ba_and_downsampled(make_graph, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import sparselm.profiling.plots as pp

    g = make_graph(n_points=150, n_beacons=6, n_loops=100)
    p = profile(g.problem, iterations=2, jit=False, orderings=("amd",))
    monkeypatch.setattr(pp, "SPY_MAX_BINS", 40)
    monkeypatch.setattr(pp, "SPY_SCALAR_MAX_NNZ", 10)  # block-level placement, binned
    shape = (p.sparsity["jacobian_rows"], p.sparsity["jacobian_columns"])
    grid, nnz = pp._jacobian_grid(p.problem_object, shape, p.sparsity["jacobian_nnz"])
    assert grid.shape == (40, 40) and grid.sum() == nnz == p.sparsity["jacobian_nnz"]
    monkeypatch.setattr(pp, "SPY_SCALAR_MAX_NNZ", 10 ** 9)  # every scalar entry: the same counts per bin
    grid2, _ = pp._jacobian_grid(p.problem_object, shape, p.sparsity["jacobian_nnz"])
    assert grid2.sum() == nnz
    monkeypatch.setattr(pp, "SPY_SCALAR_MAX_NNZ", 10)
    mgrid, mnnz = pp._matrix_grid(p)
    assert mgrid.shape == (40, 40)
    h = p.factored_matrix
    assert mnnz == 2 * h.nnz - h.shape[0] and mgrid.sum() == mnnz
    paths = pp.write_plots(p, directory=tmp_path, prefix="g-")
    assert sorted(x.name for x in paths) == ["g-convergence.png", "g-phases.png", "g-sparsity.png"]
    for path in paths:
        assert path.read_bytes().startswith(PNG)


def test_plots_need_matplotlib(schur_profile, tmp_path, monkeypatch):
    import sparselm.profiling.plots as pp

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(pp.PlotError, match="matplotlib"):
        pp.write_plots(schur_profile, directory=tmp_path)
    with pytest.raises(ValueError, match="unknown plot"):
        pp.write_plots(schur_profile, directory=tmp_path, which=("pie",))


# -- command line -----------------------------------------------------------------------------------

def _main():
    from sparselm.cli import main

    return main


def test_profile_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from sparselm.bal.io import write_bal

    path = write_bal(small_bal(), tmp_path / "small.txt")
    out_json = tmp_path / "profile.json"
    rc = _main()([
        "profile", str(path), "--iterations", "3", "--linear-solver", "sparse_schur", "--orderings", "amd,natural",
        "--json", str(out_json), "--plots", str(tmp_path / "plots"), "--no-jit"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "sparselm profile: " in out and "Orderings on lower(S)" in out
    data = json.loads(out_json.read_text())
    assert schema_errors(data) == []
    assert [d["ordering"] for d in data["orderings"]] == ["amd", "natural"]
    assert data["solve"]["linear_solver"] == "sparse_schur" and data["solve"]["max_iterations"] == 3
    pngs = sorted(os.listdir(tmp_path / "plots"))
    assert pngs == ["convergence.png", "phases.png", "reprojection.png", "sparsity.png"]


def test_profile_command_json_stdout_built_in(capsys):
    rc = _main()(["profile", "--iterations", "1", "--json", "-", "--no-jit", "--orderings", "amd"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(out)
    assert "synthetic" in data["source"]
    assert schema_errors(data) == []


@pytest.mark.parametrize("argv, needle", [
    (["profile", "/nonexistent/problem.txt"], "not found"),
    (["profile", "--iterations", "0"], "positive integer"),
    (["profile", "--orderings", "amd,bogus"], "bogus"),
    (["profile", "--json", "/nonexistent-dir/x.json"], "does not exist"),
])
def test_profile_command_errors(argv, needle, capsys):
    rc = _main()(argv)
    _, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], err


def test_profile_help(capsys):
    assert _main()(["profile", "--help"]) == 0
    out, _ = capsys.readouterr()
    for option in ("--linear-solver", "--iterations", "--plots", "--json", "--orderings", "FILE_OR_NAME"):
        assert option in out
