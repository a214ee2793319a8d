"""sparselm.formats: one registry of input formats the command line dispatches through."""
import pytest

from sparselm import formats
from sparselm.bal import default_problem, write_bal


def test_bal_is_registered_as_the_fallback_and_detected(tmp_path):
    assert list(formats.FORMATS) == ["g2o", "bal", "colmap"] and formats.FORMATS["bal"].fallback
    assert not formats.FORMATS["g2o"].fallback
    path = write_bal(default_problem(), tmp_path / "p.txt")
    fmt = formats.detect_format(path)
    assert fmt is formats.get_format("bal")
    data = fmt.read(path)
    assert fmt.sizes(data) == {"cameras": 16, "points": 2000, "observations": data.n_observations}
    problem = fmt.build(data, fix_first=True)
    assert problem.parameter_groups["cameras"].constant[0]
    stats = fmt.statistics(data)
    assert stats["cameras"] == 16 and fmt.statistics_lines(stats)[0].split() == ["cameras", "16"]
    out = fmt.write_solution(problem, data, tmp_path / "out.txt", False)
    assert formats.detect_format(out) is fmt and fmt.rms_error(problem) == pytest.approx(stats["rms_reprojection_error_px"])


def test_unknown_and_undetected(tmp_path):
    with pytest.raises(ValueError, match="unknown input format 'xyz'; known formats: g2o, bal, colmap"):
        formats.get_format("xyz")
    with pytest.raises(ValueError, match="is a directory, not a g2o file or .*BAL file"):
        formats.detect_format(tmp_path)


def test_g2o_is_detected_by_name_or_first_record(tmp_path):
    by_name = tmp_path / "graph.g2o"
    by_name.write_text("# comment\nVERTEX_SE2 0 0 0 0\n")
    by_record = tmp_path / "graph.txt"
    by_record.write_text("\n# comment\nVERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\n")
    bal_like = tmp_path / "p.txt"
    bal_like.write_text("1 1 1\n0 0 1 2\n")
    assert formats.detect_format(by_name) is formats.get_format("g2o")
    assert formats.detect_format(by_record) is formats.get_format("g2o")
    assert formats.detect_format(bal_like) is formats.get_format("bal")
    assert formats.get_format("g2o").solver_defaults["initial_trust_region_radius"] == 1e8
