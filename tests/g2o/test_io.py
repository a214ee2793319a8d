"""g2o reading and writing: the real files, round trips, and every malformed case with its line."""
import bz2
import warnings

import numpy as np
import pytest

from sparselm.g2o.io import SE2_RECORDS, SE3_RECORDS, G2OFormatError, G2OWarning, read_g2o, write_g2o

from .conftest import FILES

SIZES = {"intel": (2, 1728, 2512), "parking-garage": (3, 1661, 6275), "sphere2500": (3, 2500, 4949),
         "smallGrid3D": (3, 125, 297)}

SE2_TEXT = """# a comment
VERTEX_SE2 0 0 0 0
VERTEX_SE2 1 1.0 0.1 0.2
VERTEX_SE2 5 2.0 0.2 0.4

EDGE_SE2 0 1 1 0 0.2 10 0 0 10 0 100
EDGE_SE2 1 5 1 0.1 0.2 10 1 0 10 0 100
EDGE_SE2 0 5 2 0 0.4 10 0 0 10 0 100
FIX 0
"""

SE3_TEXT = """VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1
VERTEX_SE3:QUAT 1 1 0 0 0 0 0.0998334 0.995004
VERTEX_SE3:QUAT 2 2 0.2 0 0 0 0.198669 0.980067
EDGE_SE3:QUAT 0 1 1 0 0 0 0 0.0998334 0.995004 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4
EDGE_SE3:QUAT 1 2 1 0.1 0 0 0 0.0998334 0.995004 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 4 0 0 4 0 4
"""


def _write(tmp_path, text, name="g.g2o"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", FILES)
def test_real_files_have_the_published_sizes(name, g2o_file):
    graph = read_g2o(g2o_file(name))
    dim, n, m = SIZES[name]
    assert (graph.kind.dimension, graph.n_vertices, graph.n_edges) == (dim, n, m)
    if dim == 3:
        np.testing.assert_allclose(np.linalg.norm(graph.poses[:, 3:], axis=1), 1.0, atol=1e-15)
    assert np.all(np.linalg.eigvalsh(graph.information)[:, 0] > 0)


def test_small_2d_file_is_read_with_fix_and_gaps_in_ids(tmp_path):
    graph = read_g2o(_write(tmp_path, SE2_TEXT))
    assert graph.kind is SE2_RECORDS
    assert list(graph.vertex_ids) == [0, 1, 5]
    assert graph.edges.tolist() == [[0, 1], [1, 2], [0, 2]]
    assert graph.fixed.tolist() == [True, False, False]
    np.testing.assert_array_equal(graph.information[1], [[10, 1, 0], [1, 10, 0], [0, 0, 100]])


@pytest.mark.parametrize("compress", [False, True])
def test_write_then_read_gives_the_same_graph(tmp_path, compress):
    graph = read_g2o(_write(tmp_path, SE3_TEXT))
    out = tmp_path / ("out.g2o.bz2" if compress else "out.g2o")
    write_g2o(graph, out)
    assert (out.read_bytes()[:3] == b"BZh") == compress
    again = read_g2o(out)
    assert again.kind is SE3_RECORDS
    for field in ("vertex_ids", "edges", "information", "fixed"):
        np.testing.assert_array_equal(getattr(again, field), getattr(graph, field))
    # 17 digits round-trip exactly; re-normalising the quaternions on reading may move the last bit
    for field in ("poses", "measurements"):
        np.testing.assert_allclose(getattr(again, field), getattr(graph, field), rtol=0, atol=1e-15)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bz2_is_recognised_by_its_magic_bytes_not_its_name(tmp_path):
    path = tmp_path / "plain-name.g2o"
    path.write_bytes(bz2.compress(SE2_TEXT.encode()))
    assert read_g2o(path).n_vertices == 3


BAD = [
    ("VERTEX_SE2 0 0 0\n", 1, "needs 4 values after the tag, got 3"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 0 x 0\n", 2, "field 3 ('x') is not a number"),
    ("VERTEX_SE2 0 0 0 nan\n", 1, "field 4 is not finite"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1_000 0 0\n", 2, "field 2 ('1_000') is not a number"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 0x1A 0 0\n", 2, "field 2 ('0x1A') is not a number"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1.5e 0 0\n", 2, "field 2 ('1.5e') is not a number"),
    ("VERTEX_SE2 0 0 0 inf\n", 1, "is not finite"),
    ("VERTEX_SE2 0.5 0 0 0\n", 1, "id 0.5 is not an integer"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 0 1 0 0\n", 2, "duplicate vertex id 0"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 7 1 0 0 1 0 0 1 0 1\n", 3, "unknown vertex id 7"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 -1 0 1\n", 3, "not positive definite"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 2 0 1 0 1\n", 3, "not positive definite"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 1 1 1 0 0 1 0 0 1 0 1\n", 3, "to itself"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0\n", 3, "needs 11 values"),
    ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 0\n", 1, "quaternion has zero norm"),
    ("VERTEX_SE2 0 0 0 0\nFIX 3\n", 2, "FIX refers to unknown vertex id 3"),
    ("VERTEX_SE2 0 0 0 0\nFIX\n", 2, "FIX needs at least one vertex id"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 1\n", 2, "2-D (SE2) and 3-D"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_XYZ 1 0 0 0\n", 2, "unknown record 'VERTEX_XYZ'"),
    ("# nothing\n", None, "no VERTEX_SE2 or VERTEX_SE3:QUAT records"),
]


@pytest.mark.parametrize("text, line, reason", BAD)
def test_malformed_lines_name_file_line_and_reason(tmp_path, text, line, reason):
    path = _write(tmp_path, text)
    with pytest.raises(G2OFormatError) as info:
        read_g2o(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert reason in message


def test_edge_quaternion_of_zero_norm(tmp_path):
    text = SE3_TEXT.replace("EDGE_SE3:QUAT 1 2 1 0.1 0 0 0 0.0998334 0.995004", "EDGE_SE3:QUAT 1 2 1 0.1 0 0 0 0 0")
    with pytest.raises(G2OFormatError, match=r":5: EDGE_SE3:QUAT quaternion has zero norm"):
        read_g2o(_write(tmp_path, text))


def test_unknown_tags_can_be_skipped_with_a_warning_naming_the_line(tmp_path):
    path = _write(tmp_path, SE2_TEXT + "LANDMARK 3 1 2\n")
    with pytest.warns(G2OWarning, match=r":10: skipped unknown record 'LANDMARK'"):
        graph = read_g2o(path, skip_unknown=True)
    assert graph.n_edges == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(G2OFormatError, match=":10: unknown record"):
            read_g2o(path)


def test_broken_bz2_and_binary_content(tmp_path):
    path = tmp_path / "b.g2o.bz2"
    path.write_bytes(b"BZh9" + b"\x00" * 40)
    with pytest.raises(G2OFormatError, match="not a valid bzip2 stream"):
        read_g2o(path)
    path.write_bytes(b"VERTEX_SE2 0 0 0 0\n\xff\xfe\n")
    with pytest.raises(G2OFormatError, match=":2: not UTF-8"):
        read_g2o(path)
