"""Read and write g2o pose-graph files (2-D ``VERTEX_SE2``/``EDGE_SE2``, 3-D ``VERTEX_SE3:QUAT``/
``EDGE_SE3:QUAT``, ``FIX``), plain or bzip2-compressed (recognised by its magic bytes ``BZh``).

Records, one a line (``#`` starts a comment line; blank lines are skipped)::

    VERTEX_SE2 id x y theta
    EDGE_SE2 i j dx dy dtheta I11 I12 I13 I22 I23 I33
    VERTEX_SE3:QUAT id x y z qx qy qz qw
    EDGE_SE3:QUAT i j dx dy dz dqx dqy dqz dqw I11 I12 ... I16 I22 ... I66   (21 values)
    FIX id [id ...]

An edge's measurement is Z = T_i^-1 T_j; its information matrix is given by its upper triangle,
row by row, in g2o's order: translation first, then rotation (theta, or qx qy qz). Quaternions
are normalised on reading.

Every malformed line raises :class:`G2OFormatError` naming the file, the line and the reason: a
wrong number of fields, a field that is not a number, a non-finite value, a vertex id that is not
an integer, a duplicate vertex id, an edge or FIX naming an unknown vertex, an edge from a vertex
to itself, a quaternion of zero norm, an information matrix that is not positive definite, 2-D and
3-D records in one file. An unknown tag is an error too, unless ``skip_unknown=True``, which skips
it with a :class:`G2OWarning` naming the line. Writing is atomic (temporary file, then rename).
"""
from __future__ import annotations

import bz2
import io
import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from sparselm.util.atomic import atomic_write
from sparselm.util.numerics import unit_rows

PathLike = Union[str, os.PathLike]


class G2OFormatError(ValueError):
    """A g2o file that cannot be read; the message is ``file:line: reason``."""


class G2OWarning(UserWarning):
    """A line skipped while reading a g2o file (an unknown tag with ``skip_unknown=True``)."""


@dataclass(frozen=True)
class RecordKind:
    """One pose record kind: its vertex and edge tags, pose size and information size."""

    dimension: int
    vertex_tag: str
    edge_tag: str
    pose_size: int          # stored numbers per pose: 3 (x, y, theta) or 7 (x, y, z, qx, qy, qz, qw)
    information_size: int   # 3 or 6

    @property
    def edge_fields(self) -> int:
        s = self.information_size
        return 3 + self.pose_size + s * (s + 1) // 2


SE2_RECORDS = RecordKind(2, "VERTEX_SE2", "EDGE_SE2", 3, 3)
SE3_RECORDS = RecordKind(3, "VERTEX_SE3:QUAT", "EDGE_SE3:QUAT", 7, 6)
_KINDS = (SE2_RECORDS, SE3_RECORDS)


@dataclass
class PoseGraph:
    """A pose graph as read from a g2o file.

    kind          SE2_RECORDS or SE3_RECORDS.
    vertex_ids    (n,) int64, in file order; vertices are referred to by position elsewhere.
    poses         (n, 3) (x, y, theta) or (n, 7) (x, y, z, qx, qy, qz, qw), unit quaternions.
    edges         (m, 2) int64 positions (i, j) of the vertices of each edge.
    measurements  (m, 3) or (m, 7) Z = T_i^-1 T_j, as poses.
    information   (m, s, s) symmetric positive definite, g2o order (translation, rotation).
    fixed         (n,) bool, the vertices named on FIX lines.
    """

    kind: RecordKind
    vertex_ids: np.ndarray
    poses: np.ndarray
    edges: np.ndarray
    measurements: np.ndarray
    information: np.ndarray
    fixed: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(self.vertex_ids.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])


Entry = Tuple[int, List[str]]  # (line number, fields)


class _Reader:
    """Collects the records of one file by tag and raises the first problem with its line."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, line: int, reason: str):
        raise G2OFormatError(f"{self.name}:{line}: {reason}")

    def numbers(self, tag: str, entries: List[Entry], n_fields: int) -> np.ndarray:
        """The numeric fields (after the tag) of records that must have exactly ``n_fields`` fields."""
        for line, fields in entries:
            if len(fields) != n_fields:
                self.fail(line, f"{tag} needs {n_fields - 1} values after the tag, got {len(fields) - 1}")
        try:
            values = _parse_floats(" ".join(itertools.chain.from_iterable(fields[1:] for _, fields in entries)))
        except ValueError:
            values = None
        if values is None or values.size != len(entries) * (n_fields - 1):
            for line, fields in entries:
                for k, token in enumerate(fields[1:], 1):
                    try:
                        _parse_floats(token)
                    except ValueError:
                        self.fail(line, f"{tag} field {k} ({token!r}) is not a number")
            raise AssertionError("g2o reader: numbers did not parse as a whole but did one by one")  # pragma: no cover
        values = values.reshape(len(entries), n_fields - 1)
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            self.fail(entries[row][0], f"{tag} field {col + 1} is not finite ({values[row, col]})")
        return values

    def ids(self, tag: str, entries: List[Entry], values: np.ndarray, what: str) -> np.ndarray:
        bad = (values != np.round(values)) | (np.abs(values) > 2.0 ** 53)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            self.fail(entries[row][0], f"{tag} {what} {float(values[row, col])!r} is not an integer")
        return values.astype(np.int64)

    def unit_quaternions(self, tag: str, entries: List[Entry], q: np.ndarray) -> np.ndarray:
        unit, norm = unit_rows(q)  # overflow-safe: (0, 0, 1e200, 1e200) is a valid direction
        bad = norm < 1e-12
        if bad.any():
            self.fail(entries[int(np.flatnonzero(bad)[0])][0], f"{tag} quaternion has zero norm")
        return unit

    def information(self, tag: str, entries: List[Entry], upper: np.ndarray, size: int) -> np.ndarray:
        rows, cols = np.triu_indices(size)
        info = np.zeros((upper.shape[0], size, size))
        info[:, rows, cols] = upper
        info[:, cols, rows] = upper
        eig_min = np.linalg.eigvalsh(info)[:, 0] if info.shape[0] else np.zeros(0)
        scale = np.abs(info).max(axis=(1, 2)) if info.shape[0] else np.zeros(0)
        bad = ~(eig_min > 1e-14 * scale)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            self.fail(entries[k][0], f"{tag} information matrix is not positive definite "
                                     f"(smallest eigenvalue {eig_min[k]:.3g})")
        return info


def _parse_floats(text: str) -> np.ndarray:
    """The whitespace-separated decimal numbers of ``text`` (numpy's C parser); ValueError on anything
    else (hexadecimal, digit separators and trailing garbage included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, sep=" ")
        except DeprecationWarning as exc:  # numpy versions that warn instead of raising
            raise ValueError(str(exc)) from None


def _text(path: PathLike) -> str:
    name = os.fspath(path)
    raw = Path(path).read_bytes()
    if raw[:3] == b"BZh":
        try:
            raw = bz2.decompress(raw)
        except (OSError, ValueError, EOFError) as exc:
            raise G2OFormatError(f"{name}: not a valid bzip2 stream ({exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise G2OFormatError(f"{name}:{line}: not UTF-8 text") from None


def read_g2o(path: PathLike, *, skip_unknown: bool = False) -> PoseGraph:
    """Read a g2o file (plain or .bz2) into a :class:`PoseGraph`; see the module docstring."""
    reader = _Reader(os.fspath(path))
    by_tag: Dict[str, List[Entry]] = {}
    for number, line in enumerate(_text(path).splitlines(), 1):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            by_tag.setdefault(fields[0], []).append((number, fields))
    known = {tag for kind in _KINDS for tag in (kind.vertex_tag, kind.edge_tag)} | {"FIX"}
    for tag, entries in sorted(by_tag.items(), key=lambda item: item[1][0][0]):
        if tag not in known:
            if not skip_unknown:
                reader.fail(entries[0][0], f"unknown record {tag!r} (supported: {', '.join(sorted(known))})")
            for line, _ in entries:
                warnings.warn(f"{reader.name}:{line}: skipped unknown record {tag!r}", G2OWarning, stacklevel=2)
    present = [k for k in _KINDS if k.vertex_tag in by_tag or k.edge_tag in by_tag]
    if len(present) > 1:
        first_3d = min(e[0][0] for t, e in by_tag.items() if t in (SE3_RECORDS.vertex_tag, SE3_RECORDS.edge_tag))
        reader.fail(first_3d, "2-D (SE2) and 3-D (SE3:QUAT) records in one file")
    if not present or present[0].vertex_tag not in by_tag:
        raise G2OFormatError(f"{reader.name}: no VERTEX_SE2 or VERTEX_SE3:QUAT records")
    return _graph(reader, present[0], by_tag)


def _graph(reader: _Reader, kind: RecordKind, by_tag: Dict[str, List[Entry]]) -> PoseGraph:
    vertices = by_tag[kind.vertex_tag]
    values = reader.numbers(kind.vertex_tag, vertices, 2 + kind.pose_size)
    ids = reader.ids(kind.vertex_tag, vertices, values[:, :1], "id")[:, 0]
    poses = values[:, 1:].copy()
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        later = max(order[dup[0]], order[dup[0] + 1])
        reader.fail(vertices[later][0], f"duplicate vertex id {ids[later]}")
    if kind is SE3_RECORDS:
        poses[:, 3:] = reader.unit_quaternions(kind.vertex_tag, vertices, poses[:, 3:])
    sorted_ids = ids[order]

    def positions(tag: str, entries: List[Entry], refs: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(sorted_ids, refs), sorted_ids.size - 1)
        unknown = sorted_ids[at] != refs
        if unknown.any():
            row, col = np.argwhere(unknown)[0]
            reader.fail(entries[row][0], f"{tag} refers to unknown vertex id {int(refs[row, col])}")
        return order[at]

    edge_entries = by_tag.get(kind.edge_tag, [])
    s = kind.information_size
    evalues = reader.numbers(kind.edge_tag, edge_entries, kind.edge_fields) if edge_entries else \
        np.zeros((0, kind.edge_fields - 1))
    edges = positions(kind.edge_tag, edge_entries, reader.ids(kind.edge_tag, edge_entries, evalues[:, :2], "vertex id"))
    loops = np.flatnonzero(edges[:, 0] == edges[:, 1])
    if loops.size:
        reader.fail(edge_entries[loops[0]][0], f"{kind.edge_tag} joins vertex {ids[edges[loops[0], 0]]} to itself")
    measurements = evalues[:, 2:2 + kind.pose_size].copy()
    if kind is SE3_RECORDS:
        measurements[:, 3:] = reader.unit_quaternions(kind.edge_tag, edge_entries, measurements[:, 3:])
    information = reader.information(kind.edge_tag, edge_entries, evalues[:, 2 + kind.pose_size:], s)
    fixed = np.zeros(ids.shape[0], dtype=bool)
    for line, fields in by_tag.get("FIX", []):
        if len(fields) < 2:
            reader.fail(line, "FIX needs at least one vertex id")
        refs = reader.ids("FIX", [(line, fields)], reader.numbers("FIX", [(line, fields)], len(fields)), "vertex id")
        fixed[positions("FIX", [(line, fields)], refs)[0]] = True
    return PoseGraph(kind, ids, poses, edges, measurements, information, fixed)


def format_g2o(graph: PoseGraph) -> str:
    """The g2o text of ``graph`` (vertices, FIX, edges; every float with 17 significant digits)."""
    kind = graph.kind
    buf = io.StringIO()
    pose_fmt = " ".join(["%.17g"] * kind.pose_size)
    for vid, pose in zip(graph.vertex_ids, graph.poses):
        buf.write(f"{kind.vertex_tag} {vid} {pose_fmt % tuple(pose)}\n")
    if graph.fixed.any():
        buf.write("FIX " + " ".join(str(v) for v in graph.vertex_ids[graph.fixed]) + "\n")
    rows, cols = np.triu_indices(kind.information_size)
    edge_fmt = " ".join(["%.17g"] * (kind.pose_size + rows.size))
    for (i, j), z, info in zip(graph.edges, graph.measurements, graph.information):
        numbers = tuple(z) + tuple(info[rows, cols])
        buf.write(f"{kind.edge_tag} {graph.vertex_ids[i]} {graph.vertex_ids[j]} {edge_fmt % numbers}\n")
    return buf.getvalue()


def write_g2o(graph: PoseGraph, path: PathLike) -> Path:
    """Write ``graph`` atomically as a g2o file (bzip2-compressed when ``path`` ends in .bz2)."""
    data = format_g2o(graph).encode("utf-8")
    if os.fspath(path).endswith(".bz2"):
        data = bz2.compress(data)
    return atomic_write(path, data)
