"""Run every sparselm benchmark and print a short summary (``make bench`` calls this).

    python benchmarks/run_all.py            # full: BAL (real + synthetic 1e5..3e6, Ceres, scipy),
                                            #       random sparse 1e4..1e6, scipy banded 1e5/1e6
                                            #       (about 40-70 minutes on 2 shared cores)
    python benchmarks/run_all.py --quick    # a few minutes: problem-49 (+ scipy with a 120 s guard),
                                            #       problem-16 default tolerances, synthetic 1e5,
                                            #       random sparse 1e4, scipy banded 1e5
    python benchmarks/run_all.py --only bal random_sparse
    make bench ARGS=--quick

Each benchmark is its own script (run as a subprocess, so one failing does not stop the others)
and writes benchmarks/results/<name>.json and .md. Quick mode writes *_quick.json/.md so that it
never overwrites a full run's results. Real BAL files come from $SPARSELM_DATA (default
../shared/bal).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS = ("bal", "random_sparse", "scipy_banded")


def commands(quick: bool):
    """{name: (argv, results name)}."""
    py = sys.executable
    sfx = "_quick" if quick else ""
    cmds = {
        "bal": ([py, str(HERE / "bench_bal.py"), "--out", f"bal{sfx}"] + (["--quick"] if quick else []), f"bal{sfx}"),
        "random_sparse": ([py, str(HERE / "bench_random_sparse.py"), "--out", f"random_sparse{sfx}"]
                          + (["--quick", "--sizes", "10000", "--no-dense"] if quick else []), f"random_sparse{sfx}"),
        "scipy_banded": ([py, str(HERE / "bench_scipy_banded.py"), "--out", str(RESULTS / f"scipy_banded{sfx}")]
                         + (["--sizes", "100000", "--repeats", "1"] if quick else []), f"scipy_banded{sfx}"),
    }
    return cmds


def summarize_bal(name: str) -> list:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return [f"  (no {path.name})"]
    sys.path.insert(0, str(HERE))
    import bench_bal

    data = json.loads(path.read_text())
    an = bench_bal.analyse(data)
    lines = []
    for prob, info in an.items():
        parts = []
        for x in info["rows"]:
            if "run" not in x:
                parts.append(f"{x['label']}: ERROR")
                continue
            r = x["run"]
            lab = {"ceres": "Ceres", "scipy": "scipy"}.get(x["kind"], x["label"])
            t = x.get("ttt")
            parts.append(f"{lab} {1e3 * r['time_per_iter_s']:.1f} ms/it" + (f", {t:.2f} s to 0.1%" if t else ""))
        lines.append(f"  {prob}: " + "; ".join(parts))
    for prob, limit in bench_bal.TARGETS_MS.items():
        x = bench_bal._find(an, prob, "sparse_schur")
        if x:
            t = 1e3 * x["run"]["time_per_iter_s"]
            lines.append(f"  target {prob}: {t:.1f} ms/iter (<= {limit:.0f}: {'met' if t <= limit else 'NOT met'})")
    x = bench_bal._find(an, "problem-49-7776-pre", "sparse_schur")
    if x and (x.get("vs_scipy_ttt") or x.get("vs_scipy_ttt_lower")):
        v = x.get("vs_scipy_ttt") or x.get("vs_scipy_ttt_lower")
        lines.append(f"  target problem-49 vs scipy: {'>' if not x.get('vs_scipy_ttt') else ''}{v:.0f}x "
                     f"(>= 100x: {'met' if v >= 100 else 'NOT met'})")
    return lines


def summarize_random(name: str) -> list:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return [f"  (no {path.name})"]
    sys.path.insert(0, str(HERE))
    import bench_random_sparse

    data = json.loads(path.read_text())
    lines = []
    for m, info in bench_random_sparse.analyse(data).items():
        parts = []
        for x in info["rows"]:
            if "run" not in x:
                parts.append(f"{x['label']}: ERROR")
                continue
            r = x["run"]
            t = x["ttt"].get(1e-6)
            parts.append(f"{x['label']} {1e3 * r['time_per_iter_s']:.1f} ms/it" + (f", {t:.2f} s to 1e-6" if t else "")
                         + (f" ({x['vs_scipy'][1e-6]} vs scipy)" if x.get("vs_scipy") else ""))
        lines.append(f"  m~{m:.0e} ({info['sizes'].get('residuals')}): " + "; ".join(parts))
    return lines


def summarize_banded(name: str) -> list:
    path = RESULTS / f"{name}.md"
    if not path.exists():
        return [f"  (no {path.name})"]
    rows = [l for l in path.read_text().splitlines() if l.startswith("| ") and "analytic" in l]
    out = []
    for l in rows:
        c = [v.strip() for v in l.strip("|").split("|")]
        if len(c) >= 7:
            out.append(f"  {c[0]} m={c[1]}: sparselm {c[4]} s, scipy {c[5]} s ({c[6]})")
    return out or ["  (see " + path.name + ")"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run all sparselm benchmarks.")
    ap.add_argument("--quick", action="store_true", help="small subset, a few minutes")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    ap.add_argument("--summary", action="store_true", help="only print the summary of existing results")
    args = ap.parse_args(argv)
    os.environ.setdefault("SPARSELM_DATA", str((HERE.parent.parent / "shared" / "bal").resolve()))
    cmds = commands(args.quick)
    chosen = args.only or list(BENCHMARKS)
    status = {}
    if not args.summary:
        for name in chosen:
            argv_, _ = cmds[name]
            print(f"=== {name}: {' '.join(Path(a).name if a.endswith('.py') else a for a in argv_[1:])}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call(argv_, cwd=HERE.parent)
            status[name] = (rc, time.perf_counter() - t0)
            print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
    print("\nSummary" + (" (quick)" if args.quick else ""))
    for name in chosen:
        res_name = cmds[name][1]
        head = f"{name}" + (f" (exit {status[name][0]}, {status[name][1]:.0f} s)" if name in status else "")
        print(head + f": benchmarks/results/{res_name}.md")
        try:
            fn = {"bal": summarize_bal, "random_sparse": summarize_random, "scipy_banded": summarize_banded}[name]
            for line in fn(res_name):
                print(line)
        except Exception as exc:  # noqa: BLE001 - the summary must not hide the results
            print(f"  (summary failed: {exc!r})")
    return 0 if all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
