"""The NIST StRD nonlinear regression problems: a reader for the .dat files and the model functions.

NIST's Statistical Reference Datasets (public domain) give for each problem the data, two starting
points ('Start 1' far, 'Start 2' near) and certified parameter values. The files in ``nist/`` keep
NIST's layout for the parts a solver needs: the model line, the table of starting and certified
values (``b1 = start1 start2 certified [sd]``), optionally the certified residual sum of squares,
and the data block after the last line that starts with ``Data:`` (response first, then the
predictors); NIST's prose header is left out. The reader accepts NIST's complete files too. The
values were transcribed from public copies of NIST's files (Ceres Solver keeps them in data/nist);
test_nist.py checks every file against NIST's certified residual sum of squares at the certified
parameters, which a wrong data value would break.

Each model is the NIST formula y = f(x; b) with its analytic Jacobian df/db; the residual is
f(x; b) - y (for Nelson, whose model is for log y: f - log y). Accuracy is measured as NIST's log
relative error, LRE = -log10(|b - b_cert| / |b_cert|), capped at 11 (the certified digits).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NIST_DIR = Path(__file__).parent / "nist"
CERTIFIED_DIGITS = 11.0

#: NIST's order of the problems: lower, average, then higher difficulty.
PROBLEMS = ("Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1", "Gauss2", "DanWood", "Misra1b",
            "Kirby2", "Hahn1", "Nelson", "MGH17", "Lanczos1", "Lanczos2", "Gauss3", "Misra1c", "Misra1d",
            "Roszman1", "ENSO", "MGH09", "Thurber", "BoxBOD", "Rat42", "MGH10", "Eckerle4", "Rat43", "Bennett5")


@dataclass
class NistProblem:
    """One NIST problem: data y (m,), predictors x (m, k), starts (2, n), certified (n,)."""

    name: str
    y: np.ndarray
    x: np.ndarray
    starts: np.ndarray
    certified: np.ndarray
    certified_rss: float | None

    def residual(self, b):
        return MODELS[self.name][0](np.asarray(b, dtype=float), self.x) - self.response

    def jacobian(self, b):
        return MODELS[self.name][1](np.asarray(b, dtype=float), self.x)

    @property
    def response(self) -> np.ndarray:
        return np.log(self.y) if self.name == "Nelson" else self.y


_PARAMETER_LINE = re.compile(r"^\s*b(\d+)\s*=\s*(.*)$")


def read_dat(path: Path) -> NistProblem:
    """Parse a NIST StRD nonlinear regression .dat file (ValueError naming file and line if malformed)."""
    lines = Path(path).read_text().splitlines()
    starts, certified, rss, data_start = [], [], None, None
    for number, line in enumerate(lines, 1):
        match = _PARAMETER_LINE.match(line)
        if match:
            fields = match.group(2).split()
            if len(fields) < 3:
                raise ValueError(f"{path}:{number}: expected 'bK = start1 start2 certified', got {line.strip()!r}")
            starts.append([float(fields[0]), float(fields[1])])
            certified.append(float(fields[2]))
        elif line.strip().startswith("Residual Sum of Squares:"):
            rss = float(line.split(":")[1])
        elif line.startswith("Data:"):
            data_start = number
    if not certified or data_start is None:
        raise ValueError(f"{path}: no parameter table or no data block")
    rows = []
    for number, line in enumerate(lines[data_start:], data_start + 1):
        if line.strip():
            try:
                rows.append([float(v) for v in line.split()])
            except ValueError:
                raise ValueError(f"{path}:{number}: not a data row: {line.strip()!r}") from None
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise ValueError(f"{path}: data rows of different widths {sorted(width)}")
    data = np.array(rows)
    return NistProblem(Path(path).stem, data[:, 0], data[:, 1:], np.array(starts).T.copy(), np.array(certified), rss)


def load(name: str) -> NistProblem:
    return read_dat(NIST_DIR / f"{name}.dat")


def lre(estimate, certified) -> np.ndarray:
    """NIST's log relative error per parameter (correct significant digits), capped at 11."""
    estimate, certified = np.asarray(estimate, float), np.asarray(certified, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(estimate - certified) / np.abs(certified)
        digits = np.where(err == 0, CERTIFIED_DIGITS, -np.log10(err))
    digits = np.where(np.isfinite(digits), digits, 0.0)
    return np.clip(digits, 0.0, CERTIFIED_DIGITS)


# -- the models: (f(b, x) -> (m,), df/db(b, x) -> (m, n)) -------------------------------------------
def _columns(*cols):
    return np.column_stack(cols)


def _exp_rise(b, x):  # Misra1a, BoxBOD: b1 (1 - exp(-b2 x))
    t = x[:, 0]
    e = np.exp(-b[1] * t)
    return b[0] * (1 - e), _columns(1 - e, b[0] * t * e)


def _chwirut(b, x):
    t = x[:, 0]
    e, d = np.exp(-b[0] * t), b[1] + b[2] * t
    f = e / d
    return f, _columns(-t * f, -e / d ** 2, -t * e / d ** 2)


def _three_exp(b, x):  # Lanczos: b1 e^{-b2 x} + b3 e^{-b4 x} + b5 e^{-b6 x}
    t = x[:, 0]
    f, cols = 0.0, []
    for k in range(0, 6, 2):
        e = np.exp(-b[k + 1] * t)
        f = f + b[k] * e
        cols += [e, -b[k] * t * e]
    return f, _columns(*cols)


def _gauss(b, x):
    t = x[:, 0]
    e0 = np.exp(-b[1] * t)
    f, cols = b[0] * e0, [e0, -b[0] * t * e0]
    for k in (2, 5):
        u = (t - b[k + 1]) / b[k + 2]
        e = np.exp(-u * u)
        f = f + b[k] * e
        cols += [e, 2 * b[k] * e * u / b[k + 2], 2 * b[k] * e * u * u / b[k + 2]]
    return f, _columns(*cols)


def _danwood(b, x):
    t = x[:, 0]
    p = t ** b[1]
    return b[0] * p, _columns(p, b[0] * p * np.log(t))


def _misra1b(b, x):
    t = x[:, 0]
    s = 1 + b[1] * t / 2
    return b[0] * (1 - s ** -2), _columns(1 - s ** -2, b[0] * t * s ** -3)


def _misra1c(b, x):
    t = x[:, 0]
    s = 1 + 2 * b[1] * t
    return b[0] * (1 - s ** -0.5), _columns(1 - s ** -0.5, b[0] * t * s ** -1.5)


def _misra1d(b, x):
    t = x[:, 0]
    s = 1 + b[1] * t
    return b[0] * b[1] * t / s, _columns(b[1] * t / s, b[0] * t / s ** 2)


def _rational(n_num):
    """(b1 + b2 x + ...) / (1 + b_{k+1} x + ...) with n_num numerator coefficients."""

    def model(b, x):
        t = x[:, 0]
        num = sum(b[k] * t ** k for k in range(n_num))
        den = 1 + sum(b[n_num + k] * t ** (k + 1) for k in range(b.size - n_num))
        cols = [t ** k / den for k in range(n_num)] + [-num * t ** (k + 1) / den ** 2 for k in range(b.size - n_num)]
        return num / den, _columns(*cols)

    return model


def _nelson(b, x):  # log y = b1 - b2 x1 exp(-b3 x2)
    t1, t2 = x[:, 0], x[:, 1]
    e = np.exp(-b[2] * t2)
    return b[0] - b[1] * t1 * e, _columns(np.ones_like(t1), -t1 * e, b[1] * t1 * t2 * e)


def _mgh17(b, x):
    t = x[:, 0]
    e4, e5 = np.exp(-t * b[3]), np.exp(-t * b[4])
    return b[0] + b[1] * e4 + b[2] * e5, _columns(np.ones_like(t), e4, e5, -t * b[1] * e4, -t * b[2] * e5)


def _roszman1(b, x):
    t = x[:, 0]
    d = t - b[3]
    q = 1 + (b[2] / d) ** 2
    return (b[0] - b[1] * t - np.arctan(b[2] / d) / math.pi,
            _columns(np.ones_like(t), -t, -1 / (math.pi * d * q), -b[2] / (math.pi * d * d * q)))


def _enso(b, x):
    t = x[:, 0]
    w = 2 * math.pi * t
    c12, s12 = np.cos(w / 12), np.sin(w / 12)
    f = b[0] + b[1] * c12 + b[2] * s12
    cols = [np.ones_like(t), c12, s12]
    for k in (3, 6):  # period b[k], amplitudes b[k+1], b[k+2]
        c, s = np.cos(w / b[k]), np.sin(w / b[k])
        f = f + b[k + 1] * c + b[k + 2] * s
        dperiod = (b[k + 1] * s - b[k + 2] * c) * w / b[k] ** 2
        cols += [dperiod, c, s]
    return f, _columns(*cols)


def _mgh09(b, x):
    t = x[:, 0]
    num, den = t * t + t * b[1], t * t + t * b[2] + b[3]
    return b[0] * num / den, _columns(num / den, b[0] * t / den, -b[0] * num * t / den ** 2, -b[0] * num / den ** 2)


def _rat42(b, x):
    t = x[:, 0]
    e = np.exp(b[1] - b[2] * t)
    f = b[0] / (1 + e)
    g = -b[0] * e / (1 + e) ** 2
    return f, _columns(1 / (1 + e), g, -t * g)


def _mgh10(b, x):
    t = x[:, 0]
    e = np.exp(b[1] / (t + b[2]))
    return b[0] * e, _columns(e, b[0] * e / (t + b[2]), -b[0] * e * b[1] / (t + b[2]) ** 2)


def _eckerle4(b, x):
    t = x[:, 0]
    u = (t - b[2]) / b[1]
    e = np.exp(-0.5 * u * u)
    f = b[0] / b[1] * e
    return f, _columns(e / b[1], f * (u * u - 1) / b[1], f * u / b[1])


def _rat43(b, x):
    t = x[:, 0]
    e = np.exp(b[1] - b[2] * t)
    s = 1 + e
    f = b[0] * s ** (-1 / b[3])
    g = -f * e / (b[3] * s)
    return f, _columns(f / b[0], g, -t * g, f * np.log(s) / b[3] ** 2)


def _bennett5(b, x):
    t = x[:, 0]
    s = b[1] + t
    f = b[0] * s ** (-1 / b[2])
    return f, _columns(f / b[0], -f / (b[2] * s), f * np.log(s) / b[2] ** 2)


def _split(model):
    return (lambda b, x: model(b, x)[0]), (lambda b, x: model(b, x)[1])


_MODEL_OF = {"Misra1a": _exp_rise, "BoxBOD": _exp_rise, "Chwirut1": _chwirut, "Chwirut2": _chwirut,
             "Lanczos1": _three_exp, "Lanczos2": _three_exp, "Lanczos3": _three_exp, "Gauss1": _gauss,
             "Gauss2": _gauss, "Gauss3": _gauss, "DanWood": _danwood, "Misra1b": _misra1b, "Misra1c": _misra1c,
             "Misra1d": _misra1d, "Kirby2": _rational(3), "Hahn1": _rational(4), "Thurber": _rational(4),
             "Nelson": _nelson, "MGH17": _mgh17, "Roszman1": _roszman1, "ENSO": _enso, "MGH09": _mgh09,
             "Rat42": _rat42, "MGH10": _mgh10, "Eckerle4": _eckerle4, "Rat43": _rat43, "Bennett5": _bennett5}

#: name -> (f(b, x), df/db(b, x))
MODELS = {name: _split(model) for name, model in _MODEL_OF.items()}
