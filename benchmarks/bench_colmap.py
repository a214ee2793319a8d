"""COLMAP bundle adjustment: sparselm against pycolmap 4.2.1's bundle adjuster (Ceres 2.2), side by side.

Cases: the two real models in the COLMAP data folder (``$SPARSELM_COLMAP_DATA``, default
``../shared/colmap``) and one seeded synthetic model per camera model sparselm supports
(:func:`sparselm.colmap.synthetic.synthetic_model`, 24 images, 1500 points, written as a binary model
that both solvers read). Both solve the same objective with the same options: pycolmap's default
``BundleAdjustmentOptions`` (focal length and extra parameters refined, principal point fixed,
trivial loss, 100 iterations, gradient tolerance 1e-4, function and parameter tolerances 0) through
``pycolmap.create_default_bundle_adjuster``; sparselm's ``bundle_adjust`` with the same options
(:data:`sparselm.colmap.adjust.COLMAP_SOLVER_DEFAULTS`).

Each solve runs in its own process (``common.run_worker``), the two solvers one after the other per
case. Measured per solver: iterations, initial and final cost (COLMAP's 0.5 * sum of squared pixel
residuals), whole time (reading the model folder, building the problem, solving, and for sparselm
writing the values back into a model), solve time, time until sparselm's cost first reaches
pycolmap's final cost (counted from the start of the whole run, reading and building included, and
again from the start of ``solve()``, like pycolmap's solve time), and the peak
resident memory of the worker process. sparselm's numba kernels are compiled or loaded from the
on-disk cache by a two-iteration warm-up solve of the same model before the clock starts (its time
is reported as ``warm_up_s``). Each worker times ``--repeats`` runs (3 by default; each reads the model
again and collects the garbage first) and reports the median one: pycolmap's by solve time,
sparselm's by time to pycolmap's final cost (that cost is passed to its worker). The 1-minute load
average before and after every timed run is kept and printed with the table.

    python benchmarks/bench_colmap.py            # all cases -> results/colmap.{json,md}
    python benchmarks/bench_colmap.py --quick    # the real models only
    python benchmarks/bench_colmap.py --cases video-7,PINHOLE   # some cases, printed only
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sets the thread policy and sys.path first)
from common import (PeakMemory, env_line, environment, fmt, md_table, median_run, run_worker, time_to_cost,
                    worker_main, write_json, write_text)

SCRIPT = Path(__file__).resolve()
SHARED = ("sfm-92", "video-7")
SYNTHETIC = dict(n_images=24, n_cameras=3, n_points=1500, seed=11)


def _data_folder() -> Path:
    return Path(os.environ.get("SPARSELM_COLMAP_DATA") or common.REPO.parent / "shared" / "colmap")


def _case_folder(case: dict, tmp: Path) -> Path:
    """The model folder of a case (a synthetic model is written into ``tmp``)."""
    if case["kind"] == "shared":
        return _data_folder() / case["name"] / "sparse" / "0"
    from sparselm.colmap import write_model
    from sparselm.colmap.synthetic import synthetic_model

    return write_model(synthetic_model(case["name"], **SYNTHETIC).initial, tmp / "model")


def _pycolmap_run(pycolmap, folder: Path) -> dict:
    """One timed pycolmap run: read the model, set up the adjuster, solve."""
    gc.collect()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        rec = pycolmap.Reconstruction(str(folder))
        options = pycolmap.BundleAdjustmentOptions()
        options.print_summary = False
        config = pycolmap.BundleAdjustmentConfig()
        for image_id in rec.reg_image_ids():
            config.add_image(image_id)
        adjuster = pycolmap.create_default_bundle_adjuster(options, config, rec)
        t1 = time.perf_counter()
        summary = adjuster.solve()
        t2 = time.perf_counter()
    cs = summary.ceres_summary
    return {"solver": f"pycolmap {pycolmap.__version__}", "initial_cost": cs.initial_cost,
            "final_cost": cs.final_cost, "iterations": int(cs.num_successful_steps + cs.num_unsuccessful_steps) - 1,
            "termination": str(cs.termination_type), "setup_s": t1 - t0, "solve_s": t2 - t1, "whole_s": t2 - t0,
            "images": rec.num_reg_images(), "observations": sum(p.track.length() for p in rec.points3D.values()),
            "memory": mem.as_dict()}


def worker_pycolmap(spec: dict) -> dict:
    import pycolmap

    with tempfile.TemporaryDirectory() as tmp:
        folder = _case_folder(spec["case"], Path(tmp))
        runs = [_pycolmap_run(pycolmap, folder) for _ in range(spec["repeats"])]
    return _with_runs(median_run(runs, "solve_s"), runs, "solve_s")


def _with_runs(chosen: dict, runs: list, key: str) -> dict:
    """The median run's record, with every run's ``key`` figure (seconds) in ``runs_s``."""
    return dict(chosen, runs_s=[r[key] for r in runs], repeats=len(runs))


def _sparselm_run(folder: Path, target_cost) -> dict:
    """One timed sparselm run: read the model, build the problem, solve, write the values back."""
    from sparselm.colmap import read_model
    from sparselm.colmap.adjust import COLMAP_SOLVER_DEFAULTS
    from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem, solution_to_model
    import sparselm

    # earlier runs (the warm-up's compile above all) leave garbage whose collection would otherwise
    # land in this run's clock
    gc.collect()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        model = read_model(folder)
        built = build_problem(model, BundleAdjustmentOptions())
        t1 = time.perf_counter()
        summary = sparselm.solve(built.problem, **COLMAP_SOLVER_DEFAULTS)
        t2 = time.perf_counter()
        solution_to_model(built)
        t3 = time.perf_counter()
    # cost after each accepted iteration, on the whole-run clock (set-up included)
    curve = [[t1 - t0 + r.total_time_s, r.cost] for r in summary.iterations if r.step_is_successful or r.iteration == 0]
    # pycolmap's final cost, to the 1e-9 relative round-off of two summations of the same residuals
    ttc = time_to_cost(curve, target_cost * (1 + 1e-9)) if target_cost is not None else None
    # the same on solve()'s own clock (its set-up included), like pycolmap's solve time
    solve_curve = [[t - (t1 - t0), cost] for t, cost in curve]
    ttc_solve = time_to_cost(solve_curve, target_cost * (1 + 1e-9)) if target_cost is not None else None
    return {"solver": f"sparselm {sparselm.__version__}", "initial_cost": summary.initial_cost,
            "final_cost": summary.final_cost, "iterations": len(summary.iterations) - 1,
            "termination": summary.termination, "setup_s": t1 - t0, "solve_s": t2 - t1, "write_back_s": t3 - t2,
            "whole_s": t3 - t0, "curve": curve, "time_to_target_s": ttc,
            "time_to_target_from_solve_s": ttc_solve, "linear_solver": summary.linear_solver,
            "solve_setup_s": summary.setup_time_s,
            "phases": {k: v["seconds"] for k, v in summary.phases.items()},
            "initial_trust_region_radius": summary.options_used["initial_trust_region_radius"],
            "images": model.n_images, "observations": model.n_observations, "memory": mem.as_dict()}


def worker_sparselm(spec: dict) -> dict:
    from sparselm.colmap import read_model
    from sparselm.colmap.problem import BundleAdjustmentOptions, build_problem
    import sparselm

    with tempfile.TemporaryDirectory() as tmp:
        folder = _case_folder(spec["case"], Path(tmp))
        # warm-up: two iterations on the same model, so that the kernels this case runs are compiled
        # or loaded (the Schur kernels specialised for a block size are compiled once per process)
        t_warm = time.perf_counter()
        sparselm.solve(build_problem(read_model(folder), BundleAdjustmentOptions()).problem, max_iterations=2)
        warm_up_s = time.perf_counter() - t_warm
        runs = [_sparselm_run(folder, spec.get("target_cost")) for _ in range(spec["repeats"])]
    # the median run by time to pycolmap's cost (by whole time when it has none or was never reached)
    key = "time_to_target_s" if all(r["time_to_target_s"] is not None for r in runs) else "whole_s"
    return dict(_with_runs(median_run(runs, key), runs, key), warm_up_s=warm_up_s)


def cases(quick: bool, only=None):
    """The benchmark's cases: the real models, then (unless ``quick``) a synthetic one per camera model;
    ``only`` keeps the named ones (model folder or camera-model names)."""
    out = [{"kind": "shared", "name": n} for n in SHARED]
    if not quick:
        from sparselm.colmap.camera_models import CAMERA_MODELS
        from sparselm.colmap.cameras import PROJECTABLE_MODEL_IDS

        out += [{"kind": "synthetic", "name": CAMERA_MODELS[i].name} for i in PROJECTABLE_MODEL_IDS]
    if only:
        unknown = set(only) - {c["name"] for c in out}
        if unknown:
            raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
        out = [c for c in out if c["name"] in only]
    return out


def run(args) -> dict:
    results = []
    for case in cases(args.quick, args.cases):
        row = {"case": case}
        for task in ("pycolmap", "sparselm"):
            print(f"  {case['name']}: {task} ...", flush=True)
            spec = {"task": task, "case": case, "repeats": args.repeats}
            if task == "sparselm" and "error" not in row["pycolmap"]:
                spec["target_cost"] = row["pycolmap"]["final_cost"]
            row[task] = run_worker(SCRIPT, spec, timeout=1200, quiet_wait_s=5)
            if "error" in row[task]:
                print(f"    {row[task]['error']}: {row[task].get('stderr_tail', '')[-400:]}", flush=True)
        p, s = row["pycolmap"], row["sparselm"]
        if "error" not in p and "error" not in s:
            row["sparselm_time_to_pycolmap_cost_s"] = s["time_to_target_s"]
        results.append(row)
    return {"environment": environment(), "results": results, "repeats": args.repeats}


def report(data: dict) -> str:
    env = data["environment"]
    rows = []
    for r in data["results"]:
        p, s = r["pycolmap"], r["sparselm"]
        if "error" in p or "error" in s:
            rows.append([r["case"]["name"], "error", "", "", "", "", "", "", "", "", ""])
            continue
        ttc = r.get("sparselm_time_to_pycolmap_cost_s")
        rows.append([
            r["case"]["name"] + (" (synthetic)" if r["case"]["kind"] == "synthetic" else ""),
            s["images"], s["observations"], f"{p['iterations']} / {s['iterations']}",
            f"{p['final_cost']:.10g} / {s['final_cost']:.10g}",
            f"{p['whole_s']:.3f} / {s['whole_s']:.3f}", f"{p['solve_s']:.3f} / {s['solve_s']:.3f}",
            fmt(ttc, ".3f") + (f" ({ttc / p['solve_s']:.2f}x)" if ttc is not None else " (not reached)"),
            _from_solve(s.get("time_to_target_from_solve_s"), p["solve_s"]),
            f"{p['memory']['solve_peak_rss_mb']:.0f} / {s['memory']['solve_peak_rss_mb']:.0f}",
        ])
    table = md_table(["model", "images", "observations", "iterations pycolmap / sparselm",
                      "final cost pycolmap / sparselm", "whole time s", "solve time s",
                      "sparselm time to pycolmap's final cost, s (x pycolmap solve)",
                      "the same from the start of solve(), s (x pycolmap solve)", "peak RSS MB"], rows)
    return (f"# COLMAP bundle adjustment: sparselm vs pycolmap\n\n{env_line(env)}\n\n"
            "Same objective (COLMAP's 0.5 * sum of squared pixel residuals over observations in front of their "
            "camera) and options (pycolmap's default BundleAdjustmentOptions: focal length and extra parameters "
            "refined, principal point fixed, trivial loss, at most 100 iterations, gradient tolerance 1e-4, "
            "function and parameter tolerances 0), each solve in its own process, measured in one run by "
            "`python benchmarks/bench_colmap.py`. Whole time = reading the model folder + building the problem + "
            "solving (+ sparselm writing the values back into a model); solve time = the solver alone; time to "
            "pycolmap's final cost (within 1e-9 relative) counts from the start of the whole run (reading and "
            "building included) and is compared with pycolmap's solve time, which counts neither; the next column "
            "counts it like pycolmap's, from the start of `solve()` (sparselm's solver set-up included, as "
            "pycolmap's `solve()` includes Ceres' preprocessing). Each worker timed " + f"{data.get('repeats', 1)}" + " runs of its solver "
            "(each reading the model again) and the median run is shown: pycolmap's by solve time, sparselm's "
            "by time to pycolmap's final cost. Peak RSS is the worker process's high-water mark during the run (interpreter "
            "and libraries included). sparselm's numba kernels were compiled or loaded by an untimed two-iteration "
            "solve of the same model before the clock started (sparselm's radius: the COLMAP format's initial "
            "trust-region radius 1e6).\n\n" + table + "\n\n" + _load_line(data) + "\n\n" + _phase_table(data) + "\n")


def _from_solve(ttc, pycolmap_solve_s) -> str:
    """The time to pycolmap's cost on solve()'s clock, and its ratio to pycolmap's solve time."""
    if ttc is None:
        return "–"
    return f"{ttc:.4f} ({ttc / pycolmap_solve_s:.2f}x)"


def _load_line(data: dict) -> str:
    """The 1-minute load averages seen around the timed runs (the machine is shared)."""
    loads = [v for r in data["results"] for w in (r["pycolmap"], r["sparselm"]) if "error" not in w
             for v in (w["memory"].get("loadavg_before", [None])[:1] + w["memory"].get("loadavg_after", [None])[:1])
             if v is not None]
    if not loads:
        return "Load average: unknown."
    return (f"1-minute load average around the timed runs: {min(loads):.2f} to {max(loads):.2f} "
            f"({os.cpu_count()} CPUs; each worker runs up to 2 threads, so a figure well above 2 means other "
            "processes shared the cores and the timings are inflated).")


PHASES = ("jacobian", "assembly", "schur_complement", "factorization", "solve", "back_substitution", "residual")


def _phase_table(data: dict) -> str:
    """Where sparselm's time goes: set-up outside and inside solve(), then summary.phases per iteration."""
    rows = []
    for r in data["results"]:
        s = r["sparselm"]
        if "error" in s or "phases" not in s:
            continue
        n = max(s["iterations"], 1)
        rows.append([r["case"]["name"], s["linear_solver"]["name"], f"{1e3 * s['setup_s']:.1f}",
                     f"{1e3 * s['solve_setup_s']:.1f}", f"{s['warm_up_s']:.1f}"]
                    + [f"{1e3 * s['phases'].get(k, 0.0) / n:.2f}" for k in PHASES])
    return ("sparselm's time by phase (ms; set-up = reading + building the problem, solve set-up = layout, "
            "solver choice, memory estimate, allocation and symbolic analysis inside `solve()`; the phases are "
            "per iteration, from `summary.phases`; warm-up s = the untimed two-iteration solve that compiled or "
            "loaded the kernels):\n\n"
            + md_table(["model", "linear solver", "set-up", "solve set-up", "warm-up s"] + list(PHASES), rows))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker_main({"pycolmap": worker_pycolmap, "sparselm": worker_sparselm}, ["--worker"] + argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the real models only")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per solver and case in its worker; the median run is reported")
    parser.add_argument("--cases", type=lambda s: s.split(","), default=None,
                        help="comma-separated case names (e.g. video-7,PINHOLE); the results are printed, not written")
    args = parser.parse_args(argv)
    data = run(args)
    text = report(data)
    if args.cases is None:
        write_json("colmap", data)
        write_text("colmap.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
