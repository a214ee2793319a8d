"""The ``sparselm`` command line: through ``python -m sparselm.cli`` (subprocess) and ``main(argv)``.

Fast: the built-in default problem, small synthetic files written to tmp_path, and (when
$SPARSELM_DATA is set) the small variants under variants/.
"""
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import sparselm
from sparselm import cli
from sparselm.bal import format as bal_format
from sparselm.cli import common as cli_common
from sparselm.cli import solve as cli_solve
from sparselm.cli.main import COMMANDS, build_parser
from sparselm.bal import (BALProblem, build_problem, default_problem, list_datasets, read_bal, reprojection_errors,
                          synthetic_problem, write_bal)
from sparselm.bal.camera import project
from sparselm.cli import main

REPORT_KEYS = {"schema_version", "sparselm_version", "command", "input", "output", "problem", "initial_cost",
               "final_cost", "initial_rms_px", "final_rms_px", "iterations", "n_iterations", "successful_steps",
               "unsuccessful_steps", "invalid_steps", "termination", "message", "ok", "exit_status",
               "total_time_s", "setup_time_s", "phases", "linear_solver", "options_given", "options_used",
               "environment"}
ITERATION_KEYS = {"iteration", "cost", "cost_change", "gradient_max_norm", "step_norm", "tr_ratio", "tr_radius",
                  "linear_solver_iterations", "iteration_time_s", "total_time_s", "step_is_successful",
                  "step_is_valid"}


# -- helpers ----------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No $SPARSELM_DATA, an empty download cache, no traceback mode."""
    monkeypatch.delenv("SPARSELM_DATA", raising=False)
    monkeypatch.delenv("SPARSELM_TRACEBACK", raising=False)
    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "cache"))


def run_cli(*args, env_extra=None, timeout=300):
    """Run ``python -m sparselm.cli ARGS`` in a clean environment; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARSELM_DATA", "SPARSELM_TRACEBACK")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "sparselm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def cost_of(path) -> float:
    """Cost of a BAL file (1/2 sum of squared pixel errors), by the solver's own evaluation."""
    return sparselm.solve(build_problem(read_bal(path)), max_iterations=0).initial_cost


def table_rows(text: str):
    """(iteration, cost) of each row of the iteration table in ``text``."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 10 and f[0].isdigit():
            rows.append((int(f[0]), float(f[1])))
    return rows


def assert_one_line_error(err: str, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sparselm: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


@pytest.fixture
def small_file(tmp_path) -> Path:
    """A small synthetic BAL file (4 cameras, 60 points)."""
    return write_bal(synthetic_problem(4, 60, seed=2).initial, tmp_path / "small.txt")


@pytest.fixture
def variants() -> Path:
    """$SPARSELM_DATA/variants (skips without $SPARSELM_DATA; fails instead when SPARSELM_REQUIRE_DATA=1)."""
    folder = os.environ.get("SPARSELM_DATA") or os.environ.get("_SPARSELM_DATA_FOR_TESTS")
    if not folder:
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail("SPARSELM_DATA is not set (and SPARSELM_REQUIRE_DATA=1)")
        pytest.skip("SPARSELM_DATA is not set: no BAL variants to test against")
    return Path(folder) / "variants"


# Read $SPARSELM_DATA before the autouse fixture removes it from the environment.
if os.environ.get("SPARSELM_DATA"):
    os.environ["_SPARSELM_DATA_FOR_TESTS"] = os.environ["SPARSELM_DATA"]


# -- solve: the built-in problem ---------------------------------------------------------------------

def test_no_argument_solve_prints_a_converging_table_and_writes_outputs(tmp_path):
    out, report = tmp_path / "solution.txt.bz2", tmp_path / "report.json"
    proc = run_cli("solve", "--output", out, "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    text = proc.stdout
    assert "no file given: solving the built-in synthetic problem (16 cameras, 2000 points" in text
    assert "threads" in text and "linear solver auto" in text
    assert "iter          cost" in text  # the table header
    rows = table_rows(text)
    assert [r[0] for r in rows] == list(range(len(rows))) and len(rows) >= 3
    costs = [c for _, c in rows]
    assert all(b <= a for a, b in zip(costs, costs[1:])) and costs[-1] < 0.01 * costs[0]
    assert "Termination: CONVERGENCE" in text
    assert "sparselm solver report" in text and f"wrote the solution to {out}" in text

    data = json.loads(report.read_text())
    assert REPORT_KEYS <= set(data)
    assert data["input"] == "built-in" and data["output"] == str(out)
    assert data["termination"] == "convergence" and data["ok"] is True and data["exit_status"] == 0
    assert data["problem"]["cameras"] == 16 and data["problem"]["points"] == 2000
    assert data["problem"]["observations"] == default_problem().n_observations
    assert data["problem"]["parameters"] == 16 * 9 + 2000 * 3
    assert len(data["iterations"]) == data["n_iterations"] + 1 == len(rows)
    for rec in data["iterations"]:
        assert ITERATION_KEYS <= set(rec)
    assert [r["cost"] for r in data["iterations"]] == pytest.approx(costs, rel=1e-6)
    assert data["final_cost"] == data["iterations"][-1]["cost"]
    assert data["successful_steps"] + data["unsuccessful_steps"] == data["n_iterations"]
    assert "jacobian" in data["phases"] and {"seconds", "calls"} <= set(data["phases"]["jacobian"])
    assert data["options_used"]["linear_solver"] != "auto" and data["options_given"]["linear_solver"] == "auto"
    assert data["final_rms_px"] < data["initial_rms_px"]

    bal = read_bal(out)
    assert (bal.n_cameras, bal.n_points) == (16, 2000)
    assert cost_of(out) == pytest.approx(data["final_cost"], rel=1e-12)
    errors = reprojection_errors(bal)
    assert np.sqrt(np.mean(errors ** 2)) == pytest.approx(data["final_rms_px"], rel=1e-12)


def test_main_quiet_prints_only_the_brief_report(capsys):
    assert main(["solve", "-q"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparselm: CONVERGENCE:")
    assert captured.err == ""


def test_main_verbose_adds_the_environment(capsys):
    assert main(["solve", "-v", "--max-iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "Environment" in out and "numba_threads" in out and "Options used" in out
    assert "Termination: NO_CONVERGENCE" in out and len(table_rows(out)) == 3


def test_plain_and_compressed_outputs_round_trip(tmp_path, small_file, capsys):
    for name in ("out.txt", "out.txt.bz2"):
        report = tmp_path / (name + ".json")
        assert main(["solve", str(small_file), "-q", "-o", str(tmp_path / name), "--report", str(report)]) == 0
        data = json.loads(report.read_text())
        assert data["input"] == str(small_file.resolve())
        assert cost_of(tmp_path / name) == pytest.approx(data["final_cost"], rel=1e-12)
    assert (tmp_path / "out.txt.bz2").read_bytes()[:3] == b"BZh"
    assert read_bal(tmp_path / "out.txt").cameras.tolist() == read_bal(tmp_path / "out.txt.bz2").cameras.tolist()


def test_solver_options_reach_the_solver(tmp_path, small_file):
    report = tmp_path / "r.json"
    assert main(["solve", str(small_file), "-q", "--linear-solver", "sparse_normal_cholesky", "--max-iterations", "3",
                 "--function-tolerance", "1e-12", "--threads", "1", "--damping", "levenberg", "--ordering", "amd",
                 "--max-time", "100", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    used = data["options_used"]
    assert used["linear_solver"] == "sparse_normal_cholesky" and used["max_iterations"] == 3
    assert used["function_tolerance"] == 1e-12 and used["threads"] == 1 and used["damping"] == "levenberg"
    assert used["max_time_s"] == 100 and data["n_iterations"] <= 3


def test_fix_first_camera_and_intrinsics(tmp_path, small_file):
    out = tmp_path / "out.txt"
    assert main(["solve", str(small_file), "-q", "--fix-first-camera", "--fix-intrinsics", "-o", str(out)]) == 0
    before, after = read_bal(small_file), read_bal(out)
    assert np.array_equal(after.cameras[0], before.cameras[0])
    assert np.array_equal(after.cameras[:, 6:9], before.cameras[:, 6:9])
    assert np.all(after.cameras[1:, :6] != before.cameras[1:, :6])


def test_sigma_and_loss(tmp_path, small_file):
    plain, weighted, robust = (tmp_path / f"{n}.json" for n in ("plain", "weighted", "robust"))
    assert main(["solve", str(small_file), "-q", "--max-iterations", "0", "--report", str(plain)]) == 0
    assert main(["solve", str(small_file), "-q", "--max-iterations", "0", "--sigma", "2", "--report",
                 str(weighted)]) == 0
    c0 = json.loads(plain.read_text())["initial_cost"]
    assert json.loads(weighted.read_text())["initial_cost"] == pytest.approx(c0 / 4, rel=1e-12)
    assert main(["solve", str(small_file), "-q", "--loss", "huber", "--loss-scale", "2", "--report", str(robust)]) == 0
    data = json.loads(robust.read_text())
    assert data["problem"]["residual_groups"]["observations"]["loss"] == "huber"
    assert data["initial_cost"] < c0 and data["ok"]


# -- solve: errors and refusals -----------------------------------------------------------------------

def test_bad_file_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3 4\n0 0 1.5 2.5\n1 0 abc 4\n")
    proc = run_cli("solve", bad)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, f"{bad}:3:", "'abc' is not a number")
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize("content, where", [
    (b"", "the file is empty"),
    (b"1 1 1\n0 0 1 2\n", ":2: the file is truncated"),
    (b"BZh91AY&SY garbage", "corrupt bzip2 data"),
])
def test_malformed_files(tmp_path, capsys, content, where):
    path = tmp_path / "p.txt"
    path.write_bytes(content)
    assert main(["solve", str(path)]) == 2
    assert_one_line_error(capsys.readouterr().err, str(path), where)


def test_unknown_dataset_name_is_a_clean_error(capsys):
    proc = run_cli("solve", "no-such-problem")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "'no-such-problem' not found", "not an official BAL problem")
    assert main(["solve", "problem-16-22106"]) == 2  # close to an official name
    assert_one_line_error(capsys.readouterr().err, "did you mean problem-16-22106-pre")
    assert main(["info", "problem-16-22106-pre"]) == 2  # official, but not downloaded
    assert_one_line_error(capsys.readouterr().err, "sparselm datasets fetch problem-16-22106-pre")


def test_a_directory_is_not_a_problem(tmp_path, capsys):
    assert main(["solve", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "is a directory")


def test_refuses_to_overwrite_the_input(tmp_path, small_file, capsys):
    original = small_file.read_bytes()
    for flag in ("--output", "--report"):
        assert main(["solve", str(small_file), "-q", flag, str(small_file)]) == 2
        assert_one_line_error(capsys.readouterr().err, "refusing to write", "--force")
        assert small_file.read_bytes() == original
    # through another name of the same file
    link = tmp_path / "link.txt"
    link.symlink_to(small_file)
    assert main(["solve", str(small_file), "-q", "-o", str(link)]) == 2
    assert small_file.read_bytes() == original
    capsys.readouterr()
    before = cost_of(small_file)
    assert main(["solve", str(small_file), "-q", "-o", str(small_file), "--force"]) == 0
    assert small_file.read_bytes() != original
    assert cost_of(small_file) < 0.1 * before


def test_output_problems_are_found_before_solving(tmp_path, small_file, capsys):
    assert main(["solve", str(small_file), "-o", str(tmp_path / "missing" / "x.txt")]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, "does not exist")
    assert "iter" not in captured.out  # nothing was solved
    same = tmp_path / "same.json"
    assert main(["solve", str(small_file), "-o", str(same), "--report", str(same)]) == 2
    assert_one_line_error(capsys.readouterr().err, "same file")
    assert main(["solve", str(small_file), "-o", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "is a directory")


@pytest.mark.parametrize("args, fragment", [
    (["--max-iterations", "-1"], "max_iterations"),
    (["--threads", "0"], "threads"),
    (["--function-tolerance", "-1"], "function_tolerance"),
    (["--max-time", "0"], "max_time_s"),
    (["--sigma", "0"], "--sigma"),
    (["--loss", "huber", "--loss-scale", "-2"], "--loss-scale"),
])
def test_bad_option_values(capsys, args, fragment):
    assert main(["solve", *args]) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_argparse_errors_exit_2(capsys):
    assert main(["solve", "--linear-solver", "bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["solve", "--max-iterations", "many"]) == 2
    assert main(["solve", "-q", "-v"]) == 2
    assert main(["no-such-command"]) == 2


def test_non_finite_residual_at_the_start(tmp_path, capsys):
    # a point in the camera's plane (P_z = 0): the projection divides by zero
    path = tmp_path / "plane.txt"
    path.write_text("1 2 2\n0 0 1 1\n0 1 2 2\n" + "0 0 0 0 0 0 500 0 0\n" + "1 1 -5\n1 1 0\n")
    assert main(["solve", str(path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "non-finite", "instance 1")


def test_traceback_mode_reraises(tmp_path, small_file):
    with pytest.raises(ValueError):
        main(["--traceback", "solve", str(small_file), "--max-iterations", "-1"])


# -- solve: interruption, failure, progress ---------------------------------------------------------

def _patched_solve(monkeypatch, after):
    """Make the CLI's first solve call ``after(summary)`` / its callbacks; later solves are untouched."""
    real = sparselm.solve
    calls = []

    def solve(problem, options=None, **kwargs):
        calls.append(options)
        if len(calls) == 1:
            return after(real, problem, options)
        return real(problem, options, **kwargs)

    monkeypatch.setattr(sparselm, "solve", solve)
    return calls


def test_ctrl_c_during_the_solve_writes_the_best_point_and_exits_130(monkeypatch, tmp_path, capsys):
    def interrupt_at_iteration_2(real, problem, options):
        def callback(record):
            if record.iteration == 2:
                raise KeyboardInterrupt
            return False

        options.callbacks.append(callback)
        return real(problem, options)

    _patched_solve(monkeypatch, interrupt_at_iteration_2)
    out, report = tmp_path / "best.txt", tmp_path / "r.json"
    assert main(["solve", "-o", str(out), "--report", str(report)]) == 130
    captured = capsys.readouterr()
    assert "INTERRUPTED" in captured.out and "interrupted" in captured.err and "Traceback" not in captured.err
    data = json.loads(report.read_text())
    assert data["termination"] == "interrupted" and data["exit_status"] == 130 and data["ok"] is False
    assert data["n_iterations"] == 2 and data["final_cost"] < data["initial_cost"]
    assert cost_of(out) == pytest.approx(data["final_cost"], rel=1e-12)


def test_ctrl_c_outside_the_solve_exits_130(monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bal_format, "read_bal", interrupt)
    monkeypatch.setattr(cli_common.registry, "resolve", lambda name: Path(name))
    assert main(["info", __file__]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_solver_failure_exits_1_and_still_writes(monkeypatch, tmp_path, capsys):
    def fail(real, problem, options):
        summary = real(problem, options)
        summary.termination, summary.message = "failure", "6 consecutive invalid steps."
        return summary

    _patched_solve(monkeypatch, fail)
    out, report = tmp_path / "best.txt", tmp_path / "r.json"
    assert main(["solve", "-q", "-o", str(out), "--report", str(report)]) == 1
    assert_one_line_error(capsys.readouterr().err, "the solver failed: 6 consecutive invalid steps.")
    assert json.loads(report.read_text())["exit_status"] == 1 and read_bal(out).n_cameras == 16


def test_progress_line_is_throttled_and_erased():
    now = [0.0]
    stream = io.StringIO()
    progress = cli_solve.ProgressLine(stream, interval=2.0, clock=lambda: now[0])
    rec = types.SimpleNamespace(iteration=1, cost=123.5, total_time_s=0.4)
    line = "sparselm: iteration 2, cost 1.235000e+02, 2.5 s elapsed"
    assert progress(rec) is False and stream.getvalue() == ""  # nothing before 2 s
    now[0] = 2.5
    rec.iteration, rec.total_time_s = 2, 2.5
    assert progress(rec) is False
    assert stream.getvalue() == "\r" + line
    now[0] = 3.0
    progress(rec)  # within 2 s of the last line: nothing
    assert stream.getvalue().count("\r") == 1
    progress.close()
    assert stream.getvalue().endswith("\r" + " " * len(line) + "\r")


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("args, stdout_tty, expect", [
    (["-q"], False, True),  # quiet on a terminal: progress instead of the table
    ([], False, True),  # table redirected to a file, stderr on the terminal
    ([], True, False),  # table on the terminal: no progress line
    (["-q", "--no-progress"], False, False),
])
def test_progress_on_a_terminal(monkeypatch, args, stdout_tty, expect):
    monkeypatch.setattr(cli_solve, "PROGRESS_INTERVAL_S", 0.0)
    err, out = _TTY(), (_TTY() if stdout_tty else io.StringIO())
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["solve", *args]) == 0
    assert ("\rsparselm: iteration 1, cost " in err.getvalue()) == expect
    assert "Traceback" not in err.getvalue()


# -- info -------------------------------------------------------------------------------------------

def designed_problem() -> BALProblem:
    """4 cameras, 4 points with known tracks: p0 {c0, c1}, p1 {c1, c2}, p2 {c0, c1, c2}, p3 {c3};
    every observation 5 px (3, 4) away from its projection."""
    base = synthetic_problem(4, 4, seed=0).initial
    ci = np.array([0, 1, 1, 2, 0, 1, 2, 3])
    pi = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    obs = project(base.cameras, base.points, ci, pi) + np.array([3.0, 4.0])
    return BALProblem(base.cameras, base.points, ci, pi, obs, "designed")


def test_problem_statistics_of_a_designed_problem():
    s = bal_format.statistics(designed_problem())
    assert (s["cameras"], s["points"], s["observations"], s["parameters"], s["residuals"]) == (4, 4, 8, 48, 16)
    assert s["observations_per_camera"] == {"min": 1, "median": 2.0, "max": 3}
    assert s["track_length"] == {"min": 1, "median": 2.0, "max": 3}
    assert s["points_seen_once_or_never"] == 1 and s["cameras_without_observations"] == 0
    c = s["covisibility"]
    assert c["edges"] == 3 and c["possible_edges"] == 6 and c["connected_components"] == 2
    assert c["degree"] == {"min": 0, "median": 2.0, "max": 2}
    assert s["initial_cost"] == pytest.approx(0.5 * 8 * 25, rel=1e-9)
    assert s["rms_reprojection_error_px"] == pytest.approx(5.0, rel=1e-9)


def test_info_text_and_json(tmp_path, capsys):
    path = write_bal(designed_problem(), tmp_path / "designed.txt")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for fragment in ("cameras                   4", "points                    4", "observations              8",
                     "parameters                48", "residuals                 16",
                     "observations per camera   min 1, median 2, max 3", "track length (per point)  min 1, median 2",
                     "3 edges of 6 possible", "degree min 0, median 2, max 2", "2 connected components",
                     "initial cost              1.000000e+02", "RMS reprojection error    5 px"):
        assert fragment in out, fragment
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input"] == str(path.resolve()) and data["covisibility"]["edges"] == 3


def test_info_built_in_matches_the_solver(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input"] == "built-in" and data["cameras"] == 16 and data["points"] == 2000
    solver_cost = sparselm.solve(build_problem(default_problem()), max_iterations=0).initial_cost
    assert data["initial_cost"] == pytest.approx(solver_cost, rel=1e-12)


def test_info_finds_a_file_by_name_in_sparselm_data(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data" / "nested"
    folder.mkdir(parents=True)
    write_bal(designed_problem(), folder / "my-problem.txt.bz2")
    monkeypatch.setenv("SPARSELM_DATA", str(tmp_path / "data"))
    assert main(["info", "my-problem", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == str(folder / "my-problem.txt.bz2")


# -- datasets ---------------------------------------------------------------------------------------

def test_datasets_list_marks_local_files(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    (data / "dubrovnik").mkdir(parents=True)
    (data / "dubrovnik" / "problem-16-22106-pre.txt.bz2").write_bytes(b"")
    (data / "problem-49-7776-pre.txt").write_bytes(b"")
    monkeypatch.setenv("SPARSELM_DATA", str(data))
    assert main(["datasets", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "family", "cameras", "points", "local"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert len(rows) == len(list_datasets())
    assert rows["problem-16-22106-pre"] == ["problem-16-22106-pre", "dubrovnik", "16", "22106", "yes"]
    assert rows["problem-49-7776-pre"][-1] == "yes" and rows["problem-21-11315-pre"][-1] == "-"
    assert "2 found locally" in lines[-1]
    assert main(["datasets", "list", "--family", "ladybug", "--paths"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:-1]
    assert lines and all(line.split()[1] == "ladybug" for line in lines)
    assert any(line.endswith(str(data / "problem-49-7776-pre.txt")) for line in lines)


def test_datasets_list_unknown_family(capsys):
    assert main(["datasets", "list", "--family", "atlantis"]) == 2
    assert_one_line_error(capsys.readouterr().err, "unknown family 'atlantis'", "dubrovnik")


def test_datasets_fetch_errors_are_clean(tmp_path, capsys):
    assert main(["datasets", "fetch", "problem-1-2-3"]) == 2
    assert_one_line_error(capsys.readouterr().err, "not an official BAL problem")
    # nothing listens on the discard port: the connection is refused at once
    assert main(["datasets", "fetch", "problem-16-22106-pre", "--url", "http://127.0.0.1:9/x.bz2"]) == 2
    assert_one_line_error(capsys.readouterr().err, "could not download problem-16-22106-pre from http://127.0.0.1:9")
    assert main(["datasets", "fetch", "problem-16-22106-pre", "--url", (tmp_path / "none.bz2").as_uri()]) == 2
    assert_one_line_error(capsys.readouterr().err, "could not download")
    wrong = tmp_path / "wrong.bz2"
    wrong.write_bytes(b"not the problem")
    assert main(["datasets", "fetch", "problem-16-22106-pre", "--url", wrong.as_uri()]) == 2
    assert_one_line_error(capsys.readouterr().err, "sha256", "discarded")
    assert not list((tmp_path / "cache").rglob("*.bz2"))  # nothing left behind


def test_datasets_without_action_prints_help(capsys):
    assert main(["datasets"]) == 2
    assert "list" in capsys.readouterr().err


# -- help, version, structure ----------------------------------------------------------------------

def test_help_of_every_command(capsys):
    proc = run_cli("--help")
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("solve", "info", "datasets"))
    expected = {
        ("solve",): ["FILE_OR_NAME", "--linear-solver", "--max-iterations", "--max-time", "--function-tolerance",
                     "--threads", "--ordering", "--damping", "--fix-first-camera", "--fix-intrinsics", "--loss",
                     "--loss-scale", "--output", "--report", "--force", "--verbose", "--quiet", "built-in",
                     "Exit status"],
        ("info",): ["FILE_OR_NAME", "co-visibility", "--json"],
        ("datasets",): ["list", "fetch", "SPARSELM_DATA"],
        ("datasets", "list"): ["--family", "locally"],
        ("datasets", "fetch"): ["NAME", "--force", "sha256"],
    }
    for command, fragments in expected.items():
        assert main([*command, "--help"]) == 0
        out = capsys.readouterr().out
        for fragment in fragments:
            assert fragment in out, (command, fragment)


def test_no_command_prints_usage_and_exits_2():
    proc = run_cli()
    assert proc.returncode == 2 and "usage: sparselm" in proc.stderr


def test_version(capsys):
    assert main(["--version"]) == 0
    assert sparselm.__version__ in capsys.readouterr().out


def test_report_keys_are_documented():
    for key in REPORT_KEYS:
        assert f"``{key}``" in cli.__doc__, key


def test_every_command_module_registers_its_command(capsys):
    """The parser has exactly the commands of COMMANDS, each dispatching to its own module's handler."""
    parser = build_parser()
    for module, argv in zip(COMMANDS, (["solve"], ["info"], ["datasets", "list"], ["profile"], ["doctor"])):
        func = parser.parse_args(argv).func
        assert func.__module__ == module.__name__, (argv, func)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("solve", "info", "datasets", "profile", "doctor"):
        assert command in out


# -- the small real variants ($SPARSELM_DATA) -----------------------------------------------------------

def test_variants_solve_and_info(variants, tmp_path, monkeypatch, capsys):
    report = tmp_path / "r.json"
    shrink = variants / "bal-ladybug-problem-49-7776-pre-shrink-1800.txt.bz2"
    assert main(["solve", str(shrink), "-q", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["ok"] and data["problem"]["cameras"] == 49 and data["problem"]["observations"] == 10863
    assert data["final_cost"] < 0.1 * data["initial_cost"]
    monkeypatch.setenv("SPARSELM_DATA", str(variants.parent))
    capsys.readouterr()
    assert main(["info", "dubrovnik-3-7-pre", "--json"]) == 0  # found by name under $SPARSELM_DATA
    stats = json.loads(capsys.readouterr().out)
    assert (stats["cameras"], stats["points"], stats["observations"]) == (3, 7, 19)
    assert main(["solve", "dubrovnik-1-1-pre", "-q", "--max-iterations", "5"]) == 0
    assert main(["solve", "dubrovnik-3-7-18-pre", "-q", "-o", str(tmp_path / "s.txt")]) == 0
    assert read_bal(tmp_path / "s.txt").n_observations == 18
