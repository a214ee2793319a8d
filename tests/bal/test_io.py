"""Reading and writing BAL files: real files, round trips, every malformed case, atomic writes."""
import bz2
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparselm.util.atomic import atomic_write
from sparselm.bal import BALFormatError, BALProblem, read_bal, write_bal
from sparselm.bal import io as bal_io

ARRAYS = ("cameras", "points", "camera_index", "point_index", "observations")

# (file under $SPARSELM_DATA, cameras, points, observations): the table of its README
REAL_FILES = [
    ("ladybug/problem-49-7776-pre.txt.bz2", 49, 7776, 31843),
    ("trafalgar/problem-21-11315-pre.txt.bz2", 21, 11315, 36455),
    ("dubrovnik/problem-16-22106-pre.txt.bz2", 16, 22106, 83718),
    ("variants/dubrovnik-1-1-pre.txt.bz2", 1, 1, 1),
    ("variants/dubrovnik-3-7-pre.txt.bz2", 3, 7, 19),
    ("variants/dubrovnik-3-7-18-pre.txt.bz2", 3, 7, 18),
    ("variants/bal-ladybug-problem-49-7776-pre-shrink-1800.txt.bz2", 49, 1800, 10863),
]

# A small valid problem, one record per line: 2 cameras, 3 points, 4 observations.
VALID_LINES = [
    "2 3 4",  # line 1
    "0 0 1.5 2.5",  # line 2: observation 0
    "1 0 -3 4",  # line 3: observation 1
    "0 1 5 6",  # line 4: observation 2
    "1 2 7 8",  # line 5: observation 3
    "0.1 0.2 0.3 1 2 3 500 0.01 0.001",  # line 6: camera 0
    "-0.1 0.2 -0.3 -1 2 -3 600 -0.01 0.002",  # line 7: camera 1
    "1 2 -10",  # line 8: point 0
    "3 4 -11",  # line 9: point 1
    "5 6 -12",  # line 10: point 2
]


def write_text(tmp_path: Path, lines, name="problem.txt") -> Path:
    path = tmp_path / name
    text = "\n".join(lines) + "\n" if isinstance(lines, list) else lines
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(bz2.compress(data) if name.endswith(".bz2") else data)
    return path


def replaced(line_number: int, text: str) -> list:
    """VALID_LINES with 1-based line ``line_number`` replaced by ``text``."""
    lines = list(VALID_LINES)
    lines[line_number - 1] = text
    return lines


def read_error(path: Path, **kwargs) -> BALFormatError:
    with pytest.raises(BALFormatError) as info:
        read_bal(path, **kwargs)
    error = info.value
    assert error.path == str(path)
    assert str(error).startswith(str(path) if error.line is None else f"{path}:{error.line}: ")
    return error


def assert_bitwise_equal(a: BALProblem, b: BALProblem) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


def small_problem(seed=0) -> BALProblem:
    rng = np.random.default_rng(seed)
    cameras = rng.normal(size=(3, 9)) * 10.0 ** rng.integers(-12, 12, size=(3, 9))
    cameras[0, :3] = [-0.0, 5e-324, 1.7976931348623157e308]  # signed zero, subnormal, largest double
    points = rng.normal(size=(5, 3))
    camera_index = np.array([0, 1, 2, 0, 1, 2, 0])
    point_index = np.array([0, 0, 1, 2, 3, 4, 4])
    observations = rng.normal(size=(7, 2)) * 300
    return BALProblem(cameras, points, camera_index, point_index, observations, "test")


# -- valid files ------------------------------------------------------------------------------------


def test_reads_the_valid_small_file(tmp_path):
    problem = read_bal(write_text(tmp_path, VALID_LINES))
    assert (problem.n_cameras, problem.n_points, problem.n_observations) == (2, 3, 4)
    np.testing.assert_array_equal(problem.camera_index, [0, 1, 0, 1])
    np.testing.assert_array_equal(problem.point_index, [0, 0, 1, 2])
    np.testing.assert_array_equal(problem.observations, [[1.5, 2.5], [-3, 4], [5, 6], [7, 8]])
    np.testing.assert_array_equal(problem.cameras[1], [-0.1, 0.2, -0.3, -1, 2, -3, 600, -0.01, 0.002])
    np.testing.assert_array_equal(problem.points[2], [5, 6, -12])
    assert problem.camera_index.dtype == np.int64 and problem.observations.dtype == np.float64
    assert all(getattr(problem, name).flags.c_contiguous for name in ARRAYS)
    assert problem.source == str(tmp_path / "problem.txt")


def test_whitespace_is_free_form(tmp_path):
    reference = read_bal(write_text(tmp_path, VALID_LINES))
    tokens = " ".join(VALID_LINES).split()
    odd = "\n\n  " + "\t".join(tokens[:7]) + "\r\n\r\n" + "\n".join(tokens[7:]) + "\n \n\t\n"
    assert_bitwise_equal(read_bal(write_text(tmp_path, odd, "odd.txt")), reference)


def test_bz2_is_detected_by_magic_not_by_name(tmp_path):
    reference = read_bal(write_text(tmp_path, VALID_LINES))
    compressed = tmp_path / "compressed.txt"
    compressed.write_bytes(bz2.compress((tmp_path / "problem.txt").read_bytes()))
    assert_bitwise_equal(read_bal(compressed), reference)
    assert_bitwise_equal(read_bal(write_text(tmp_path, VALID_LINES, "p.txt.bz2")), reference)


def test_unobserved_points_and_idle_cameras_are_allowed(tmp_path):
    lines = ["3 4 2", "0 0 1 2", "0 1 3 4"] + ["0 0 0 0 0 -1 500 0 0"] * 3 + ["0 0 -5"] * 4
    problem = read_bal(write_text(tmp_path, lines))
    assert (problem.n_cameras, problem.n_points, problem.n_observations) == (3, 4, 2)


@pytest.mark.bal
@pytest.mark.parametrize("name,n_cameras,n_points,n_observations", REAL_FILES)
def test_real_files(bal_data, name, n_cameras, n_points, n_observations):
    problem = read_bal(bal_data / name)
    assert (problem.n_cameras, problem.n_points, problem.n_observations) == (n_cameras, n_points, n_observations)
    assert problem.cameras.shape == (n_cameras, 9) and problem.points.shape == (n_points, 3)
    assert problem.observations.shape == (n_observations, 2)
    for name_ in ("cameras", "points", "observations"):
        assert np.all(np.isfinite(getattr(problem, name_)))
    assert problem.camera_index.min() >= 0 and problem.camera_index.max() < n_cameras
    assert problem.point_index.min() >= 0 and problem.point_index.max() < n_points


@pytest.mark.bal
def test_real_values_and_variants_agree(bal_data):
    full = read_bal(bal_data / "dubrovnik/problem-16-22106-pre.txt.bz2")
    np.testing.assert_array_equal(full.observations[0], [-385.99, 387.12])
    assert full.cameras[0, 6] == 1.4300319432711681e03
    small = read_bal(bal_data / "variants/dubrovnik-3-7-pre.txt.bz2")  # has blank separator lines
    assert_bitwise_equal(BALProblem(small.cameras, small.points, small.camera_index, small.point_index,
                                    small.observations),
                         BALProblem(full.cameras[:3], full.points[:7], *(
                             a[(full.camera_index < 3) & (full.point_index < 7)]
                             for a in (full.camera_index, full.point_index, full.observations))))


@pytest.mark.bal
@pytest.mark.parametrize("suffix", [".txt", ".txt.bz2"])
def test_real_file_round_trip(bal_data, tmp_path, suffix):
    problem = read_bal(bal_data / "dubrovnik/problem-16-22106-pre.txt.bz2")
    out = write_bal(problem, tmp_path / f"copy{suffix}")
    assert out == tmp_path / f"copy{suffix}"
    assert (out.read_bytes()[:3] == b"BZh") == suffix.endswith(".bz2")
    assert_bitwise_equal(read_bal(out), problem)


@pytest.mark.parametrize("suffix", [".txt", ".txt.bz2"])
def test_round_trip_is_bitwise(tmp_path, suffix):
    problem = small_problem()
    back = read_bal(write_bal(problem, tmp_path / f"p{suffix}"))
    assert_bitwise_equal(back, problem)
    assert np.signbit(back.cameras[0, 0])


# -- malformed files: the error names the file and the line ----------------------------------------


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_bal(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        read_bal(tmp_path)


@pytest.mark.parametrize("content", ["", "  \n\n\t\n"])
def test_empty_file(tmp_path, content):
    error = read_error(write_text(tmp_path, content))
    assert error.line is None and "empty" in str(error)


def test_bz2_name_without_bz2_content(tmp_path):
    path = tmp_path / "plain.txt.bz2"
    path.write_text("\n".join(VALID_LINES))
    error = read_error(path)
    assert error.line is None and "not bzip2" in str(error)


def test_corrupt_bz2(tmp_path):
    data = bz2.compress("\n".join(VALID_LINES).encode())
    path = tmp_path / "corrupt.txt.bz2"
    path.write_bytes(data[: len(data) // 2])
    assert "corrupt bzip2" in str(read_error(path))
    path.write_bytes(data[:10] + b"\x00" * 20 + data[30:])
    assert "corrupt bzip2" in str(read_error(path))


@pytest.mark.parametrize("lines,line,pattern", [
    (replaced(1, "2 x 4"), 1, "n_points must be an integer, got 'x'"),
    (replaced(1, "2 3.0 4"), 1, "n_points must be an integer, got '3.0'"),
    (replaced(1, "2 3 1_0"), 1, "n_observations must be an integer"),
    (replaced(1, "-2 3 4"), 1, "n_cameras is -2"),
    (replaced(1, "2 3 0"), 1, "n_observations is 0"),
    (replaced(1, "0 3 4"), 1, "n_cameras is 0"),
    (replaced(1, "2 0 4"), 1, "n_points is 0"),
    (["", "2", "", "3", "x"], 5, "n_observations must be an integer, got 'x'"),
])
def test_bad_header(tmp_path, lines, line, pattern):
    error = read_error(write_text(tmp_path, lines))
    assert error.line == line and pattern in str(error)


@pytest.mark.parametrize("text,line", [("2 3", 1), ("\n2\n\n3\n\n", 4), ("7", 1)])
def test_header_with_fewer_than_three_values(tmp_path, text, line):
    error = read_error(write_text(tmp_path, text))
    assert error.line == line and "expected 3 integers" in str(error)


def test_truncated_observations(tmp_path):
    error = read_error(write_text(tmp_path, VALID_LINES[:3]))
    assert error.line == 3
    assert "truncated" in str(error) and "= 46, found 11" in str(error)
    assert "before observation 2 (camera index)" in str(error)


def test_truncated_in_the_middle_of_an_observation(tmp_path):
    error = read_error(write_text(tmp_path, VALID_LINES[:3] + ["0 1 5"]))
    assert error.line == 4 and "found 14" in str(error) and "before observation 2 (y)" in str(error)


def test_truncated_parameters(tmp_path):
    error = read_error(write_text(tmp_path, VALID_LINES[:-1] + ["", ""]))
    assert error.line == 9 and "expected" in str(error) and "= 46, found 43" in str(error)
    assert "before point 2 (x)" in str(error)
    error = read_error(write_text(tmp_path, VALID_LINES[:6] + ["-0.1 0.2 -0.3 -1"]))
    assert error.line == 7 and "before camera 1 (ty)" in str(error)


@pytest.mark.parametrize("extra,line", [(["7"], 11), (["", "", "1 2 3"], 13)])
def test_extra_trailing_values(tmp_path, extra, line):
    error = read_error(write_text(tmp_path, VALID_LINES + extra))
    assert error.line == line and "extra data" in str(error)


@pytest.mark.parametrize("lines,line,pattern", [
    (replaced(4, "0 1 5 abc"), 4, "observation 2 (y): 'abc' is not a number"),
    (replaced(3, "1 0 -3.0-4.0"), 3, "observation 1 (x): '-3.0-4.0' is not a number"),
    (replaced(7, "-0.1 0.2 -0.3 -1 2 -3 600 -0.01 0,002"), 7, "camera 1 (k2): '0,002' is not a number"),
    (replaced(10, "5 6 -12e"), 10, "point 2 (z): '-12e' is not a number"),
    (replaced(8, "1 2 0x10"), 8, "point 0 (z): '0x10' is not a number"),
    (replaced(2, "0 0 1.5 2.5\x00"), 2, "observation 0 (y)"),
    (replaced(5, "1 2 7 \u00e98"), 5, r"'\\xc3\\xa98' is not a number"),
])
def test_non_numeric_values(tmp_path, lines, line, pattern):
    error = read_error(write_text(tmp_path, lines))
    assert error.line == line and pattern in str(error)


@pytest.mark.parametrize("lines,line,pattern", [
    (replaced(6, "0.1 0.2 0.3 1 2 3 nan 0.01 0.001"), 6, "camera 0 (f) is nan"),
    (replaced(9, "3 -inf -11"), 9, "point 1 (y) is -inf"),
    (replaced(4, "0 1 1e999 6"), 4, "observation 2 (x) is inf"),
    (replaced(3, "1 0 -3 Infinity"), 3, "observation 1 (y) is inf"),
])
def test_non_finite_values(tmp_path, lines, line, pattern):
    error = read_error(write_text(tmp_path, lines))
    assert error.line == line and pattern in str(error)


@pytest.mark.parametrize("lines,line,pattern", [
    (replaced(4, "2 1 5 6"), 4, "observation 2: camera index 2 out of range [0, 2)"),
    (replaced(3, "-1 0 -3 4"), 3, "observation 1: camera index -1 out of range [0, 2)"),
    (replaced(5, "1 3 7 8"), 5, "observation 3: point index 3 out of range [0, 3)"),
    (replaced(2, "0 -7 1.5 2.5"), 2, "observation 0: point index -7 out of range [0, 3)"),
    (replaced(4, "0.5 1 5 6"), 4, "observation 2: camera index 0.5 is not an integer"),
    (replaced(5, "1 1e30 7 8"), 5, "observation 3: point index 1000000000000000019884624838656 out of range"),
])
def test_bad_indices(tmp_path, lines, line, pattern):
    error = read_error(write_text(tmp_path, lines))
    assert error.line == line and pattern in str(error)


def test_message_format_of_the_docs_example(tmp_path):
    lines = ["16 1 17"] + [f"{c} 0 1 2" for c in range(15)] + ["99 0 1 2", "15 0 1 2"]
    lines += ["0 0 0 0 0 -1 500 0 0"] * 16 + ["0 0 -5"]
    path = write_text(tmp_path, lines)
    error = read_error(path)
    assert str(error) == f"{path}:17: observation 15: camera index 99 out of range [0, 16)"


def test_integral_float_indices_are_accepted(tmp_path):
    problem = read_bal(write_text(tmp_path, replaced(4, "0.0 1e0 5 6")))
    assert problem.camera_index[2] == 0 and problem.point_index[2] == 1


@pytest.mark.parametrize("duplicate_line", [5, 3])
def test_duplicate_observations(tmp_path, duplicate_line):
    path = write_text(tmp_path, replaced(duplicate_line, "0 0 7 8"))
    error = read_error(path)
    first, second = 0, duplicate_line - 2
    assert error.line == duplicate_line
    assert (f"observations {first} (line 2) and {second} (line {duplicate_line}) both observe point 0 "
            f"from camera 0") in str(error)
    problem = read_bal(path, allow_duplicates=True)
    assert problem.n_observations == 4


def test_duplicate_reported_is_the_first_in_file_order(tmp_path):
    # unsorted observations; pairs (obs 1, obs 4) and (obs 0, obs 5): obs 4 is the earliest repeat
    lines = ["2 3 6", "1 2 0 0", "0 1 0 0", "1 0 0 0", "0 2 0 0", "0 1 0 0", "1 2 0 0"]
    lines += VALID_LINES[5:]
    error = read_error(write_text(tmp_path, lines))
    assert error.line == 6 and "observations 1 (line 3) and 4 (line 6)" in str(error)


# -- property: any mutation of a valid file is either read consistently or rejected cleanly ----------

VALID_TOKENS = " ".join(VALID_LINES).split()
REPLACEMENTS = st.one_of(
    st.sampled_from(["nan", "inf", "-1", "1.5", "99", "1e999", "0", "-0", "abc", "1-2", "", "\x00", "BZh",
                     "0x10", "1_0", "+", ".", "e5", "3 4", "\n\n", "1e308", "2.0"]),
    st.integers(-3, 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=4),
)


@st.composite
def mutated_files(draw):
    tokens = list(VALID_TOKENS)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["drop", "duplicate", "replace", "insert"]))
        i = draw(st.integers(0, len(tokens) - 1)) if tokens else 0
        if kind == "drop" and tokens:
            del tokens[i]
        elif kind == "duplicate" and tokens:
            tokens.insert(i, tokens[i])
        elif kind == "replace" and tokens:
            tokens[i] = draw(REPLACEMENTS)
        else:
            tokens.insert(i, draw(REPLACEMENTS))
    separators = draw(st.lists(st.sampled_from([" ", "\n", "\t", "\n\n", "\r\n", "  "]),
                               min_size=len(tokens), max_size=len(tokens)))
    data = "".join(t + s for t, s in zip(tokens, separators)).encode("utf-8", errors="surrogatepass")
    garbage = draw(st.binary(max_size=3))
    at = draw(st.integers(0, len(data)))
    data = data[:at] + garbage + data[at:]
    return data, draw(st.booleans())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("mutated")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_files())
def test_mutated_files_are_read_consistently_or_rejected(scratch, case):
    data, compress = case
    path = scratch / ("p.txt.bz2" if compress else "p.txt")
    path.write_bytes(bz2.compress(data) if compress else data)
    try:
        problem = read_bal(path)
    except BALFormatError as error:
        assert error.path == str(path) and (error.line is None or 1 <= error.line <= data.count(b"\n") + 1)
        return
    header = [int(t) for t in data.split()[:3]]
    assert [problem.n_cameras, problem.n_points, problem.n_observations] == header
    assert problem.cameras.shape == (header[0], 9) and problem.points.shape == (header[1], 3)
    assert problem.camera_index.shape == problem.point_index.shape == (header[2],)
    assert problem.observations.shape == (header[2], 2)
    assert problem.camera_index.min() >= 0 and problem.camera_index.max() < header[0]
    assert problem.point_index.min() >= 0 and problem.point_index.max() < header[1]
    for name in ("cameras", "points", "observations"):
        assert np.all(np.isfinite(getattr(problem, name)))


# -- writing --------------------------------------------------------------------------------------


def test_write_refuses_to_overwrite_the_input(tmp_path):
    path = write_text(tmp_path, VALID_LINES)
    before = path.read_bytes()
    problem = read_bal(path)
    for target in (path, tmp_path / "." / "problem.txt"):
        with pytest.raises(ValueError, match="overwrite"):
            write_bal(problem, target)
    link = tmp_path / "link.txt"
    link.symlink_to(path)
    with pytest.raises(ValueError, match="overwrite"):
        write_bal(problem, link)
    assert path.read_bytes() == before
    problem.cameras[0, 6] = 555.0
    write_bal(problem, path, overwrite_input=True)
    assert read_bal(path).cameras[0, 6] == 555.0


def test_write_is_atomic_when_formatting_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old content")
    problem = small_problem()

    def failing_chunks(p, rows=100_000):
        yield b"3 5 7\n0 0 1 2\n"
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bal_io, "_format_chunks", failing_chunks)
    for name in ("out.txt", "new.txt.bz2"):
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_bal(problem, tmp_path / name)
    assert target.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_write_rejects_inconsistent_problems(tmp_path):
    problem = small_problem()
    problem.points[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"points\[1, 2\] is not finite"):
        write_bal(problem, tmp_path / "p.txt")
    problem = small_problem()
    problem.point_index[3] = 5
    with pytest.raises(ValueError, match=r"point_index\[3\] = 5 out of range \[0, 5\)"):
        write_bal(problem, tmp_path / "p.txt")
    empty = BALProblem(np.zeros((1, 9)), np.zeros((1, 3)), [], [], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="no observations"):
        write_bal(empty, tmp_path / "p.txt")
    assert list(tmp_path.iterdir()) == []


def test_problem_checks_shapes_and_copies_deeply():
    with pytest.raises(ValueError, match=r"cameras has shape \(2, 8\), expected \(n, 9\)"):
        BALProblem(np.zeros((2, 8)), np.zeros((1, 3)), [0], [0], np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"point_index has shape \(2,\), expected \(1,\)"):
        BALProblem(np.zeros((2, 9)), np.zeros((1, 3)), [0], [0, 0], np.zeros((1, 2)))
    problem = small_problem()
    clone = problem.copy()
    assert_bitwise_equal(clone, problem)
    clone.cameras[0, 0] = 1.0
    clone.camera_index[0] = 2
    assert problem.cameras[0, 0] == 0.0 and problem.camera_index[0] == 0 and clone.source == problem.source


# -- atomic_write ---------------------------------------------------------------------------------


def test_atomic_write_content_kinds_and_permissions(tmp_path):
    assert atomic_write(tmp_path / "a.json", '{"x": "\u00e9"}') == tmp_path / "a.json"
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == '{"x": "\u00e9"}'
    atomic_write(tmp_path / "a.json", b"bytes")
    assert (tmp_path / "a.json").read_bytes() == b"bytes"
    atomic_write(str(tmp_path / "b.bin"), lambda f: f.write(b"from a function"))
    assert (tmp_path / "b.bin").read_bytes() == b"from a function"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def half_then_fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    for name in ("report.json", "fresh.json"):
        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / name, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_write_into_a_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "x.txt", b"data")
    assert list(tmp_path.iterdir()) == []
