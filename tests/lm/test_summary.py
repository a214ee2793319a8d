"""sparselm.lm.summary (and what the minimizer puts in it): brief and full reports, the JSON contract,
termination kinds (convergence, no_convergence, user_success), callbacks, the verbose table and the
per-phase times."""
from __future__ import annotations

import json
import math

import pytest

import sparselm
from sparselm import models
from sparselm.lm.summary import TABLE_HEADER, IterationRecord, Summary

JSON_KEYS = {"initial_cost", "final_cost", "iterations", "successful_steps", "unsuccessful_steps", "termination",
             "message", "total_time_s", "phases", "options_used"}


@pytest.fixture
def meyer(make_single_block):
    return make_single_block(models.MEYER, models.CLASSIC_STARTS["meyer"], models.MEYER_DATA)


@pytest.fixture
def solved(meyer, tight):
    return sparselm.solve(meyer, **tight)


def _strict_loads(text):
    """json.loads that refuses NaN / Infinity (not JSON)."""
    def bad(token):
        raise ValueError(f"non-JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def test_convergence_and_reports(solved):
    s = solved
    assert s.termination == "convergence" and s.ok
    assert s.final_cost == pytest.approx(87.9458551 / 2, rel=1e-7)
    brief = s.brief_report()
    assert brief.startswith("sparselm: CONVERGENCE: ")
    assert f"{s.initial_cost:.6e}" in brief and f"{s.final_cost:.6e}" in brief
    assert f"in {s.n_iterations} iterations ({s.successful_steps} successful, {s.unsuccessful_steps} unsuccessful)" \
        in brief
    full = s.full_report()
    for text in ("parameter group x", "residual group  r", "(meyer, loss linear)", f"{s.initial_cost:.6e}",
                 f"{s.final_cost:.6e}", f"Iterations {s.n_iterations} ({s.successful_steps} successful",
                 "Termination: CONVERGENCE", s.message, "residual", "jacobian", "factorization", "solve", "total",
                 "linear_solver                'auto' -> 'dense'", "parameters 3, free 3, residuals 16"):
        assert text in full, text


def test_json_round_trip(solved):
    d = _strict_loads(solved.to_json())
    assert JSON_KEYS <= set(d)
    assert d["initial_cost"] == solved.initial_cost and d["final_cost"] == solved.final_cost
    assert d["termination"] == "convergence" and d["message"] == solved.message
    assert d["successful_steps"] == solved.successful_steps and d["unsuccessful_steps"] == solved.unsuccessful_steps
    assert len(d["iterations"]) == len(solved.iterations) == solved.n_iterations + 1 == d["n_iterations"] + 1
    for rec, orig in zip(d["iterations"], solved.iterations):
        assert rec["cost"] == orig.cost and rec["total_time_s"] == orig.total_time_s
        assert rec["iteration"] == orig.iteration
    times = [rec["total_time_s"] for rec in d["iterations"]]
    assert times == sorted(times) and 0 <= times[-1] <= d["total_time_s"]
    assert d["options_used"]["linear_solver"] == "dense" and d["options_given"]["linear_solver"] == "auto"
    assert d["options_used"]["max_iterations"] == 500 and d["options_used"]["callbacks"] == 0
    assert d["phases"]["jacobian"]["calls"] == solved.successful_steps + 1
    assert all(v["seconds"] >= 0 and v["calls"] >= 1 for v in d["phases"].values())
    assert d["ok"] is True
    assert d["problem"]["residuals"] == 16 and d["problem"]["free_parameters"] == 3
    assert d["linear_solver"]["name"] == "dense"


def test_json_has_no_nan_or_infinity():
    s = Summary(termination="failure", message="m")
    s.iterations.append(IterationRecord(0, 1.0, math.nan, math.inf, 0.0, -math.inf, 1e4, 0, 0.0, 0.0, False))
    d = _strict_loads(s.to_json())
    assert d["initial_cost"] is None and d["final_cost"] is None
    rec = d["iterations"][0]
    assert rec["cost_change"] is None and rec["gradient_max_norm"] is None and rec["tr_ratio"] is None
    assert rec["cost"] == 1.0 and d["ok"] is False


def test_no_convergence_at_max_iterations(meyer):
    s = sparselm.solve(meyer, max_iterations=3)
    assert s.termination == "no_convergence" and s.ok
    assert s.message == "Maximum number of iterations reached (3)."
    assert s.n_iterations == 3 and len(s.iterations) == 4
    assert "NO_CONVERGENCE" in s.brief_report()
    assert _strict_loads(s.to_json())["termination"] == "no_convergence"


def test_callback_stops_with_user_success(meyer):
    seen = []

    def callback(rec):
        assert isinstance(rec, IterationRecord)
        seen.append(rec.iteration)
        return rec.iteration == 4

    s = sparselm.solve(meyer, callbacks=[callback], max_iterations=100)
    assert s.termination == "user_success" and s.ok and "callback" in s.message
    assert seen == [1, 2, 3, 4] and s.n_iterations == 4
    assert s.options_used["callbacks"] == 1
    # a callback that never asks to stop changes nothing
    quiet = []
    s2 = sparselm.solve(meyer, callbacks=[lambda rec: quiet.append(rec) and False], max_iterations=2)
    assert s2.termination == "no_convergence" and len(quiet) == 2


def test_verbose_prints_the_table(meyer, capsys):
    s = sparselm.solve(meyer, max_iterations=5, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == TABLE_HEADER
    assert len(lines) == 1 + len(s.iterations)
    assert lines[1] == s.iterations[0].row()
    assert lines[1].split()[0] == "0" and float(lines[1].split()[1]) == pytest.approx(s.initial_cost, rel=1e-6)


def test_counts_and_times_add_up(meyer, tight):
    s = sparselm.solve(meyer, **dict(tight, parameter_tolerance=0.0))
    assert s.message.startswith("Function tolerance")
    assert s.successful_steps + s.unsuccessful_steps == s.n_iterations
    assert s.successful_steps == sum(r.step_is_successful for r in s.iterations[1:])
    assert s.invalid_steps == sum(not r.step_is_valid for r in s.iterations)
    phases = s.phases
    assert phases["jacobian"]["calls"] == s.successful_steps + 1
    assert phases["residual"]["calls"] == s.n_iterations - s.invalid_steps  # one trial cost per valid step
    assert phases["factorization"]["calls"] == s.n_iterations
    assert 0 <= s.setup_time_s <= s.total_time_s
    assert sum(v["seconds"] for v in phases.values()) <= s.total_time_s * 1.01 + 1e-3
    assert s.environment["numba_threads"] >= 1
    assert s.iterations[0].iteration == 0 and s.iterations[0].step_is_successful
    # set-up, first linearisation and first iteration partition the start of the clock
    assert 0 < s.first_linearization_s and 0 < s.first_iteration_s
    assert s.setup_time_s + s.first_linearization_s + s.first_iteration_s == pytest.approx(s.iterations[1].total_time_s)
    d = s.to_dict()
    assert d["first_iteration_s"] == s.first_iteration_s and d["first_linearization_s"] == s.first_linearization_s
    assert "first iteration" in s.full_report()


def test_summary_defaults():
    s = Summary()
    assert s.termination == "failure" and not s.ok and s.n_iterations == 0
    assert "FAILURE" in s.brief_report() and "Termination: FAILURE" in s.full_report()
    assert math.isnan(s.first_iteration_s) and s.to_dict()["first_iteration_s"] is None
