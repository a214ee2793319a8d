"""``sparselm solve --covariance``: the .npz file, the report's covariance phase, the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sparselm
from sparselm.bal import build_problem, read_bal, synthetic_problem, write_bal
from sparselm.cli import main
from sparselm.cli.common import CLIError
from sparselm.cli.solve import covariance_groups


def test_covariance_npz_and_report_match_the_python_api(tmp_path, capsys):
    source = write_bal(synthetic_problem(4, 60, seed=2).initial, tmp_path / "small.txt")
    solved, npz, report = tmp_path / "solved.txt", tmp_path / "cov.npz", tmp_path / "report.json"
    assert main(["solve", str(source), "--covariance", "all", "--covariance-output", str(npz), "--report",
                 str(report), "-o", str(solved)]) == 0
    assert "Covariance (pinv; gauge null space 7-dimensional)" in capsys.readouterr().out
    contents = json.loads(report.read_text())
    assert contents["phases"]["covariance"]["seconds"] > 0
    assert contents["covariance"]["groups"]["points"] == {"blocks": 60, "tangent_size": 3, "undefined": 0}
    problem = build_problem(read_bal(solved))  # the written solution: the same point, to the printed digits
    reference = sparselm.covariance(problem, None, blocks=["cameras", "points"])
    with np.load(npz) as data:
        assert data["cameras"].shape == (4, 9, 9) and data["points"].shape == (60, 3, 3)
        assert data["cameras_indices"].tolist() == [0, 1, 2, 3] and data["points_undefined"].size == 0
        assert np.allclose(data["cameras"], reference.matrices["cameras"], rtol=1e-4,
                           atol=1e-6 * np.abs(reference.matrices["cameras"]).max())


def test_covariance_output_needs_covariance(tmp_path, capsys):
    assert main(["solve", "-q", "--covariance-output", str(tmp_path / "c.npz")]) == 2
    assert "--covariance-output needs --covariance" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()


def test_covariance_groups_follow_elimination():
    ba = build_problem(synthetic_problem(3, 10, seed=1).initial)
    assert covariance_groups(ba, "cameras") == ["cameras"] and covariance_groups(ba, "points") == ["points"]
    assert covariance_groups(ba, "all") == ["cameras", "points"]
    plain = sparselm.Problem()
    plain.add_parameter_group("x", np.zeros((1, 2)))
    with pytest.raises(CLIError, match="no such parameter group"):
        covariance_groups(plain, "points")
