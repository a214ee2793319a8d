"""Fuzz the COLMAP model reader end to end (enabled once sparselm.colmap is in the tree): token mutations
of one file of a small valid text model (a synthetic SIMPLE_RADIAL model written with write_model) are
either refused with a ValueError (ColmapFormatError) or OSError naming the file, or read, bundle-adjusted
and reported with a cost equal to the cost of the adjusted model rebuilt from scratch (the solution
written back into a model, read into a new problem and evaluated: catches write-back and bookkeeping
faults; the projection kernels themselves are checked against pycolmap in tests/colmap)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparselm

from .budget import budget
from .mutation import mutate_lines
from .properties import solved_or_refused, solved_warm_up

if not (Path(sparselm.__file__).parent / "colmap").is_dir():  # not importorskip: an editable install elsewhere
    pytest.skip("the COLMAP reader is not in this tree yet", allow_module_level=True)
from sparselm import colmap  # noqa: E402
from sparselm.colmap.problem import build_problem, solution_to_model  # noqa: E402
from sparselm.colmap.synthetic import synthetic_model  # noqa: E402


def _valid_text_model() -> dict:
    """{file name: bytes} of a small synthetic model in COLMAP's text form."""
    with tempfile.TemporaryDirectory() as folder:
        colmap.write_model(synthetic_model(n_images=4, n_cameras=1, n_points=12, seed=2).initial, Path(folder) / "m",
                           text=True)
        return {p.name: p.read_bytes() for p in (Path(folder) / "m").iterdir()}


VALID = _valid_text_model()
ODD = [b"nan", b"inf", b"1e200", b"1e400", b"-1", b"0", b"abc", b"99999999999", b"1.5", b"", b"PINHOLE", b"#"]
EXTREME = [b"0", b"-0.0", b"1e-300", b"4.9e-324", b"1e-5", b"3.25"]


def adjust_text_model(files: dict, folder: str) -> dict:
    """Write ``files`` as a model folder, read it, bundle-adjust it, and re-evaluate the result from scratch."""
    target = Path(folder) / "model"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for name, data in files.items():
        (target / name).write_bytes(data)
    built = build_problem(colmap.read_model(target))
    summary = sparselm.solve(built.problem, max_iterations=8, threads=1)
    rebuilt = build_problem(solution_to_model(built))
    independent = sparselm.solve(rebuilt.problem, max_iterations=0, gradient_tolerance=0.0).initial_cost
    return {"reported": summary.final_cost, "independent": independent, "termination": summary.termination}


@st.composite
def mutated_models(draw):
    files = dict(VALID)
    name = draw(st.sampled_from(sorted(files)))
    files[name] = mutate_lines(draw, files[name], EXTREME, ODD, first_value=1, times=(1, 1, 2))
    return files


@pytest.fixture(scope="module")
def warm_worker(worker, tmp_path_factory):
    solved_warm_up(worker, adjust_text_model, VALID, str(tmp_path_factory.mktemp("colmap")))
    return worker


@budget(80)
@given(mutated_models())
def test_mutated_colmap_models_are_adjusted_with_their_true_cost_or_refused(warm_worker, tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("colmap")
    names = [str(folder), "residual group", "parameter group"]  # a readable model the builder refuses
    solved_or_refused(warm_worker, "COLMAP reader", names, adjust_text_model, files, str(folder))
