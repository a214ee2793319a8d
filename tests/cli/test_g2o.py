"""``sparselm solve`` / ``sparselm info`` on g2o files: the format is recognised, the table and the
report print, the solution and the report are written; every malformed case exits 2 with one line
naming the file and line, no traceback and no output file."""
import json
import os
import subprocess
import sys

import pytest

from sparselm.cli import main
from sparselm.g2o import graph_error, read_g2o

GRAPH = """VERTEX_SE2 0 0 0 0
VERTEX_SE2 1 1.1 0.1 0.25
VERTEX_SE2 2 2.0 0.3 0.35
VERTEX_SE2 3 2.9 0.2 0.6
EDGE_SE2 0 1 1 0 0.2 100 0 0 100 0 400
EDGE_SE2 1 2 1 0.1 0.2 100 0 0 100 0 400
EDGE_SE2 2 3 1 0 0.2 100 0 0 100 0 400
EDGE_SE2 0 3 3 0.3 0.6 50 0 0 50 0 200
"""
VERTICES = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\n"

MALFORMED = [
    ("wrong-field-count", VERTICES + "EDGE_SE2 0 1 1 0 0 1 0 0 1 0\n", 3, "needs 11 values after the tag, got 10"),
    ("not-a-number", VERTICES + "EDGE_SE2 0 1 1 zero 0 1 0 0 1 0 1\n", 3, "field 4 ('zero') is not a number"),
    ("non-finite", VERTICES + "EDGE_SE2 0 1 1 0 nan 1 0 0 1 0 1\n", 3, "field 5 is not finite"),
    ("unknown-vertex", VERTICES + "EDGE_SE2 0 9 1 0 0 1 0 0 1 0 1\n", 3, "unknown vertex id 9"),
    ("not-spd", VERTICES + "EDGE_SE2 0 1 1 0 0 1 0 0 -1 0 1\n", 3, "not positive definite"),
    ("zero-quaternion", "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 0 0\n", 2,
     "quaternion has zero norm"),
    ("duplicate-vertex", VERTICES + "VERTEX_SE2 1 2 0 0\n", 3, "duplicate vertex id 1"),
    ("unknown-tag", VERTICES + "EDGE_SE2_XY 0 1 1 0\n", 3, "unknown record 'EDGE_SE2_XY'"),
]


def _one_line(err: str, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sparselm: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


@pytest.mark.parametrize("name, text, line, reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_g2o_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, name, text, line, reason):
    path = tmp_path / f"{name}.g2o"
    path.write_text(text)
    out, report = tmp_path / "out.g2o", tmp_path / "report.json"
    assert main(["solve", str(path), "-o", str(out), "--report", str(report)]) == 2
    _one_line(capsys.readouterr().err, f"{path}:{line}:", reason)
    assert not out.exists() and not report.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert main(["info", str(path)]) == 2
    _one_line(capsys.readouterr().err, f"{path}:{line}:", reason)


def test_malformed_g2o_through_a_real_process_has_no_traceback(tmp_path):
    path = tmp_path / "bad.g2o"
    path.write_text(MALFORMED[1][1])
    env = {k: v for k, v in os.environ.items() if k != "SPARSELM_TRACEBACK"}
    proc = subprocess.run([sys.executable, "-m", "sparselm.cli", "solve", str(path), "-o", str(tmp_path / "o.g2o")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    _one_line(proc.stderr, f"{path}:3:", "is not a number")
    assert not (tmp_path / "o.g2o").exists()


def test_solve_writes_the_solution_and_the_report(tmp_path, capsys):
    path = tmp_path / "small.g2o"
    path.write_text(GRAPH)
    out, report = tmp_path / "solved.g2o", tmp_path / "report.json"
    assert main(["solve", str(path), "-o", str(out), "--report", str(report), "--function-tolerance", "1e-12"]) == 0
    printed = capsys.readouterr().out
    assert "vertices 4, edges 4, loop_closures 1" in printed
    assert "iter" in printed and "cost_change" in printed  # the iteration table
    assert "on se2 (tangent 3)" in printed
    data = json.loads(report.read_text())
    solved = read_g2o(out)
    assert data["final_cost"] == pytest.approx(graph_error(solved), rel=1e-9)
    assert data["final_cost"] < data["initial_cost"] == pytest.approx(graph_error(read_g2o(path)), rel=1e-12)
    assert data["problem"]["free_parameters"] == 9
    # the format's solver defaults: a near-Gauss-Newton start, CHOLMOD's choice of factorization
    assert data["options_used"]["initial_trust_region_radius"] == 1e8
    assert data["options_used"]["factorization"] == "auto"
    assert solved.poses[0].tolist() == [0.0, 0.0, 0.0]


def test_info_describes_the_graph(tmp_path, capsys):
    path = tmp_path / "small.g2o"
    path.write_text(GRAPH)
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "vertices                  4" in text
    assert "4 (3 odometry, 1 loop closures" in text
    assert "degree (edges per vertex) min 2, median 2, max 2" in text
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["loop_closures"] == 1 and data["connected_components"] == 1


def test_real_file_solves_from_the_command_line(tmp_path, capsys, g2o_file):
    report = tmp_path / "r.json"
    assert main(["solve", str(g2o_file("smallGrid3D")), "-q", "--report", str(report), "--function-tolerance",
                 "1e-10"]) == 0
    assert json.loads(report.read_text())["final_cost"] <= 5.179253e+02 * (1 + 1e-6)


def test_profile_reads_a_g2o_file(tmp_path, capsys):
    path = tmp_path / "small.g2o"
    path.write_text(GRAPH)
    assert main(["profile", str(path)]) == 0
    text = capsys.readouterr().out
    assert "se2_between" in text and "CONVERGENCE" in text


def test_robust_loss_applies_and_camera_options_are_refused(tmp_path, capsys):
    path = tmp_path / "small.g2o"
    path.write_text(GRAPH)
    report = tmp_path / "r.json"
    assert main(["solve", str(path), "-q", "--loss", "cauchy", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["problem"]["residual_groups"]["between"]["loss"] == "cauchy"
    capsys.readouterr()
    assert main(["solve", str(path), "--sigma", "2"]) == 2
    _one_line(capsys.readouterr().err, "--sigma does not apply to a g2o pose graph")
    assert main(["solve", str(path), "--fix-intrinsics"]) == 2
    _one_line(capsys.readouterr().err, "--fix-intrinsics does not apply")
