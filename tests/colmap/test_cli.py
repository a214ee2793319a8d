"""The command line on COLMAP model folders: info, solve with -o/--report, and one-line errors (exit 2)
that write nothing for malformed models or refused outputs."""
import json

import numpy as np
import pytest

from sparselm.cli import main
from sparselm.colmap import read_model, write_model


def test_info_text_and_json(video7_dir, capsys):
    assert main(["info", str(video7_dir)]) == 0
    text = capsys.readouterr().out
    for word in ("images                    7", "SIMPLE_RADIAL", "points", "track length", "co-visibility",
                 "reprojection error"):
        assert word in text
    assert main(["info", str(video7_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["images"] == 7 and stats["observations"] == 2616
    assert abs(stats["cost"] - 635.5376) < 1e-3


def test_solve_writes_model_and_report(video7_dir, tmp_path, capsys):
    out, rep = tmp_path / "adjusted", tmp_path / "r.json"
    assert main(["solve", str(video7_dir), "-o", str(out), "--report", str(rep), "--max-iterations", "20"]) == 0
    assert "RMS reprojection error" in capsys.readouterr().out
    adjusted, original = read_model(out), read_model(video7_dir)
    assert adjusted.n_observations == original.n_observations
    report = json.loads(rep.read_text())
    assert report["problem"]["images"] == 7 and report["final_cost"] <= report["initial_cost"]
    assert report["options_used"]["initial_trust_region_radius"] == 1e6  # the format's solver default
    assert not np.array_equal(adjusted.points_xyz, original.points_xyz)


def test_malformed_model_is_one_line_exit_2_and_writes_nothing(video7_dir, tmp_path, capsys):
    bad = write_model(read_model(video7_dir), tmp_path / "bad")
    data = (bad / "images.bin").read_bytes()
    (bad / "images.bin").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main(["solve", str(bad), "-o", str(out), "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparselm: error: ") and "images.bin" in err[0] and "truncated" in err[0]
    assert not out.exists() and not (tmp_path / "r.json").exists()
    assert main(["info", str(bad)]) == 2


def test_refused_outputs_and_options(video7_dir, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert main(["solve", str(video7_dir), "-o", str(busy)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert (busy / "keep.txt").read_text() == "x"
    assert main(["solve", str(video7_dir), "--sigma", "2"]) == 2
    assert "--sigma is not an option for COLMAP models" in capsys.readouterr().err
    assert main(["solve", str(video7_dir), "--loss", "arctan"]) == 2
    assert "not a COLMAP loss" in capsys.readouterr().err
    assert main(["solve", str(tmp_path)]) == 2  # a folder without a model
    assert "is a directory, not a" in capsys.readouterr().err


def test_colmap_is_a_registered_format(video7_dir):
    from sparselm import formats

    fmt = formats.detect_format(video7_dir)
    assert fmt is formats.get_format("colmap")
    data = fmt.read(video7_dir)
    problem = fmt.build(data)
    stats = fmt.statistics(data)
    assert fmt.rms_error(problem) == pytest.approx(stats["rms_reprojection_error_px"], rel=1e-9)
