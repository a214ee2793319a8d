"""Reliability of bundle adjustment end to end: bad BAL files through the command line, numerical faults
and the 7-dof gauge freedom of BA, Ctrl-C sent to a running ``python -m sparselm.cli solve``, and
determinism of the Schur solver across processes.

The reader's own errors (type, file and line of every malformed case) are tested in test_io.py and the
CLI's option handling in tests/cli/test_cli.py; here every kind of bad file goes through ``sparselm solve``
and must give exit status 2 and one line ``sparselm: error: <file>[:<line>]: <reason>``, no traceback.
"""
from __future__ import annotations

import bz2
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import sparselm
from sparselm import cli, models
from sparselm.bal import BALFormatError, build_problem, read_bal, reprojection_errors, synthetic_problem, write_bal
from sparselm.bal.camera import BAL_REPROJECTION
from sparselm.lm.memory import InsufficientMemoryError, MemoryEstimate

from .test_io import VALID_LINES, mutated_files

TIGHT = dict(max_iterations=200, function_tolerance=1e-12)


# -- helpers ---------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_cache_no_traceback(monkeypatch, tmp_path):
    """An empty download cache and no traceback mode (files are always given by path here)."""
    monkeypatch.delenv("SPARSELM_TRACEBACK", raising=False)
    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "cache"))


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("SPARSELM_DATA", "SPARSELM_TRACEBACK")}


def one_line_error(err: str) -> str:
    """The single error line of ``err`` without its 'sparselm: error: ' prefix (fails otherwise)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sparselm: error: "), err
    assert "Traceback" not in err
    return lines[0][len("sparselm: error: "):]


def lines_file(tmp_path: Path, lines, name="p.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def replaced(line_number: int, text: str) -> list:
    lines = list(VALID_LINES)
    lines[line_number - 1] = text
    return lines


def cost_of(problem: sparselm.Problem) -> float:
    return sparselm.solve(problem, max_iterations=0, gradient_tolerance=0.0).initial_cost


def values_of(problem: sparselm.Problem) -> dict:
    return {k: g.values.copy() for k, g in problem.parameter_groups.items()}


# == 1. every kind of bad file through the command line ==========================================================

# (id, file content or a builder, name, expected fragment after "<path>" in the message)
BAD_FILES = [
    ("whitespace-only", " \n\t\n", "p.txt", ": the file is empty"),
    ("empty-bz2", bz2.compress(b""), "p.txt.bz2", ": the file is empty"),
    ("truncated-parameters", VALID_LINES[:-1], "p.txt", ":9: the file is truncated"),
    ("truncated-cameras", VALID_LINES[:6], "p.txt", ":6: the file is truncated"),
    ("extra-trailing-values", VALID_LINES + ["1 2"], "p.txt", ":11: unexpected extra data: 2 value(s)"),
    ("header-says-fewer-observations", replaced(1, "2 3 3"), "p.txt", ":9: unexpected extra data: 4 value(s)"),
    ("header-says-more-points", replaced(1, "2 4 4"), "p.txt", ":10: the file is truncated"),
    ("header-two-numbers", ["2 3"], "p.txt", ":1: header: expected 3 integers"),
    ("header-not-integer", replaced(1, "2 3.0 4"), "p.txt", ":1: header: n_points must be an integer, got '3.0'"),
    ("zero-cameras", replaced(1, "0 3 4"), "p.txt", ":1: header: n_cameras is 0"),
    ("zero-points", replaced(1, "2 0 4"), "p.txt", ":1: header: n_points is 0"),
    ("zero-observations", replaced(1, "2 3 0"), "p.txt", ":1: header: n_observations is 0"),
    ("negative-count", replaced(1, "-2 3 4"), "p.txt", ":1: header: n_cameras is -2"),
    ("non-numeric", replaced(7, "-0.1 0.2 -0.3 -1 2 x3 600 -0.01 0.002"), "p.txt", ":7: camera 1 (tz): 'x3' is not a number"),
    ("negative-index", replaced(3, "-1 0 -3 4"), "p.txt", ":3: observation 1: camera index -1 out of range [0, 2)"),
    ("index-out-of-range", replaced(5, "1 3 7 8"), "p.txt", ":5: observation 3: point index 3 out of range [0, 3)"),
    ("index-not-integer", replaced(4, "0 1.5 5 6"), "p.txt", ":4: observation 2: point index 1.5 is not an integer"),
    ("duplicate-observation", replaced(4, "0 0 5 6"), "p.txt",
     ":4: observations 0 (line 2) and 2 (line 4) both observe point 0 from camera 0"),
    ("nan-value", replaced(9, "3 nan -11"), "p.txt", ":9: point 1 (y) is nan, not a finite number"),
    ("inf-observation", replaced(2, "0 0 inf 2.5"), "p.txt", ":2: observation 0 (x) is inf, not a finite number"),
    ("overflow", replaced(8, "1 2 -1e999"), "p.txt", ":8: point 0 (z) is -inf, not a finite number"),
    ("not-bz2-but-named-so", VALID_LINES, "p.txt.bz2", ": the name ends in .bz2 but the file is not bzip2-compressed"),
    ("binary-garbage", bytes(range(256)) * 4, "p.txt", r":1: header: n_cameras must be an integer, got '\x00\x01"),
]


def _write_case(tmp_path: Path, content, name: str) -> Path:
    path = tmp_path / name
    if isinstance(content, list):
        content = ("\n".join(content) + "\n").encode()
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize("content, name, fragment", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_exit_2_with_one_line_naming_file_and_line(tmp_path, capsys, content, name, fragment):
    path = _write_case(tmp_path, content, name)
    with pytest.raises(BALFormatError) as info:  # the documented exception type of the reader ...
        read_bal(path)
    assert cli.main(["solve", str(path), "-o", str(tmp_path / "out.txt")]) == 2  # ... and the CLI's answer
    captured = capsys.readouterr()
    message = one_line_error(captured.err)
    assert message.startswith(str(path) + fragment), (message, fragment)
    assert message == " ".join(str(info.value).split())  # the reader's message, on one line
    assert captured.out == "" and not (tmp_path / "out.txt").exists()  # nothing solved, nothing written


def test_missing_file_and_directory(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert cli.main(["solve", str(missing)]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert str(missing) in message and "does not exist" in message
    assert cli.main(["info", str(tmp_path)]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert message.startswith(f"{tmp_path} is a directory, not a ") and message.endswith("BAL file")


def test_bad_files_through_python_m_sparselm_cli(tmp_path):
    """The real entry point: exit status 2, one line on stderr, nothing on stdout, no traceback."""
    cases = [(_write_case(tmp_path, replaced(9, "3 inf -11"), "inf.txt"), ":9: point 1 (y) is inf"),
             (_write_case(tmp_path, VALID_LINES, "fake.txt.bz2"), "not bzip2-compressed"),
             (tmp_path / "missing.txt", "does not exist"),
             (tmp_path, "is a directory")]
    for path, fragment in cases:
        proc = subprocess.run([sys.executable, "-m", "sparselm.cli", "solve", str(path)], capture_output=True,
                              text=True, env=clean_env(), timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert fragment in one_line_error(proc.stderr) and proc.stdout == ""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-mutated")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_files())
def test_any_mutated_file_is_solved_or_refused_in_one_line(scratch, capsys, case):
    """Extends test_io's property to the CLI: a mutated valid file is either read and solved (exit 0,
    or 2 with one line if its values make a residual non-finite), or refused with exactly the
    reader's message on one line; never a traceback, never another exit status."""
    data, compress = case
    path = scratch / ("p.txt.bz2" if compress else "p.txt")
    path.write_bytes(bz2.compress(data) if compress else data)
    try:
        read_bal(path)
        reader_error = None
    except BALFormatError as e:
        reader_error = " ".join(str(e).split())
    capsys.readouterr()
    status = cli.main(["solve", str(path), "-q", "--max-iterations", "2"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if reader_error is not None:
        assert status == 2 and one_line_error(captured.err) == reader_error
    else:
        assert status in (0, 2), captured.err
        if status == 2:
            message = one_line_error(captured.err)  # a non-finite residual, or a value or cost out of range
            assert "non-finite" in message or "overflows" in message or "beyond" in message, message


def test_non_finite_residual_at_the_start_through_the_cli(tmp_path, capsys):
    """Point 1 lies in the plane of camera 0 (P_z = 0): a valid file, but the residual is NaN."""
    path = lines_file(tmp_path, ["1 2 2", "0 0 1 1", "0 1 2 2", "0 0 0 0 0 0 500 0 0", "1 1 -5", "1 1 0"])
    assert cli.main(["solve", str(path), "-o", str(tmp_path / "out.txt")]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert message.startswith("residual group 'observations': instance 1 (cameras[0], points[1]) has a non-finite")
    assert not (tmp_path / "out.txt").exists()


def test_insufficient_memory_is_one_line_through_the_cli(tmp_path, capsys, monkeypatch):
    def refuse(problem, options=None, **kwargs):
        raise InsufficientMemoryError(MemoryEstimate("sparse_schur", {"jacobian": 31 * 2**30}), 2**30, "test")

    monkeypatch.setattr(sparselm, "solve", refuse)
    path = write_bal(synthetic_problem(3, 20, seed=1).initial, tmp_path / "p.txt")
    status = cli.main(["solve", str(path)])
    assert status not in (0, 130)
    assert one_line_error(capsys.readouterr().err).startswith("not enough memory for linear solver 'sparse_schur'")


# == 2. Ctrl-C sent to a running command line ===================================================================

def test_sigint_to_a_running_cli_writes_complete_outputs_and_exits_130(tmp_path):
    """SIGINT (what Ctrl-C sends) to ``python -m sparselm.cli solve`` right after iteration 1: exit 130,
    the outputs are complete (a readable BAL file holding a point no worse than the report's final
    cost, a valid JSON report saying 'interrupted'), no temporary file is left, the input is unchanged."""
    problem = synthetic_problem(40, 20000, seed=1, param_noise=0.05).initial
    source = write_bal(problem, tmp_path / "input.txt")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    out, report = tmp_path / "out.txt.bz2", tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "sparselm.cli", "solve", str(source), "-o", str(out),
                             "--report", str(report), "--function-tolerance", "1e-15", "--gradient-tolerance", "0",
                             "--parameter-tolerance", "0", "--max-iterations", "500", "--threads", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            fields = line.split()
            if len(fields) == 10 and fields[0] == "1":
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout = "".join(seen) + rest
    assert proc.returncode == 130, stdout + err
    assert "Traceback" not in err and "interrupted" in err
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt", "out.txt.bz2", "report.json"]
    data = json.loads(report.read_text())
    assert data["termination"] == "interrupted" and data["exit_status"] == 130 and data["ok"] is False
    assert 1 <= data["n_iterations"] < 500 and data["final_cost"] < data["initial_cost"]
    best = read_bal(out)
    assert best.cameras.shape == problem.cameras.shape and best.points.shape == problem.points.shape
    np.testing.assert_array_equal(best.observations, problem.observations)
    assert cost_of(build_problem(best)) == pytest.approx(data["final_cost"], rel=1e-12)


# == 3. gauge freedom (rank deficiency) and numerical faults in BA ===============================================

@pytest.mark.parametrize("linear_solver", ["sparse_schur", "dense_schur", "sparse_normal_cholesky"])
def test_gauge_freedom_is_handled_by_damping(linear_solver):
    """BA's 7-dof gauge freedom makes J^T J singular. With all blocks free LM converges (the damping
    regularises it) to the same minimum as from the ground truth; holding camera 0 constant at that
    minimum's value gives the same cost; holding it at its (perturbed) start value converges too."""
    syn = synthetic_problem(8, 300, seed=3)
    free = build_problem(syn.initial)
    s = sparselm.solve(free, linear_solver=linear_solver, **TIGHT)
    assert s.termination == "convergence" and s.invalid_steps == 0, s.message
    from_truth = build_problem(syn.ground_truth)
    s_truth = sparselm.solve(from_truth, linear_solver=linear_solver, **TIGHT)
    assert s.final_cost == pytest.approx(s_truth.final_cost, rel=1e-8)
    assert s.final_cost < 1e-2 * s.initial_cost

    start = syn.initial.copy()
    start.cameras[0] = free.parameter_groups["cameras"].values[0]
    held = build_problem(start, fix_cameras=[0])
    s_held = sparselm.solve(held, linear_solver=linear_solver, **TIGHT)
    assert s_held.termination == "convergence" and s_held.final_cost == pytest.approx(s.final_cost, rel=1e-8)
    assert held.parameter_groups["cameras"].values[0].tobytes() == start.cameras[0].tobytes()

    held_at_start = build_problem(syn.initial, fix_cameras=[0])
    s_start = sparselm.solve(held_at_start, linear_solver=linear_solver, **TIGHT)
    assert s_start.termination == "convergence" and s.final_cost <= s_start.final_cost < 1e-2 * s.initial_cost


@pytest.mark.parametrize("name, linear_solver", [
    ("dubrovnik-3-7-18-pre", "sparse_schur"), ("dubrovnik-3-7-18-pre", "sparse_normal_cholesky"),
    ("bal-ladybug-problem-49-7776-pre-shrink-1800", "sparse_schur"),
])
def test_gauge_freedom_on_real_files(bal_data, name, linear_solver):
    bal = read_bal(bal_data / "variants" / f"{name}.txt.bz2")
    free = build_problem(bal)
    options = dict(linear_solver=linear_solver, max_iterations=200, function_tolerance=1e-10)
    s = sparselm.solve(free, **options)
    assert s.termination == "convergence" and s.invalid_steps == 0, s.message
    start = bal.copy()
    start.cameras[0] = free.parameter_groups["cameras"].values[0]
    held = build_problem(start, fix_cameras=[0])
    s_held = sparselm.solve(held, **options)
    assert s_held.termination == "convergence"
    # tiny residual problems (the 3-7-18 subset fits exactly) compare in absolute terms
    assert s_held.final_cost == pytest.approx(s.final_cost, rel=1e-6, abs=1e-12 * s.initial_cost)
    held_at_start = build_problem(bal, fix_cameras=[0])
    s_start = sparselm.solve(held_at_start, **options)
    assert s_start.termination == "convergence" and s_start.final_cost < 0.05 * s.initial_cost


@pytest.mark.parametrize("linear_solver, what", [
    ("sparse_schur", "sparse_schur: reduced camera matrix not positive definite"),
    ("dense_schur", "dense_schur: reduced camera matrix not positive definite"),
    ("sparse_normal_cholesky", "CHOLMOD: normal matrix not positive definite"),
])
@pytest.mark.parametrize("fix", [(), [0]], ids=["7-dof", "scale-only"])
def test_gauss_newton_on_the_gauge_freedom_fails_cleanly(linear_solver, what, fix):
    """Undamped, the gauge makes S / J^T J singular (also with one camera held: the scale is still free).
    Whether the Cholesky factorization reports it or factors a matrix regularised by round-off depends
    on the CPU's floating-point path, so this asserts what is promised on any CPU: a clean end (a
    failure after the invalid-step limit with the factorization's message, or a normal end with a
    message), every iteration an invalid, rejected or accepted step, the best point kept and returned
    (never a cost above the start), and a final cost that is the cost at the returned point."""
    syn = synthetic_problem(8, 300, seed=3)
    p = build_problem(syn.initial, fix_cameras=fix)
    before = values_of(p)
    s = sparselm.solve(p, damping="gauss_newton", linear_solver=linear_solver, max_consecutive_invalid_steps=3)
    assert s.termination in ("failure", "no_convergence", "convergence") and s.message
    if s.termination == "failure":
        assert s.message == f"4 consecutive invalid steps (last: {what}).", s.message
        assert s.invalid_steps >= 4
    # bookkeeping: every iteration is an invalid step, a rejected one or an accepted one
    steps = s.iterations[1:]
    assert s.successful_steps + s.unsuccessful_steps == s.n_iterations == len(steps)
    assert s.invalid_steps == sum(not it.step_is_valid for it in steps) <= s.unsuccessful_steps
    assert s.successful_steps == sum(it.step_is_successful for it in steps)
    # no wrong answer: never above the start, the reported cost is the cost at the returned point
    assert s.final_cost <= s.initial_cost
    errors = reprojection_errors(p)
    assert s.final_cost == pytest.approx(0.5 * float(errors @ errors), rel=1e-12)
    if s.successful_steps == 0:  # the best point is the start, unchanged
        for k in before:
            assert p.parameter_groups[k].values.tobytes() == before[k].tobytes()


@pytest.mark.parametrize("linear_solver", ["dense", "sparse_normal_cholesky"])
def test_trial_point_in_the_camera_plane_is_a_rejected_step(linear_solver):
    """A point on the optical axis at depth 1, pulled by a prior towards depth 0: with a huge trust
    radius the first Levenberg steps land exactly on P_z = 0, where the projection is 0/0 = NaN. Each
    is an unsuccessful step (ratio -inf), the radius shrinks, the next step stops just short of the
    plane and the solve converges at a finite cost."""
    p = sparselm.Problem()
    p.add_parameter_group("cameras", [[0, 0, 0, 0, 0, 0, 500, 0, 0.0]], constant=[0])
    p.add_parameter_group("points", [[0.0, 0.0, -1.0]], eliminate=True)
    p.add_residual_group("obs", BAL_REPROJECTION, [("cameras", [0]), ("points", [0])], [[0.0, 0.0]])
    p.add_residual_group("prior", models.prior(3), [("points", [0])], [[0.0, 0.0, 0.0]])
    s = sparselm.solve(p, damping="levenberg", initial_trust_region_radius=1e16, linear_solver=linear_solver)
    plane_hits = [it for it in s.iterations[1:] if it.tr_ratio == -math.inf]
    assert len(plane_hits) >= 1 and all(it.step_norm == 1.0 and not it.step_is_successful for it in plane_hits)
    assert s.invalid_steps == 0 and s.unsuccessful_steps == len(plane_hits)
    assert s.termination == "convergence" and s.successful_steps >= 1
    z = p.parameter_groups["points"].values[0, 2]
    assert -1e-12 < z < 0.0  # in front of the camera, just short of its plane
    assert math.isfinite(s.final_cost) and s.final_cost < 1e-20


# == 4. determinism of the Schur solver ===================================================================

_BA_SOLVE = textwrap.dedent("""
    import numpy as np
    import sparselm
    from sparselm.bal import build_problem, synthetic_problem
    p = build_problem(synthetic_problem(20, 3000, {per_point}, seed=4, param_noise=0.03).initial)
    s = sparselm.solve(p, linear_solver={solver!r}, threads=2, max_iterations=15, function_tolerance=1e-14)
    assert s.options_used["threads"] == 2
    assert s.linear_solver.get("elimination") in (None, {elimination!r}), s.linear_solver
    np.savez({out!r}, costs=np.array([it.cost for it in s.iterations]),
             cameras=p.parameter_groups["cameras"].values, points=p.parameter_groups["points"].values)
""")


#: (linear solver, observations per point, dense_schur's elimination): with 16 the points see most of the
#: 20 cameras, and dense_schur takes its stacked elimination
BITWISE_CASES = [("dense_schur", 4.0, "cell_pairs"), ("dense_schur", 16.0, "stacked"), ("sparse_schur", 4.0, None),
                 ("iterative_schur", 4.0, None), ("sparse_normal_cholesky", 4.0, None)]


@pytest.mark.parametrize("linear_solver, per_point, elimination", BITWISE_CASES)
def test_ba_solves_are_bitwise_identical_across_processes_and_in_process(tmp_path, linear_solver, per_point,
                                                                         elimination):
    """The first process compiles the kernels into an empty numba cache, the second loads them from it
    (the case a warm cache hides: a compiling process once ended a few ulps away), then this one."""
    runs = []
    env = dict(clean_env(), NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    for k in range(2):
        out = str(tmp_path / f"run{k}.npz")
        script = _BA_SOLVE.format(solver=linear_solver, out=out, per_point=per_point, elimination=elimination)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
        runs.append(dict(np.load(out)))
    for _ in range(2):  # and twice in this process
        p = build_problem(synthetic_problem(20, 3000, per_point, seed=4, param_noise=0.03).initial)
        s = sparselm.solve(p, linear_solver=linear_solver, threads=2, max_iterations=15, function_tolerance=1e-14)
        runs.append({"costs": np.array([it.cost for it in s.iterations]),
                     "cameras": p.parameter_groups["cameras"].values, "points": p.parameter_groups["points"].values})
    assert len(runs[0]["costs"]) > 5
    for run in runs[1:]:
        for name in ("costs", "cameras", "points"):
            assert run[name].tobytes() == runs[0][name].tobytes(), name
