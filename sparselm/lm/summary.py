"""What a solve reports: per-iteration records, the final summary and its text/JSON forms."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List

TERMINATIONS = {
    "convergence": "a tolerance was reached",
    "no_convergence": "an iteration or time limit was reached",
    "user_success": "a callback asked to stop",
    "interrupted": "interrupted (Ctrl-C); the best point so far is returned",
    "failure": "the solver could not continue; the best point so far is returned",
}
NORMAL_ENDS = ("convergence", "no_convergence", "user_success")

TABLE_HEADER = (f"{'iter':>4} {'cost':>13} {'cost_change':>11} {'|gradient|':>10} {'|step|':>9} {'tr_ratio':>9} "
                f"{'tr_radius':>9} {'ls_iter':>7} {'iter_time':>9} {'total_time':>10}")


@dataclass
class IterationRecord:
    """One LM iteration (accepted or not). Times in seconds; total_time_s counts from the start.
    ``invalid_reason`` says why an invalid step (``step_is_valid`` False) could not be used."""

    iteration: int
    cost: float
    cost_change: float
    gradient_max_norm: float
    step_norm: float
    tr_ratio: float
    tr_radius: float
    linear_solver_iterations: int
    iteration_time_s: float
    total_time_s: float
    step_is_successful: bool
    step_is_valid: bool = True
    invalid_reason: str = ""

    def row(self) -> str:
        """This record as a row of the Ceres-style iteration table."""
        return (f"{self.iteration:>4d} {self.cost:>13.6e} {self.cost_change:>11.2e} {self.gradient_max_norm:>10.2e} "
                f"{self.step_norm:>9.2e} {self.tr_ratio:>9.2e} {self.tr_radius:>9.2e} "
                f"{self.linear_solver_iterations:>7d} {self.iteration_time_s:>9.2e} {self.total_time_s:>10.2e}")


def _finite_or_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class Summary:
    """The outcome of a solve. Costs are 1/2 sum rho(|whitened residual|^2); times in seconds."""

    termination: str = "failure"
    message: str = ""
    initial_cost: float = math.nan
    final_cost: float = math.nan
    iterations: List[IterationRecord] = field(default_factory=list)
    successful_steps: int = 0
    unsuccessful_steps: int = 0
    invalid_steps: int = 0
    total_time_s: float = 0.0
    setup_time_s: float = 0.0
    setup_phases: Dict[str, float] = field(default_factory=dict)  # seconds per set-up step (layout, ...)
    phases: Dict[str, dict] = field(default_factory=dict)
    linear_solver: Dict[str, object] = field(default_factory=dict)
    problem: Dict[str, object] = field(default_factory=dict)
    options_given: Dict[str, object] = field(default_factory=dict)
    options_used: Dict[str, object] = field(default_factory=dict)
    environment: Dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the solve ended normally (converged, hit a limit, or a callback stopped it)."""
        return self.termination in NORMAL_ENDS

    @property
    def n_iterations(self) -> int:
        """LM iterations done (iteration 0, the initial evaluation, not counted)."""
        return max(0, len(self.iterations) - 1)

    @property
    def first_linearization_s(self) -> float:
        """Seconds from the end of set-up to the end of iteration 0 (first evaluation and linearisation)."""
        return self.iterations[0].total_time_s - self.setup_time_s if self.iterations else math.nan

    @property
    def first_iteration_s(self) -> float:
        """Seconds of LM iteration 1 (solve, trial evaluation, relinearisation when accepted)."""
        return self.iterations[1].total_time_s - self.iterations[0].total_time_s if len(self.iterations) > 1 else math.nan

    def brief_report(self) -> str:
        """One line: termination, costs, iterations and time."""
        return (f"sparselm: {self.termination.upper()}: {self.message} Cost {self.initial_cost:.6e} -> "
                f"{self.final_cost:.6e} in {self.n_iterations} iterations ({self.successful_steps} successful, "
                f"{self.unsuccessful_steps} unsuccessful), {self.total_time_s:.3f} s.")

    def full_report(self) -> str:
        """A multi-line report: problem, linear solver, costs, iterations, time per phase, options."""
        lines = ["sparselm solver report", ""]
        sizes = self.problem
        if sizes:
            lines.append("Problem")
            for name, g in sizes.get("parameter_groups", {}).items():
                tangent = g.get("tangent_size", g["block_size"])
                on = f" on {g['manifold']} (tangent {tangent})" if tangent != g["block_size"] or \
                    not str(g.get("manifold", "euclidean")).startswith("euclidean") else ""
                lines.append(f"  parameter group {name:<12} {g['blocks']:>9} blocks of {g['block_size']}{on}"
                             f"  ({g['constant_blocks']} constant{', eliminated' if g['eliminate'] else ''})")
            for name, r in sizes.get("residual_groups", {}).items():
                lines.append(f"  residual group  {name:<12} {r['blocks']:>9} blocks of {r['residual_size']}"
                             f"  ({r['type']}, loss {r['loss']})")
            lines.append(f"  parameters {sizes.get('parameters', 0)}, free {sizes.get('free_parameters', '?')}, "
                         f"residuals {sizes.get('residuals', 0)}")
            lines.append("")
        if self.linear_solver:
            lines.append("Linear solver")
            for k, v in self.linear_solver.items():
                lines.append(f"  {k:<28} {v}")
            lines.append("")
        lines += ["Cost",
                  f"  initial {self.initial_cost:>24.6e}",
                  f"  final   {self.final_cost:>24.6e}",
                  f"  change  {self.initial_cost - self.final_cost:>24.6e}", "",
                  f"Iterations {self.n_iterations} ({self.successful_steps} successful, "
                  f"{self.unsuccessful_steps} unsuccessful, {self.invalid_steps} invalid)", "",
                  "Time (s)                        seconds     calls"]
        lines.append(f"  {'setup (structure, analysis)':<28} {self.setup_time_s:>10.4f}")
        for name, seconds in self.setup_phases.items():
            lines.append(f"    {name:<26} {seconds:>10.4f}")
        lines.append(f"  {'first linearization':<28} {self.first_linearization_s:>10.4f}")
        lines.append(f"  {'first iteration':<28} {self.first_iteration_s:>10.4f}")
        for name, t in self.phases.items():
            lines.append(f"  {name:<28} {t['seconds']:>10.4f} {t['calls']:>9d}")
        lines.append(f"  {'total':<28} {self.total_time_s:>10.4f}")
        lines.append("")
        changed = {k: v for k, v in self.options_used.items() if self.options_given.get(k, v) != v}
        if changed:
            lines.append("Options resolved (given -> used)")
            for k, v in changed.items():
                lines.append(f"  {k:<28} {self.options_given.get(k)!r} -> {v!r}")
            lines.append("")
        lines.append(f"Termination: {self.termination.upper()} ({TERMINATIONS.get(self.termination, '')})")
        lines.append(f"  {self.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The stable JSON contract (see README): plain data, NaN/Inf as null."""
        d = asdict(self)
        d["iterations"] = [{k: _finite_or_none(v) for k, v in rec.items()} for rec in d["iterations"]]
        d["n_iterations"] = self.n_iterations
        d["first_linearization_s"] = _finite_or_none(self.first_linearization_s)
        d["first_iteration_s"] = _finite_or_none(self.first_iteration_s)
        d["ok"] = self.ok
        for k in ("initial_cost", "final_cost"):
            d[k] = _finite_or_none(d[k])
        return d

    def to_json(self, **kwargs) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), default=str, **kwargs)
