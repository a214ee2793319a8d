"""Read and write Bundle Adjustment in the Large (BAL) problem files.

Format (whitespace-separated, line breaks and blank lines are not significant)::

    n_cameras n_points n_observations
    camera_index point_index x y          (n_observations times; x, y in pixels)
    9 values per camera                   (Rodrigues rotation 3, translation 3, f, k1, k2)
    3 values per point                    (world coordinates)

Files may be bzip2-compressed (recognised by the ``BZh`` magic bytes). Reading parses the whole text
with one vectorised call; token positions and line numbers are computed only to report an error.
Observation, camera and point numbers in messages are 0-based (as the indices in the file), line
numbers 1-based.
"""
from __future__ import annotations

import bz2
import os
import re
import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple, Union

import numpy as np

from sparselm.util.atomic import atomic_write

PathLike = Union[str, os.PathLike]

CAMERA_FIELDS = ("rx", "ry", "rz", "tx", "ty", "tz", "f", "k1", "k2")
_HEADER_FIELDS = ("n_cameras", "n_points", "n_observations")
_OBSERVATION_FIELDS = ("camera index", "point index", "x", "y")

_TOKEN = re.compile(rb"\S+")
_INTEGER = re.compile(rb"[+-]?\d+")
_NUMBER = rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)"
# The first whitespace-delimited token that is not a number as a whole.
_NON_NUMBER = re.compile(rb"(?<!\S)(?!" + _NUMBER + rb"(?!\S))\S+", re.IGNORECASE)
_CHUNK = 1 << 20  # bytes scanned at a time when locating tokens


class BALFormatError(ValueError):
    """The content of a BAL file is malformed.

    ``path`` is the file (as given), ``line`` the 1-based line of the offending data or None when no
    single line is to blame (corrupt compression, empty file); ``reason`` the message without the
    location. ``str(error)`` reads ``path:line: reason``.
    """

    def __init__(self, path: PathLike, line: Optional[int], reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        location = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{location}: {reason}")


@dataclass
class BALProblem:
    """A bundle-adjustment problem in BAL conventions.

    cameras       (n_cameras, 9) float64: Rodrigues rotation (rad) 3, translation 3, f (px), k1, k2.
    points        (n_points, 3) float64 world coordinates.
    camera_index  (n_observations,) int64, row of ``cameras`` each observation is seen by.
    point_index   (n_observations,) int64, row of ``points`` each observation is of.
    observations  (n_observations, 2) float64 measured pixel coordinates (x, y).
    source        the file it was read from, or a description of where it came from.

    The arrays are converted to C-contiguous arrays of these dtypes on construction and their shapes
    checked (ValueError); :meth:`validate` checks their content.
    """

    cameras: np.ndarray
    points: np.ndarray
    camera_index: np.ndarray
    point_index: np.ndarray
    observations: np.ndarray
    source: str = ""

    def __post_init__(self):
        self.cameras = np.ascontiguousarray(self.cameras, dtype=np.float64)
        self.points = np.ascontiguousarray(self.points, dtype=np.float64)
        self.camera_index = np.ascontiguousarray(self.camera_index, dtype=np.int64)
        self.point_index = np.ascontiguousarray(self.point_index, dtype=np.int64)
        self.observations = np.ascontiguousarray(self.observations, dtype=np.float64)
        self.source = str(self.source)
        n = self.observations.shape[0] if self.observations.ndim == 2 else None
        for name, array, shape in (
            ("cameras", self.cameras, (None, 9)),
            ("points", self.points, (None, 3)),
            ("observations", self.observations, (None, 2)),
            ("camera_index", self.camera_index, (n,)),
            ("point_index", self.point_index, (n,)),
        ):
            if array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape)):
                expected = str(tuple("n" if s is None else s for s in shape)).replace("'", "")
                raise ValueError(f"BALProblem.{name} has shape {array.shape}, expected {expected}")

    @property
    def n_cameras(self) -> int:
        """Number of cameras."""
        return self.cameras.shape[0]

    @property
    def n_points(self) -> int:
        """Number of 3-D points."""
        return self.points.shape[0]

    @property
    def n_observations(self) -> int:
        """Number of 2-D observations (residual blocks)."""
        return self.observations.shape[0]

    def copy(self) -> "BALProblem":
        """A deep copy (arrays copied, source kept)."""
        return BALProblem(self.cameras.copy(), self.points.copy(), self.camera_index.copy(),
                          self.point_index.copy(), self.observations.copy(), self.source)

    def validate(self) -> None:
        """Raise ValueError unless the problem could be written as a valid BAL file.

        Checks: at least one camera, point and observation; indices in range; all values finite.
        """
        for name, count in (("cameras", self.n_cameras), ("points", self.n_points),
                            ("observations", self.n_observations)):
            if count == 0:
                raise ValueError(f"BALProblem from {self.source!r} has no {name}")
        for name, index, count in (("camera_index", self.camera_index, self.n_cameras),
                                   ("point_index", self.point_index, self.n_points)):
            bad = np.flatnonzero((index < 0) | (index >= count))
            if bad.size:
                raise ValueError(f"BALProblem.{name}[{bad[0]}] = {index[bad[0]]} out of range [0, {count})")
        for name in ("cameras", "points", "observations"):
            bad = np.argwhere(~np.isfinite(getattr(self, name)))
            if bad.size:
                raise ValueError(f"BALProblem.{name}[{bad[0, 0]}, {bad[0, 1]}] is not finite")


def read_bal(path: PathLike, *, allow_duplicates: bool = False) -> BALProblem:
    """Read a BAL problem from a plain-text or bzip2-compressed file.

    Raises FileNotFoundError / IsADirectoryError / PermissionError (OSError, naming the path) when the
    file cannot be opened, and :class:`BALFormatError` (naming the file and line) for any problem with
    its content: empty file, bad header, zero cameras/points/observations, truncated data, extra
    trailing data, non-numeric or non-finite values, non-integer or out-of-range indices, and two
    observations of the same point by the same camera unless ``allow_duplicates`` is true.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] == b"BZh":
        try:
            data = bz2.decompress(data)
        except (OSError, EOFError, ValueError) as e:
            raise BALFormatError(path, None, f"corrupt bzip2 data: {e}") from None
    elif path.suffix == ".bz2":
        raise BALFormatError(path, None, "the name ends in .bz2 but the file is not bzip2-compressed "
                                         "(it does not start with the bzip2 magic bytes 'BZh')")
    return _Parser(data, str(path)).parse(allow_duplicates)


def write_bal(problem: BALProblem, path: PathLike, *, overwrite_input: bool = False) -> Path:
    """Write ``problem`` as a BAL file (bzip2-compressed when the name ends in .bz2); return the path.

    Values are written with Python's shortest round-trip representation, so reading the file back
    gives bitwise-identical arrays. The write is atomic (see :func:`sparselm.util.atomic.atomic_write`).
    Raises ValueError if the problem is inconsistent (:meth:`BALProblem.validate`) or if ``path`` is
    the file the problem was read from (``problem.source``) and ``overwrite_input`` is false.
    """
    path = Path(path)
    problem.validate()
    if not overwrite_input and _same_file(path, problem.source):
        raise ValueError(f"refusing to overwrite the input file {path} (pass overwrite_input=True)")

    def write(f: BinaryIO) -> None:
        if path.name.endswith(".bz2"):
            with bz2.BZ2File(f, "wb") as z:
                for chunk in _format_chunks(problem):
                    z.write(chunk)
        else:
            for chunk in _format_chunks(problem):
                f.write(chunk)

    return atomic_write(path, write)


def _same_file(path: Path, source: str) -> bool:
    """True when ``source`` names an existing file that ``path`` also names."""
    try:
        return os.path.samefile(path, source)
    except (OSError, ValueError):
        return False


def _format_chunks(problem: BALProblem, rows: int = 100_000) -> Iterator[bytes]:
    """The BAL text of ``problem`` in pieces of at most ``rows`` lines (floats as shortest repr)."""
    yield f"{problem.n_cameras} {problem.n_points} {problem.n_observations}\n".encode()
    # indices travel as floats (exact below 2**53) so that one %-format call formats a whole block
    table = np.column_stack([problem.camera_index, problem.point_index, problem.observations])
    for start in range(0, table.shape[0], rows):
        block = table[start:start + rows]
        yield (("%d %d %r %r\n" * block.shape[0]) % tuple(block.ravel().tolist())).encode()
    for values in (problem.cameras.ravel(), problem.points.ravel()):
        for start in range(0, values.shape[0], rows):
            block = values[start:start + rows].tolist()
            yield (("%r\n" * len(block)) % tuple(block)).encode()


class _Parser:
    """Parses the (decompressed) bytes of one BAL file; reports errors with file and line."""

    def __init__(self, data: bytes, path: str):
        self.data = data
        self.path = path
        self.bytes = np.frombuffer(data, dtype=np.uint8)
        self.counts: Tuple[int, int, int] = (0, 0, 0)  # n_cameras, n_points, n_observations

    def error(self, line: Optional[int], reason: str) -> BALFormatError:
        return BALFormatError(self.path, line, reason)

    # -- the parse ---------------------------------------------------------------------------------

    def parse(self, allow_duplicates: bool) -> BALProblem:
        if not self.data or self.data.isspace():
            raise self.error(None, "the file is empty")
        self.counts = self.parse_header()
        n_cameras, n_points, n_observations = self.counts
        values = self.parse_numbers()
        self.check_count(values.size)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise self.error(self.line_of_token(i), f"{self.describe(i)} is {values[i]}, not a finite number")

        observations = values[3:3 + 4 * n_observations].reshape(n_observations, 4)
        camera_index = self.check_indices(observations, 0, n_cameras)
        point_index = self.check_indices(observations, 1, n_points)
        if not allow_duplicates:
            self.check_duplicates(camera_index, point_index)
        start = 3 + 4 * n_observations
        cameras = values[start:start + 9 * n_cameras].reshape(n_cameras, 9)
        points = values[start + 9 * n_cameras:].reshape(n_points, 3)
        return BALProblem(cameras.copy(), points.copy(), camera_index, point_index,
                          observations[:, 2:], self.path)

    def parse_header(self) -> Tuple[int, int, int]:
        tokens = list(islice(_TOKEN.finditer(self.data), 3))
        counts = []
        for name, token in zip(_HEADER_FIELDS, tokens):
            line = self.line_of_offset(token.start())
            if not _INTEGER.fullmatch(token.group()):
                raise self.error(line, f"header: {name} must be an integer, got {_show(token.group())}")
            value = int(token.group())
            if value <= 0:
                raise self.error(line, f"header: {name} is {value}; a BAL problem needs at least one "
                                       f"camera, one point and one observation")
            counts.append(value)
        if len(tokens) < 3:
            raise self.error(self.line_of_offset(tokens[-1].start()),
                             f"header: expected 3 integers (n_cameras n_points n_observations), "
                             f"the file ends after {len(tokens)}")
        return counts[0], counts[1], counts[2]

    def parse_numbers(self) -> np.ndarray:
        """All values of the file as float64, or BALFormatError at the first token that is not a number."""
        try:
            with warnings.catch_warnings():
                # numpy < 2 stops at the first bad token with a DeprecationWarning instead of raising
                warnings.simplefilter("error", DeprecationWarning)
                values = np.fromstring(self.data, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
        if values is None or values.size != self.count_tokens(len(self.data)):
            match = _NON_NUMBER.search(self.data)
            if match is None:  # defensive: numpy rejected something the grammar accepts
                raise self.error(None, "could not parse the values as numbers")
            offset = match.start()
            i = self.count_tokens(offset)
            raise self.error(self.line_of_offset(offset),
                             f"{self.describe(i)}: {_show(match.group())} is not a number")
        return values

    def check_count(self, found: int) -> None:
        n_cameras, n_points, n_observations = self.counts
        expected = 3 + 4 * n_observations + 9 * n_cameras + 3 * n_points
        layout = (f"3 header + 4*{n_observations} observation + 9*{n_cameras} camera + "
                  f"3*{n_points} point values = {expected}")
        if found < expected:
            raise self.error(self.line_of_token(found - 1),
                             f"the file is truncated: expected {layout}, found {found}; it ends here, "
                             f"before {self.describe(found)}")
        if found > expected:
            raise self.error(self.line_of_token(expected),
                             f"unexpected extra data: {found - expected} value(s) after the last point "
                             f"start here (expected {layout})")

    def check_indices(self, observations: np.ndarray, column: int, count: int) -> np.ndarray:
        """Column ``column`` of the observation table as int64, checked to be integers in [0, count)."""
        values = observations[:, column]
        bad = np.flatnonzero((values < 0) | (values >= count) | (values != np.floor(values)))
        if bad.size:
            k = int(bad[0])
            value = values[k]
            what = _OBSERVATION_FIELDS[column]
            shown = int(value) if value == np.floor(value) else repr(float(value))
            problem = "is not an integer" if value != np.floor(value) else f"out of range [0, {count})"
            raise self.error(self.line_of_token(3 + 4 * k + column), f"observation {k}: {what} {shown} {problem}")
        return values.astype(np.int64)

    def check_duplicates(self, camera_index: np.ndarray, point_index: np.ndarray) -> None:
        key = point_index * self.counts[0] + camera_index
        if np.all(key[1:] > key[:-1]):  # sorted by (point, camera) as in the official files
            return
        order = np.argsort(key, kind="stable")
        equal = np.flatnonzero(key[order[1:]] == key[order[:-1]])
        if equal.size:
            k = equal[np.argmin(order[equal + 1])]  # the pair whose second member comes first
            first, second = int(order[k]), int(order[k + 1])
            lines = [self.line_of_token(3 + 4 * first), self.line_of_token(3 + 4 * second)]
            raise self.error(lines[1], f"observations {first} (line {lines[0]}) and {second} (line {lines[1]}) "
                                       f"both observe point {point_index[first]} from camera "
                                       f"{camera_index[first]} (pass allow_duplicates=True to accept this)")

    # -- locating tokens (only needed for error messages) ------------------------------------------

    def describe(self, i: int) -> str:
        """What the ``i``-th value (0-based) of the file is, e.g. 'camera 2 (f)'."""
        n_cameras, n_points, n_observations = self.counts
        for name, size, fields, count in (
            ("header", 3, _HEADER_FIELDS, 1),
            ("observation", 4, _OBSERVATION_FIELDS, n_observations),
            ("camera", 9, CAMERA_FIELDS, n_cameras),
            ("point", 3, ("x", "y", "z"), n_points),
        ):
            if i < size * count:
                return f"header {fields[i]}" if name == "header" else f"{name} {i // size} ({fields[i % size]})"
            i -= size * count
        return "data after the last point"

    def token_starts(self, end: int) -> Iterator[Tuple[int, np.ndarray]]:
        """(chunk offset, mask of token starts) for the bytes before ``end``, one chunk at a time."""
        previous_is_space = True
        for offset in range(0, end, _CHUNK):
            chunk = self.bytes[offset:min(offset + _CHUNK, end)]
            space = (chunk == 32) | ((chunk >= 9) & (chunk <= 13))
            starts = ~space
            starts[1:] &= space[:-1]
            starts[0] &= previous_is_space
            previous_is_space = bool(space[-1])
            yield offset, starts

    def count_tokens(self, end: int) -> int:
        """Number of tokens that start before byte ``end``."""
        return sum(int(np.count_nonzero(starts)) for _, starts in self.token_starts(end))

    def line_of_token(self, i: int) -> int:
        """1-based line of the ``i``-th token (0-based)."""
        seen = 0
        for offset, starts in self.token_starts(len(self.data)):
            n = int(np.count_nonzero(starts))
            if i < seen + n:
                return self.line_of_offset(offset + int(np.flatnonzero(starts)[i - seen]))
            seen += n
        raise IndexError(f"token {i} of {seen}")

    def line_of_offset(self, offset: int) -> int:
        return self.data.count(b"\n", 0, offset) + 1


def _show(token: bytes, limit: int = 40) -> str:
    """A token for an error message: quoted, non-ASCII escaped, long ones shortened."""
    text = token[:limit].decode("ascii", errors="backslashreplace")
    return repr(text + ("..." if len(token) > limit else ""))
