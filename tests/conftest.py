"""Shared fixtures: tight solver options, a seeded RNG, numpy references of the model residuals,
and a random sparse 2-D graph problem (linear offsets + nonlinear ranges + priors) with its
numpy residual function and sparse Jacobian for scipy; ``bal_data``, the folder of real BAL files
($SPARSELM_DATA); ``g2o_file``, the real pose graphs; and Ctrl-C's default handling for the session."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

import sparselm
from sparselm import models

@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises_keyboard_interrupt():
    """SIGINT raises KeyboardInterrupt here and in the processes the tests start, as under a terminal.

    A test session started in the background of a non-interactive shell (``cmd &``) inherits SIGINT
    ignored, Python then leaves it ignored, and so would every child process: the Ctrl-C tests would
    see their signal dropped. A Python handler is reset to the default in a child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        yield
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield


# Tolerances tight enough that every solve stops at the minimum to machine precision.
TIGHT = dict(max_iterations=500, function_tolerance=1e-15, gradient_tolerance=1e-15, parameter_tolerance=1e-15)


def _gaussian(x, d):
    return x[0] * np.exp(-0.5 * ((d[:, 0] - x[1]) / x[2]) ** 2) - d[:, 1]


#: numpy references: type name -> f(x (k,), data (n, d)) -> residuals (n, m), written independently
#: of the kernels in sparselm.residuals.library.
NUMPY_RESIDUALS = {
    "rosenbrock": lambda x, d: np.array([[10 * (x[1] - x[0] ** 2), 1 - x[0]]]),
    "powell_singular": lambda x, d: np.array([[x[0] + 10 * x[1], 5 ** 0.5 * (x[2] - x[3]), (x[1] - 2 * x[2]) ** 2,
                                               10 ** 0.5 * (x[0] - x[3]) ** 2]]),
    "freudenstein_roth": lambda x, d: np.array([[-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
                                                 -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]]]),
    "bard": lambda x, d: (x[0] + d[:, 0] / (d[:, 1] * x[1] + d[:, 2] * x[2]) - d[:, 3])[:, None],
    "meyer": lambda x, d: (x[0] * np.exp(x[1] / (d[:, 0] + x[2])) - d[:, 1])[:, None],
    "exponential": lambda x, d: (x[0] * np.exp(-x[1] * d[:, 0]) - d[:, 1])[:, None],
    "gaussian": lambda x, d: _gaussian(x, d)[:, None],
}


@pytest.fixture
def tight():
    """Keyword options for a solve that converges to machine precision."""
    return dict(TIGHT)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def numpy_residuals():
    return NUMPY_RESIDUALS


def single_block_problem(residual_type, x0, data=None, **kwargs) -> sparselm.Problem:
    """A Problem with one block ``x0`` in group 'x' and one residual group 'r' whose every instance
    (one per data row, or a single one when data is None) touches it."""
    n = 1 if data is None else len(data)
    p = sparselm.Problem()
    p.add_parameter_group("x", np.asarray(x0, dtype=float)[None, :])
    p.add_residual_group("r", residual_type, [("x", np.zeros(n, dtype=np.int64))], data, **kwargs)
    return p


@pytest.fixture
def make_single_block():
    return single_block_problem


def graph_problem(n_points=2000, n_beacons=30, n_loops=2000, seed=7, start_noise=1.0):
    """A random sparse 2-D graph: points (n, 2) and beacons (b, 2); residual groups 'odometry'
    (OFFSET_2D along a chain plus random loop closures, sigma 0.05), 'ranges' (DISTANCE_2D from each
    point to its 2 nearest beacons, sigma 0.1) and 'beacon_prior' (PRIOR_2D, sigma 0.1).

    Returns a namespace with ``problem``, the starting vector ``x0`` = [points.ravel(), beacons.ravel()],
    ``fun(x)`` (whitened residuals) and ``jac(x)`` (scipy CSR) for scipy.optimize.least_squares."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 100, (n_points, 2))
    btruth = rng.uniform(0, 100, (n_beacons, 2))
    chain = np.stack([np.arange(n_points - 1), np.arange(1, n_points)], 1)
    loops = rng.integers(0, n_points, (n_loops, 2))
    edges = np.concatenate([chain, loops[loops[:, 0] != loops[:, 1]]])
    dist_to_beacons = np.linalg.norm(truth[:, None, :] - btruth[None, :, :], axis=2)
    nearest = np.argsort(dist_to_beacons, axis=1)[:, :2]
    ranges = np.stack([np.repeat(np.arange(n_points), 2), nearest.ravel()], 1)
    s_o, s_r, s_b = 0.05, 0.1, 0.1
    d_o = truth[edges[:, 1]] - truth[edges[:, 0]] + s_o * rng.normal(size=(len(edges), 2))
    d_r = np.linalg.norm(truth[ranges[:, 0]] - btruth[ranges[:, 1]], axis=1) + s_r * rng.normal(size=len(ranges))
    b_prior = btruth + s_b * rng.normal(size=(n_beacons, 2))
    p0 = truth + start_noise * rng.normal(size=(n_points, 2))
    b0 = btruth + start_noise * rng.normal(size=(n_beacons, 2))

    problem = sparselm.Problem()
    problem.add_parameter_group("points", p0)
    problem.add_parameter_group("beacons", b0)
    problem.add_residual_group("odometry", models.OFFSET_2D, [("points", edges[:, 0]), ("points", edges[:, 1])],
                               d_o, sigma=s_o)
    problem.add_residual_group("ranges", models.DISTANCE_2D, [("points", ranges[:, 0]), ("beacons", ranges[:, 1])],
                               d_r, sigma=s_r)
    problem.add_residual_group("beacon_prior", models.PRIOR_2D, [("beacons", np.arange(n_beacons))], b_prior,
                               sigma=s_b)
    n2 = 2 * n_points

    def split(x):
        return x[:n2].reshape(-1, 2), x[n2:].reshape(-1, 2)

    def fun(x):
        p, b = split(x)
        return np.concatenate([((p[edges[:, 1]] - p[edges[:, 0]] - d_o) / s_o).ravel(),
                               (np.linalg.norm(p[ranges[:, 0]] - b[ranges[:, 1]], axis=1) - d_r) / s_r,
                               ((b - b_prior) / s_b).ravel()])

    def jac(x):
        p, b = split(x)
        ne, nr = len(edges), len(ranges)
        rows, cols, vals = [], [], []
        for c in range(2):
            r = 2 * np.arange(ne) + c
            rows += [r, r]
            cols += [2 * edges[:, 1] + c, 2 * edges[:, 0] + c]
            vals += [np.full(ne, 1 / s_o), np.full(ne, -1 / s_o)]
        diff = p[ranges[:, 0]] - b[ranges[:, 1]]
        u = diff / np.linalg.norm(diff, axis=1)[:, None] / s_r
        r = 2 * ne + np.arange(nr)
        for c in range(2):
            rows += [r, r]
            cols += [2 * ranges[:, 0] + c, n2 + 2 * ranges[:, 1] + c]
            vals += [u[:, c], -u[:, c]]
        rows.append(2 * ne + nr + np.arange(2 * n_beacons))
        cols.append(n2 + np.arange(2 * n_beacons))
        vals.append(np.full(2 * n_beacons, 1 / s_b))
        shape = (2 * ne + nr + 2 * n_beacons, n2 + 2 * n_beacons)
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)

    return SimpleNamespace(problem=problem, x0=np.concatenate([p0.ravel(), b0.ravel()]), fun=fun, jac=jac)


@pytest.fixture
def make_graph():
    return graph_problem


def values_vector(problem: sparselm.Problem) -> np.ndarray:
    """All parameter values of a problem, group by group, raveled."""
    return np.concatenate([g.values.ravel() for g in problem.parameter_groups.values()])


@pytest.fixture
def flat_values():
    return values_vector


@pytest.fixture(scope="session")
def bal_data() -> Path:
    """$SPARSELM_DATA (the folder of real BAL files) as a Path; skips when unset, fails instead when
    SPARSELM_REQUIRE_DATA=1."""
    folder = os.environ.get("SPARSELM_DATA")
    if not folder:
        message = "SPARSELM_DATA is not set: no real BAL files to test against"
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail(message + " (and SPARSELM_REQUIRE_DATA=1)")
        pytest.skip(message)
    path = Path(folder)
    if not path.is_dir():
        pytest.fail(f"SPARSELM_DATA={folder} is not a directory")
    return path


def g2o_folder() -> Path:
    """$SPARSELM_G2O_DATA, else the folder shared/g2o beside the repository."""
    return Path(os.environ.get("SPARSELM_G2O_DATA") or Path(__file__).resolve().parents[2] / "shared" / "g2o")


@pytest.fixture
def g2o_file():
    """find(name) -> path of the real pose graph name.g2o(.bz2); skips when missing, fails instead
    when SPARSELM_REQUIRE_DATA=1."""
    def find(name: str) -> Path:
        folder = g2o_folder()
        for candidate in (folder / f"{name}.g2o.bz2", folder / f"{name}.g2o"):
            if candidate.is_file():
                return candidate
        message = f"{name}.g2o(.bz2) not found in {folder} (set SPARSELM_G2O_DATA)"
        if os.environ.get("SPARSELM_REQUIRE_DATA") == "1":
            pytest.fail(message + " and SPARSELM_REQUIRE_DATA=1")
        pytest.skip(message)
    return find
