"""Straight-line small-block products that LLVM turns into SIMD code.

The Schur kernels spend their time in tiny dense products (BA: 9x9 blocks of S from 9x3 factors,
9x9 and 9x3 blocks of J^T J from 2-row Jacobians). Written as loops with compile-time bounds,
LLVM unrolls them fully and then needs its SLP (straight-line) vectoriser to form SIMD
instructions, but numba disables that pass by default (``NUMBA_SLP_VECTORIZE=0``) and the loop
vectoriser gives up on trip counts this short. So the products are generated here as
straight-line code that loads every operand before the first store (no aliasing question for the
vectoriser), and the kernels that inline them are compiled inside :func:`slp_vectorization`,
which turns the SLP pass on for that compilation only. On an Intel Xeon (2.6 GHz, AVX-512) a
stream of 9x9x3 pair updates ran at 9.8 GFLOP/s per core in loop form (scalar) and ~28 GFLOP/s as
straight-line code with SLP: 4-wide (256-bit) FMA, since LLVM prefers 256-bit vectors on this CPU
family (the AVX-512 width is not used). ``benchmarks/bench_schur_kernels.py`` measures the kernels.

Only FMA contraction is allowed (``fastmath={"contract"}``): no reassociation, no assumptions
about NaN or infinity, so a non-finite input still propagates and is detected by the callers.
Results may differ from the loop form in the last bits (a fused multiply-add rounds once).
"""
from __future__ import annotations

import contextlib
import os
import types
from functools import lru_cache
from typing import Callable, Iterator

import numba

CONTRACT = {"contract"}
_SLP_VARIABLE = "NUMBA_SLP_VECTORIZE"
#: whether :func:`slp_vectorization` turns the SLP pass on. Off: with it on, a process that compiled the
#: Schur kernels itself ended a solve a few ulps away from processes that loaded the same kernels from
#: numba's disk cache (three processes, one empty cache: the first differed, the other two agreed; with
#: the switch off all three agree), which breaks the bitwise reproducibility promise. The cause was not
#: found; the kernels keep their straight-line form, so turning this on again is one line once it is.
SLP_ENABLED = False


@contextlib.contextmanager
def slp_vectorization() -> Iterator[None]:
    """Compile (first call of a kernel) with LLVM's SLP vectoriser on; numba's setting is restored after.

    Wrap every call of a kernel that inlines :func:`outer_product_accumulator`: the first call
    compiles (or loads the cached machine code), later calls only pay the attribute flip."""
    if not SLP_ENABLED:
        yield
        return
    # numba re-reads its NUMBA_* environment at the first compilation after one of them changed (as
    # importing sparselm does when numba was imported first), which would reset SLP_VECTORIZE to the
    # environment's value: the environment says 1 too inside the block. (Calling reload_config here
    # instead scans all of os.environ: 0.2 ms per call, 25 calls per solve.)
    old, old_env = numba.config.SLP_VECTORIZE, os.environ.get(_SLP_VARIABLE)
    os.environ[_SLP_VARIABLE] = "1"
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        if old_env is None:
            del os.environ[_SLP_VARIABLE]
        else:
            os.environ[_SLP_VARIABLE] = old_env
        numba.config.SLP_VECTORIZE = old


def _source(n_rows: int, n_cols: int, depth: int, assign: bool, lower: bool) -> str:
    """Python source of ``accumulate(out, a, a_off, b, b_off)``:
    out[c, r] (+)= sum_k a[k, a_off + r] * b[k, b_off + c]  (r < n_rows, c < n_cols; r >= c if lower)."""
    lines = ["def accumulate(out, a, a_off, b, b_off):"]
    for k in range(depth):
        lines += [f"    a{k}_{r} = a[{k}, a_off + {r}]" for r in range(n_rows)]
        lines += [f"    b{k}_{c} = b[{k}, b_off + {c}]" for c in range(n_cols)]
    op = "=" if assign else "+="
    for c in range(n_cols):
        for r in range(c if lower else 0, n_rows):
            lines.append(f"    out[{c}, {r}] {op} " + " + ".join(f"a{k}_{r} * b{k}_{c}" for k in range(depth)))
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=None)
def outer_product_accumulator(n_rows: int, n_cols: int, depth: int, assign: bool = False, lower: bool = False):
    """An inlined numba function ``accumulate(out, a, a_off, b, b_off)`` adding A^T B to ``out``.

    ``out[c, r] += sum_k a[k, a_off + r] * b[k, b_off + c]`` for r < n_rows, c < n_cols: the
    (c, r) entry of B^T A, i.e. ``out`` holds a column-major n_rows x n_cols block. Every operand
    is read before ``out`` is written. ``assign``: store the product instead of adding it (a first
    contribution: ``out`` need not be zeroed). ``lower``: only the entries r >= c (a symmetric
    product A^T A whose upper part nobody reads); the others are left untouched."""
    namespace: dict = {}
    variant = (" assign" if assign else "") + (" lower" if lower else "")
    name = f"<outer_product_accumulator {n_rows}x{n_cols}x{depth}{variant}>"
    exec(compile(_source(n_rows, n_cols, depth, assign, lower), name, "exec"), namespace)  # noqa: S102 - our own source
    return numba.njit(inline="always", fastmath=CONTRACT)(namespace["accumulate"])


@lru_cache(maxsize=None)
def transposed_product_accumulator(n_rows: int, depth: int):
    """An inlined numba function ``accumulate(out, a, x, x_off)`` adding A^T x to the vector ``out``:
    ``out[r] += sum_k a[k, r] * x[x_off + k]`` for r < n_rows, k < depth (A is depth x n_rows). Each sum
    is formed in registers and added to ``out`` once, so consecutive calls on one ``out`` do not wait
    on each other's stores."""
    lines = ["def accumulate(out, a, x, x_off):"]
    lines += [f"    x{k} = x[x_off + {k}]" for k in range(depth)]
    lines += [f"    a{k}_{r} = a[{k}, {r}]" for k in range(depth) for r in range(n_rows)]
    lines += [f"    out[{r}] += " + " + ".join(f"a{k}_{r} * x{k}" for k in range(depth)) for r in range(n_rows)]
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", f"<transposed_product_accumulator {n_rows}x{depth}>", "exec"),  # noqa: S102
         namespace)
    return numba.njit(inline="always", fastmath=CONTRACT)(namespace["accumulate"])


@lru_cache(maxsize=None)
def gradient_accumulator(n_cols: int, depth: int):
    """An inlined numba function ``accumulate(grad, norms, g_off, jac, j_off, res)`` adding one residual
    block's J^T r and column norms: ``grad[g_off + a] += sum_k jac[k, j_off + a] res[k]`` and
    ``norms[g_off + a] += sum_k jac[k, j_off + a]^2`` for a < n_cols, k < depth."""
    lines = ["def accumulate(grad, norms, g_off, jac, j_off, res):"]
    lines += [f"    r{k} = res[{k}]" for k in range(depth)]
    lines += [f"    j{k}_{a} = jac[{k}, j_off + {a}]" for k in range(depth) for a in range(n_cols)]
    for a in range(n_cols):
        lines.append(f"    grad[g_off + {a}] += " + " + ".join(f"j{k}_{a} * r{k}" for k in range(depth)))
        lines.append(f"    norms[g_off + {a}] += " + " + ".join(f"j{k}_{a} * j{k}_{a}" for k in range(depth)))
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", f"<gradient_accumulator {n_cols}x{depth}>", "exec"), namespace)  # noqa: S102
    return numba.njit(inline="always", fastmath=CONTRACT)(namespace["accumulate"])


def cacheable_kernel(py_func: Callable, decorator: Callable, **accumulators) -> Callable:
    """``decorator(py_func)`` with the generated ``accumulators`` bound as globals, not closure cells.

    numba's on-disk cache keys a closure by the pickled contents of its cells, and a dispatcher
    pickles with a per-process id: a kernel that captured a generated accumulator was compiled
    again in every process. Bound as globals (resolved at compile time) they leave the key to the
    code and to the remaining cells (the block sizes), which are the same in every process. The key
    ignores globals: every parameter that changes the bound accumulators must also be a cell of
    ``py_func`` (read in its body), or two specialisations share one cache entry."""
    namespace = dict(py_func.__globals__, **accumulators)
    rebound = types.FunctionType(py_func.__code__, namespace, py_func.__name__, py_func.__defaults__,
                                 py_func.__closure__)
    rebound.__qualname__ = py_func.__qualname__
    return decorator(rebound)
