"""sparselm.distributed.partition: the camera partition, point ownership and the ranks' problems (no MPI)."""
import numpy as np
import pytest

import sparselm
from sparselm.bal import build_problem, synthetic_problem
from sparselm.distributed.partition import (NotDistributable, covisibility_graph, local_problem, make_partition,
                                            partition_kept)


@pytest.fixture(scope="module")
def problem():
    return build_problem(synthetic_problem(80, 4000, 5.0, seed=7).initial, fix_cameras=[0])


@pytest.mark.parametrize("method", ["metis", "contiguous"])
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_every_point_lives_where_most_of_its_cameras_are(problem, method, ranks):
    part = make_partition(problem, ranks, method)
    rg = problem.residual_groups[0]
    cam, pt = rg.index[:, 0], rg.index[:, 1]
    votes = np.zeros((problem.parameter_groups["points"].n_blocks, ranks), dtype=int)
    np.add.at(votes, (pt, part.kept_part[cam]), 1)
    assert np.array_equal(part.eliminated_owner, np.argmax(votes, axis=1))
    # every residual block lives with its point
    assert np.array_equal(part.instance_owner[0], part.eliminated_owner[pt])
    assert sorted(set(part.eliminated_owner.tolist())) == list(range(ranks))


@pytest.mark.parametrize("ranks", [2, 4])
def test_metis_cuts_the_banded_camera_graph_better_than_chance(problem, ranks):
    """METIS balances observations and keeps co-visible cameras together: the cut is far below a random split's."""
    rg = problem.residual_groups[0]
    cam, pt = rg.index[:, 0], rg.index[:, 1]
    n_cam = problem.parameter_groups["cameras"].n_blocks
    xadj, adjncy, ew, vw = covisibility_graph(cam, pt, n_cam, problem.parameter_groups["points"].n_blocks)

    def cut(parts):
        src = np.repeat(np.arange(n_cam), np.diff(xadj))
        return int(ew[parts[src] != parts[adjncy]].sum())

    parts, method = partition_kept(cam, pt, n_cam, problem.parameter_groups["points"].n_blocks, ranks, "metis")
    assert method == "metis"
    random_parts = np.random.default_rng(0).integers(0, ranks, n_cam)
    assert cut(parts) < 0.25 * cut(random_parts)
    load = np.bincount(parts, weights=vw, minlength=ranks)
    assert load.max() <= 1.2 * load.mean()


def test_local_problems_partition_the_residuals_and_keep_every_camera(problem):
    part = make_partition(problem, 3)
    rg = problem.residual_groups[0]
    seen = []
    for r in range(3):
        mine = local_problem(problem, part, r)
        cams = mine.parameter_groups["cameras"]
        assert np.array_equal(cams.values, problem.parameter_groups["cameras"].values)
        assert np.array_equal(cams.constant, problem.parameter_groups["cameras"].constant)
        pts = mine.parameter_groups["points"]
        ids = part.blocks_of(r)
        assert np.array_equal(pts.values, problem.parameter_groups["points"].values[ids])
        lrg = mine.residual_groups[0]
        rows = np.flatnonzero(part.instance_owner[0] == r)
        assert np.array_equal(ids[lrg.index[:, 1]], rg.index[rows, 1])  # local point ids map back
        assert np.array_equal(lrg.data, rg.data[rows])
        seen.append(rows)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(rg.n_instances))


def test_not_distributable_problems_are_refused_with_a_reason(problem):
    with pytest.raises(NotDistributable, match="at most"):
        make_partition(problem, problem.parameter_groups["points"].n_blocks + 1)
    plain = sparselm.Problem()
    plain.add_parameter_group("x", np.zeros((3, 2)))
    with pytest.raises(NotDistributable, match="exactly one eliminated"):
        make_partition(plain, 2)
