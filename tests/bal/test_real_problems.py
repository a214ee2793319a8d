"""Solving the real BAL problems against published figures and Ceres' results.

Needs the BAL files ($SPARSELM_DATA; the ``bal_data`` fixture skips without it, and fails instead
when SPARSELM_REQUIRE_DATA=1). The solves take up to a few seconds each: marked slow, but run by
default.

References:
* initial costs and the converged cost of problem-16-22106-pre (1.803390e+04): Ceres Solver's
  documentation (and the scipy cookbook for the initial cost of problem-49-7776-pre);
* problem-49-7776-pre after 50 iterations: Ceres 2.1 SPARSE_SCHUR, run like its bundle_adjuster
  example (function tolerance 1e-16, so it runs the 50 iterations): 1.334425e+04;
* problem-21-11315-pre: Ceres 2.2 (through pycolmap, SPARSE_SCHUR) converges to 3.037864e+04.

"At least as low" is checked with a relative tolerance of 1e-6: the Ceres figures are printed to 7
significant digits, and this ill-conditioned problem (problem-49 has a 7-dof gauge freedom) lets
two correct solvers end ~1e-6 apart in cost.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sparselm
from sparselm.bal import build_problem, read_bal, reprojection_errors, solution_to_bal, write_bal

pytestmark = pytest.mark.slow

P16 = "dubrovnik/problem-16-22106-pre.txt.bz2"
P49 = "ladybug/problem-49-7776-pre.txt.bz2"
P21 = "trafalgar/problem-21-11315-pre.txt.bz2"

CERES_50_ITERATIONS = {P49: 1.334425e+04, P21: 3.037864e+04}
AT_LEAST_AS_LOW_RTOL = 1e-6
#: Ceres' bundle_adjuster protocol: a fixed budget of 50 iterations, never stopping on the cost.
CERES_PROTOCOL = dict(max_iterations=50, function_tolerance=1e-16)


def load(bal_data, name):
    path = bal_data / name
    if not path.is_file():
        pytest.fail(f"{path} is missing from SPARSELM_DATA")
    return read_bal(path)


@pytest.mark.parametrize("name, cost", [(P16, 4.185660e+06), (P49, 8.509125e+05)])
def test_initial_cost(bal_data, name, cost):
    bal = load(bal_data, name)
    summary = sparselm.solve(build_problem(bal), max_iterations=0)
    assert f"{summary.initial_cost:.6e}" == f"{cost:.6e}"
    errors = reprojection_errors(bal)
    np.testing.assert_allclose(0.5 * np.dot(errors, errors), summary.initial_cost, rtol=1e-12)


@pytest.mark.parametrize("linear_solver", ["auto", "sparse_schur", "dense_schur", "sparse_normal_cholesky"])
def test_problem_16_converges_to_the_published_cost(bal_data, linear_solver):
    problem = build_problem(load(bal_data, P16))
    summary = sparselm.solve(problem, linear_solver=linear_solver)
    assert summary.termination == "convergence", summary.message
    assert summary.final_cost == pytest.approx(1.80339e+04, rel=1e-4)
    if linear_solver != "auto":
        assert summary.options_used["linear_solver"] == linear_solver


@pytest.mark.parametrize("name", [P49, P21])
def test_fifty_iterations_reach_ceres_cost(bal_data, name):
    """Same protocol as Ceres (50 iterations, function tolerance 1e-16): at least as low as Ceres."""
    summary = sparselm.solve(build_problem(load(bal_data, name)), **CERES_PROTOCOL)
    assert summary.ok, summary.message
    assert summary.n_iterations <= 50
    bar = CERES_50_ITERATIONS[name]
    assert summary.final_cost <= bar * (1 + AT_LEAST_AS_LOW_RTOL), (
        f"{name}: {summary.final_cost:.7e} after {summary.n_iterations} iterations, Ceres {bar:.6e}")


def test_default_options_on_the_ceres_problems(bal_data):
    """With the default options (function tolerance 1e-6, as Ceres' default) the solve stops on the
    function tolerance. Measured: problem-21 reaches Ceres' converged cost (8 iterations);
    problem-49 stops after ~32 iterations at ~1.33443e+04, about 3e-6 above the cost Ceres reaches
    with 50 forced iterations: so on problem-49 the "at least as low" claim is made only for the
    50-iteration protocol above, and here only within 1e-5."""
    s21 = sparselm.solve(build_problem(load(bal_data, P21)))
    assert s21.termination == "convergence", s21.message
    assert s21.final_cost <= CERES_50_ITERATIONS[P21] * (1 + AT_LEAST_AS_LOW_RTOL)
    s49 = sparselm.solve(build_problem(load(bal_data, P49)))
    assert s49.termination == "convergence", s49.message
    assert s49.final_cost <= CERES_50_ITERATIONS[P49] * (1 + 1e-5)


def test_solution_written_and_read_back_has_the_same_cost(bal_data, tmp_path):
    bal = load(bal_data, P16)
    problem = build_problem(bal)
    summary = sparselm.solve(problem)
    solved = solution_to_bal(problem, bal)
    in_memory = reprojection_errors(solved)
    for name in ("solution.txt", "solution.txt.bz2"):
        back = read_bal(write_bal(solved, tmp_path / name))
        for field in ("cameras", "points", "observations", "camera_index", "point_index"):
            assert np.array_equal(getattr(back, field), getattr(solved, field)), field  # bitwise
        assert np.array_equal(reprojection_errors(back), in_memory)
        again = sparselm.solve(build_problem(back), max_iterations=0)
        assert again.initial_cost == pytest.approx(summary.final_cost, rel=1e-12)


@pytest.mark.parametrize("kwargs", [dict(fix_cameras=[0]), dict(fix_intrinsics=True),
                                    dict(fix_cameras=[0], fix_intrinsics=True)])
def test_fixed_camera_and_intrinsics_on_problem_16(bal_data, kwargs):
    """Held values stay bitwise; the solve still converges. The costs are above the free optimum
    (measured: camera 0 fixed 5.91e+04, intrinsics fixed 3.74e+05: the starting intrinsics of this
    file are far from the optimum), so only a clear decrease is asked for."""
    bal = load(bal_data, P16)
    problem = build_problem(bal, **kwargs)
    summary = sparselm.solve(problem)
    assert summary.termination == "convergence", summary.message
    cams = problem.parameter_groups["cameras"].values
    if "fix_cameras" in kwargs:
        assert np.array_equal(cams[0], bal.cameras[0])
        assert np.all(cams[1:, :6] != bal.cameras[1:, :6])
    if kwargs.get("fix_intrinsics"):
        assert np.array_equal(cams[:, 6:9], bal.cameras[:, 6:9])
        assert np.all(cams[1:, :6] != bal.cameras[1:, :6])
    assert 1.80339e+04 * (1 - 1e-4) <= summary.final_cost < 0.1 * summary.initial_cost


def _cli_env(bal_data, tmp_path):
    env = dict(os.environ, SPARSELM_DATA=str(bal_data), SPARSELM_CACHE=str(tmp_path / "cache"))
    env.pop("SPARSELM_TRACEBACK", None)
    return env


def test_cli_solves_a_problem_by_name(bal_data, tmp_path):
    report = tmp_path / "report.json"
    out = tmp_path / "solution.txt.bz2"
    proc = subprocess.run([sys.executable, "-m", "sparselm.cli", "solve", "problem-16-22106-pre", "-o", str(out),
                           "--report", str(report)], capture_output=True, text=True, env=_cli_env(bal_data, tmp_path),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert str(bal_data / P16) in proc.stdout
    data = json.loads(report.read_text())
    assert data["input"] == os.path.abspath(bal_data / P16)
    assert data["problem"]["cameras"] == 16 and data["problem"]["observations"] == 83718
    assert data["final_cost"] == pytest.approx(1.80339e+04, rel=1e-4)
    again = sparselm.solve(build_problem(read_bal(out)), max_iterations=0)
    assert again.initial_cost == pytest.approx(data["final_cost"], rel=1e-12)


def test_cli_ctrl_c_writes_the_best_point_and_exits_130(bal_data, tmp_path):
    report = tmp_path / "report.json"
    out = tmp_path / "solution.txt"
    cmd = [sys.executable, "-m", "sparselm.cli", "solve", str(bal_data / P49), "--max-iterations", "100000",
           "--function-tolerance", "0", "--parameter-tolerance", "0", "--gradient-tolerance", "0",
           "--max-time", "120", "-o", str(out), "--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_cli_env(bal_data, tmp_path))
    try:
        for line in proc.stdout:  # wait for a few iterations of the table
            fields = line.split()
            if len(fields) == 10 and fields[0].isdigit() and int(fields[0]) >= 3:
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert "INTERRUPTED" in rest
    data = json.loads(report.read_text())
    assert data["termination"] == "interrupted" and data["exit_status"] == 130
    assert data["final_cost"] < data["initial_cost"]
    again = sparselm.solve(build_problem(read_bal(out)), max_iterations=0)
    assert again.initial_cost == pytest.approx(data["final_cost"], rel=1e-12)


def test_cli_info_on_problem_16(bal_data, capsys):
    from sparselm.cli import main

    assert main(["info", str(bal_data / P16), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["cameras"], stats["points"], stats["observations"]) == (16, 22106, 83718)
    assert f"{stats['initial_cost']:.6e}" == "4.185660e+06"
    assert stats["covisibility"]["edges"] == 120  # every pair of the 16 cameras shares a point
    assert stats["track_length"]["min"] >= 2


def test_cli_fetch_from_a_mirror_verifies_the_checksum(bal_data, tmp_path, monkeypatch, capsys):
    from sparselm.cli import main

    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "cache"))
    mirror = (bal_data / P21).resolve().as_uri()
    assert main(["datasets", "fetch", "problem-21-11315-pre", "--url", mirror]) == 0
    target = tmp_path / "cache" / "bal" / "trafalgar" / "problem-21-11315-pre.txt.bz2"
    assert target.read_bytes() == (bal_data / P21).read_bytes()
    assert "sha256 verified" in capsys.readouterr().out
    assert main(["datasets", "fetch", "problem-21-11315-pre", "--url", mirror]) == 0
    assert "already in the cache" in capsys.readouterr().out
    # the wrong file from a mirror: checksum error, nothing replaced
    wrong = (bal_data / P16).resolve().as_uri()
    assert main(["datasets", "fetch", "problem-21-11315-pre", "--url", wrong, "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparselm: error: ") and "sha256" in err and len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == (bal_data / P21).read_bytes()
