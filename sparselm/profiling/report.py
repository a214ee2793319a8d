"""The text report of a :class:`~sparselm.profiling.result.Profile` (what ``sparselm profile`` prints)."""
from __future__ import annotations

from typing import List

from sparselm.util.units import format_bytes


def _si(n: float) -> str:
    """1234567 -> '1.23M'."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if n != int(n) else f"{int(n)}"


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}" if s < 0.1 else f"{s * 1e3:.1f}"


def format_report(p) -> str:
    """The report of profile ``p``: problem, sparsity, factor, orderings, phases, JIT, memory, machine."""
    L: List[str] = [f"sparselm profile: {p.source}", ""]
    pr, sp_, fa = p.problem, p.sparsity, p.factorization
    L.append("Problem")
    for name, g in pr["parameter_groups"].items():
        tags = [f"{g['constant_blocks']} constant"] if g["constant_blocks"] else []
        tags += ["eliminated"] if g["eliminate"] else []
        L.append(f"  parameter group {name:<14} {g['blocks']:>10,} blocks of {g['block_size']}"
                 + (f"  ({', '.join(tags)})" if tags else ""))
    for name, r in pr["residual_groups"].items():
        L.append(f"  residual group  {name:<14} {r['blocks']:>10,} blocks of {r['residual_size']}  ({r['type']}, "
                 f"loss {r['loss']})")
    L.append(f"  parameters {pr['parameters']:,} (free {pr['free_parameters']:,}), residuals {pr['residuals']:,}")
    L += ["", f"{'Sparsity':<24} {'rows':>10}   {'cols':<9} {'nnz':>12}   density"]
    L.append(f"  {'J':<22} {sp_['jacobian_rows']:>10,} x {sp_['jacobian_columns']:<9,} "
             f"{sp_['jacobian_nnz']:>12,}   {sp_['jacobian_density']:.2e}")
    L.append(f"  {'lower(H), H = J^T J':<22} {sp_['normal_columns']:>10,} x {sp_['normal_columns']:<9,} "
             f"{sp_['normal_nnz_lower']:>12,}   {sp_['normal_density']:.2e}")
    if "reduced_columns" in sp_:
        L.append(f"  {'lower(S), reduced':<22} {sp_['reduced_columns']:>10,} x {sp_['reduced_columns']:<9,} "
                 f"{sp_['reduced_nnz_lower']:>12,}   {sp_['reduced_density']:.2e}")
    if fa.get("ok"):
        label = f"L of {fa['matrix']} (CHOLMOD)"
        L.append(f"  {label:<22} {fa['columns']:>10,} x {fa['columns']:<9,} {fa['nnz_L']:>12,}   "
                 f"fill nnz(L)/nnz(lower {fa['matrix']}) = {fa['fill_ratio']:.2f}")
        L.append(f"  CHOLMOD {'supernodal' if fa['supernodal'] else 'simplicial'} (asked: {fa['mode']}), ordering "
                 f"{fa['ordering']}: {_si(fa['flops'])} flop; ordering + symbolic analysis "
                 f"{_ms(fa['analysis_seconds'])} ms, numeric factorization {_ms(fa['factorization_seconds'])} ms")
        if not fa["solver_uses_cholmod"]:
            L.append(f"  (the solver, {fa['solver']}, does not use CHOLMOD: this is what a sparse factorization of "
                     f"lower({fa['matrix']}) costs)")
        elif "solver_factor_nnz" in fa:
            L.append(f"  the solver's own factor: nnz(L) {fa['solver_factor_nnz']:,}"
                     + (f", ordering + symbolic analysis {_ms(fa['solver_analysis_seconds'])} ms"
                        if "solver_analysis_seconds" in fa else ""))
    cv = p.covisibility
    if cv:
        d, sh = cv["degree"], cv["shared_eliminated_per_edge"]
        tr, ob = cv["kept_per_eliminated"], cv["residuals_per_kept"]
        kept, elim = cv["kept_group"], cv["eliminated_group"]
        L += ["", f"Co-visibility graph of {kept} (two are adjacent when they share a block of {elim})"]
        L.append(f"  {cv['vertices']:,} vertices, {cv['edges']:,} edges (density {cv['edge_density']:.3f}), "
                 f"{cv['isolated_vertices']} isolated")
        for label, st, fmt in ((f"degree (adjacent {kept})", d, ".1f"), (f"{elim} shared per edge", sh, ".1f"),
                               (f"{kept} per {elim} block", tr, ".2f"),
                               (f"residual blocks per {kept} block", ob, ".1f")):
            L.append(f"  {label:<34} min {st['min']:>8.0f}   median {st['median']:>8.0f}   mean {st['mean']:>9{fmt}}"
                     f"   max {st['max']:>8.0f}")
        L.append(f"  Schur: {cv['cells']:,} ({kept}, {elim}) cells, {cv['cell_pairs']:,} cell pairs (S block updates)")
    L += ["", f"Orderings on lower({fa['matrix']}) (CHOLMOD {fa['mode']}; pattern-exact values, best of "
          f"repeated runs)",
          f"  {'ordering':<10} {'nnz(L)':>11} {'fill':>6} {'flop':>11} {'analysis ms':>13} {'factor ms':>11}"]
    for d in p.orderings:
        if not d.get("ok"):
            L.append(f"  {d['ordering']:<10} {d.get('note') or 'failed'}")
            continue
        mark = " <- best (least fill)" if d["ordering"] == p.best_ordering else ""
        mark += " <- fastest" if d["ordering"] == p.fastest_ordering and d["ordering"] != p.best_ordering else ""
        mark += " (used)" if d["ordering"] == fa["ordering"] else ""
        L.append(f"  {d['ordering']:<10} {d['nnz_L']:>11,} {d['fill_ratio']:>6.2f} {_si(d['flops']):>11} "
                 f"{_ms(d['analysis_seconds']):>13} {_ms(d['factorization_seconds']):>11}{mark}")
    s = p.solve
    cg = f", {s['linear_solver_iterations']} CG iterations" if s["linear_solver"] == "iterative_schur" else ""
    L += ["", f"Solve: {s['linear_solver']}, {s['iterations']} iterations ({s['successful_steps']} successful{cg}), "
              f"cost {s['initial_cost']:.6e} -> {s['final_cost']:.6e}, {s['termination'].upper()}"]
    head = f"Time per phase ({s['iterations']} iterations)"
    L.append(f"{head:<42} {'total s':>10} {'calls':>7} {'ms/iter':>9} {'share':>7} {'model flop/call':>17} "
             f"{'GFLOP/s':>9}")
    for name, ph in p.phases.items():
        fe = p.flop_estimates.get(name)
        fl = f"{_si(fe['flops_per_call']):>17} {fe['gflop_per_s']:>9.2f}" if fe else f"{'':>17} {'':>9}"
        L.append(f"  {name:<40} {ph['seconds']:>10.4f} {ph['calls']:>7} {_ms(ph['seconds_per_iteration']):>9} "
                 f"{100 * ph['share']:>6.1f}% {fl}")
    L.append(f"  {'other (LM loop, step, bookkeeping)':<40} {s['other_seconds']:>10.4f} {'':>7} "
             f"{_ms(s['other_seconds'] / max(1, s['iterations'])):>9} "
             f"{100 * s['other_seconds'] / s['loop_seconds'] if s['loop_seconds'] > 0 else 0:>6.1f}%")
    L.append(f"  {'iterations (sum of the above)':<40} {s['loop_seconds']:>10.4f} {'':>7} "
             f"{_ms(s['seconds_per_iteration']):>9}")
    L.append(f"  {'setup (structure, symbolic analysis)':<40} {s['setup_seconds']:>10.4f}")
    L.append(f"  {'total':<40} {s['total_seconds']:>10.4f}")
    L.append(f"  most time: {p.time_dominant_phase}; most model flops: {p.flop_dominant_phase}")
    j = p.jit
    L += ["", "JIT"]
    if j.get("measured"):
        L.append(f"  first-call overhead {j['first_call_overhead_seconds']:.3f} s "
                 f"(first 1-iteration solve {j['first_solve_seconds']:.3f} s, second {j['warm_solve_seconds']:.3f} s)")
        L.append(f"  what it is: {j['what']}")
        top = sorted(j["phase_overhead_seconds"].items(), key=lambda kv: -kv[1])[:4]
        if top:
            L.append("  by phase: " + ", ".join(f"{k} {v:.3f} s" for k, v in top if v > 0)
                     + " (symbolic: structure and analysis, done once per solve)")
        L.append(f"  numba disk cache before: {j['disk_cache_kernels_warm_before']}/{j['disk_cache_kernels']} kernels "
                 f"cached for this CPU")
    else:
        L.append("  not measured (jit=False)")
    if "cold" in j:
        c = j["cold"]
        if c.get("ok"):
            L.append(f"  cold compile (fresh process, empty NUMBA_CACHE_DIR, tiny BA problem, {c['linear_solver']}): "
                     f"{c['compile_seconds']:.1f} s; import sparselm {c['import_seconds']:.2f} s")
        else:
            L.append(f"  cold compile: {c.get('message')}")
    m = p.memory
    L += ["", "Memory",
          f"  peak RSS {format_bytes(m['peak_rss_bytes'])} (process); RSS "
          f"{format_bytes(m['rss_before_solve_bytes'])} before the solve, {format_bytes(m['rss_after_solve_bytes'])} after",
          f"  Jacobian values {format_bytes(m['jacobian_values_bytes'])}, residuals "
          f"{format_bytes(m['residual_values_bytes'])}, lower({m['matrix']}) values "
          f"{format_bytes(m['matrix_values_bytes'])}, L values {format_bytes(m['factor_values_bytes'])}"
          + (f", dense {m['matrix']} {format_bytes(m['dense_matrix_bytes'])}" if "dense_matrix_bytes" in m else "")]
    if p.reprojection:
        b, a = p.reprojection["before"], p.reprojection["after"]
        head = f"Reprojection error (px, {p.reprojection['observations']:,} observations)"
        L += ["", f"{head:<50} {'mean':>10} {'median':>10} {'rms':>10} {'p90':>10} {'max':>10}"]
        for label, e in (("before", b), ("after", a)):
            L.append(f"  {label:<48} {e['mean']:>10.4g} {e['median']:>10.4g} {e['rms']:>10.4g} {e['p90']:>10.4g} "
                     f"{e['max']:>10.4g}")
    t = p.threads
    cpu = p.environment["cpu"]
    L += ["", "Machine and threads",
          f"  CPU {cpu['model']}, {cpu['count']} logical CPUs; numba {t['numba_threads']} threads "
          f"({t['numba_threading_layer']}); CHOLMOD BLAS threads {t['cholmod_blas_threads']}",
          f"  BLAS under CHOLMOD: {p.blas['summary']}",
          f"  numpy BLAS: {p.blas['numpy_blas']} {p.blas['numpy_blas_version']}"]
    v = p.environment["versions"]
    L.append("  " + ", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "scipy", "numba", "scikit-sparse",
                                                      "suitesparse", "sparselm") if k in v))
    if p.warnings:
        L += ["", "Warnings"] + [f"  WARNING: {w}" for w in p.warnings]
    return "\n".join(line.rstrip() for line in L)
