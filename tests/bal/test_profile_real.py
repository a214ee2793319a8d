"""The profile of a real BAL problem (problem-16-22106-pre, $SPARSELM_DATA) checked against CHOLMOD
itself and the solver's own statistics; its JSON contract; plots; ``sparselm doctor``.

Needs the BAL files (the ``bal_data`` fixture skips without them, and fails instead when
SPARSELM_REQUIRE_DATA=1).
"""
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from sparselm.bal.io import read_bal
from sparselm.linalg.cholmod import CholmodFactor
from sparselm.profiling.result import schema_errors
from sparselm.profiling.run import profile

pytestmark = pytest.mark.slow

NAME = "dubrovnik/problem-16-22106-pre.txt.bz2"
PNG = b"\x89PNG\r\n\x1a\n"


_CACHE = {}


@pytest.fixture
def problem16(bal_data):
    path = bal_data / NAME
    if not path.exists():
        pytest.fail(f"{path} is missing from $SPARSELM_DATA")
    return path


@pytest.fixture
def prof16(problem16):
    """sparse_schur (CHOLMOD on S), so that the solver reports its own factor; profiled once per module
    (``bal_data`` is function-scoped, so the result is cached here)."""
    if problem16 not in _CACHE:
        _CACHE[problem16] = profile(problem16, linear_solver="sparse_schur", iterations=10)
    return _CACHE[problem16]


def independent_s_pattern(bal):
    """lower(S)'s scalar pattern from the file alone: camera blocks (i, j) that see a common point."""
    nc = bal.n_cameras
    inc = sp.csr_matrix((np.ones(bal.n_observations), (bal.camera_index, bal.point_index)),
                        shape=(nc, bal.n_points))
    inc.data[:] = 1.0
    blocks = (inc @ inc.T + sp.eye(nc)).tocoo()
    dense_blocks = np.zeros((nc, nc), dtype=bool)
    dense_blocks[blocks.row, blocks.col] = True
    return np.tril(np.kron(dense_blocks, np.ones((9, 9), dtype=bool)))


def test_nnz_and_factor_agree_with_cholmod(prof16, problem16):
    p = prof16
    bal = read_bal(problem16)
    assert p.problem["parameter_groups"]["cameras"]["blocks"] == bal.n_cameras == 16
    assert p.problem["parameter_groups"]["points"]["blocks"] == bal.n_points == 22106
    assert p.problem["residual_blocks"] == bal.n_observations == 83718
    s = p.sparsity
    assert s["jacobian_nnz"] == 2 * 12 * bal.n_observations
    assert s["reduced_columns"] == 144
    # lower(S): same pattern as derived here from the file, and as counted by the solver
    expected = independent_s_pattern(bal)
    got = p.reduced_matrix.toarray() != 0
    np.testing.assert_array_equal(got, expected)
    assert s["reduced_nnz_lower"] == int(expected.sum()) == p.summary.linear_solver["nnz_lower_S"]
    # nnz(L): an independent CholmodFactor on the same S, and the solver's own factor of the real S
    fa = p.factorization
    f = CholmodFactor(p.reduced_matrix, fa["ordering"], fa["mode"])
    assert f.factorize(p.reduced_matrix)
    counts = f.column_counts()
    assert fa["nnz_L"] == f.factor_nnz() == int(counts.sum())
    assert fa["solver_factor_nnz"] == fa["nnz_L"]
    assert fa["flops"] == float(np.sum(counts.astype(float) ** 2))
    assert math.isclose(fa["fill_ratio"], fa["nnz_L"] / s["reduced_nnz_lower"])
    # the co-visibility graph of problem-16 is complete: every camera pair shares a point
    cv = p.covisibility
    assert cv["edges"] == 16 * 15 // 2 and cv["degree"]["min"] == 15
    assert cv["cell_pairs"] == p.summary.linear_solver["cell_pairs"]
    # every available ordering: nnz(L) as CHOLMOD reports it
    for d in p.orderings:
        if d["ok"]:
            g = CholmodFactor(p.reduced_matrix, d["ordering"], fa["mode"])
            assert g.factorize(p.reduced_matrix)
            assert d["nnz_L"] == g.factor_nnz(), d["ordering"]


def test_flop_dominant_phases(prof16):
    """CHOLMOD's flop count for S (144 x 144) is tiny next to forming S (254k 9x9 updates): the profile
    must say so, in flops and in time."""
    p = prof16
    fe = p.flop_estimates
    assert fe["factorization"]["flops_per_call"] == p.factorization["flops"]
    assert p.flop_dominant_phase == "schur_complement"
    assert fe["schur_complement"]["flops"] > 50 * fe["factorization"]["flops"]
    assert p.time_dominant_phase in ("schur_complement", "assembly", "jacobian")
    assert p.phases["factorization"]["seconds"] < p.phases["schur_complement"]["seconds"]
    assert p.solve["final_cost"] < 1e-2 * p.solve["initial_cost"]
    assert p.reprojection["after"]["median"] < p.reprojection["before"]["median"]


def test_json_present_finite_typed(prof16, tmp_path):
    data = json.loads(prof16.to_json())
    assert schema_errors(data) == []
    for key in ("covisibility", "reprojection"):
        assert isinstance(data[key], dict)
    for key in ("reduced_columns", "reduced_blocks", "reduced_nnz_lower", "reduced_density", "eliminated_blocks"):
        assert key in data["sparsity"]
    assert {"schur_complement", "factorization", "solve", "back_substitution", "jacobian"} <= set(data["phases"])
    assert data["jit"]["measured"] is True
    assert "solver_factor_nnz" in data["factorization"]


def test_auto_solver_report_and_plots(problem16, tmp_path):
    pytest.importorskip("matplotlib")
    from sparselm.profiling.plots import write_plots

    p = profile(problem16, iterations=10, jit=False)
    assert schema_errors(json.loads(p.to_json())) == []
    text = p.report()
    assert "lower(S)" in text and "Orderings on lower(S)" in text
    paths = write_plots(p, p.summary, p.problem_object, tmp_path)
    assert sorted(x.name for x in paths) == ["convergence.png", "phases.png", "reprojection.png", "sparsity.png"]
    for x in paths:
        data = x.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


def test_doctor_names_the_blas(capsys):
    from sparselm.cli import main
    from sparselm.profiling.doctor import blas_info

    assert main(["doctor"]) == 0
    out, _ = capsys.readouterr()
    info = blas_info()
    assert info["cholmod"]["kind"] in out and info["cholmod"]["blas"] in out
