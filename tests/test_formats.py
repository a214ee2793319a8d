"""sparselm.formats: one registry of input formats the command line dispatches through."""
import pytest

from sparselm import formats
from sparselm.bal import default_problem, write_bal


def test_bal_is_registered_as_the_fallback_and_detected(tmp_path):
    assert list(formats.FORMATS) == ["bal"] and formats.FORMATS["bal"].fallback
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
    with pytest.raises(ValueError, match="unknown input format 'g2o'; known formats: bal"):
        formats.get_format("g2o")
    with pytest.raises(ValueError, match="is a directory, not a BAL file"):
        formats.detect_format(tmp_path)
