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
import types
from functools import lru_cache
from typing import Callable, Iterator

import numba

CONTRACT = {"contract"}


@contextlib.contextmanager
def slp_vectorization() -> Iterator[None]:
    """Compile (first call of a kernel) with LLVM's SLP vectoriser on; numba's setting is restored after.

    Wrap every call of a kernel that inlines :func:`outer_product_accumulator`: the first call
    compiles (or loads the cached machine code), later calls only pay the attribute flip."""
    old = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = old


def _source(n_rows: int, n_cols: int, depth: int) -> str:
    """Python source of ``accumulate(out, a, a_off, b, b_off)``:
    out[c, r] += sum_k a[k, a_off + r] * b[k, b_off + c]  (r < n_rows, c < n_cols)."""
    lines = ["def accumulate(out, a, a_off, b, b_off):"]
    for k in range(depth):
        lines += [f"    a{k}_{r} = a[{k}, a_off + {r}]" for r in range(n_rows)]
        lines += [f"    b{k}_{c} = b[{k}, b_off + {c}]" for c in range(n_cols)]
    for c in range(n_cols):
        for r in range(n_rows):
            lines.append(f"    out[{c}, {r}] += " + " + ".join(f"a{k}_{r} * b{k}_{c}" for k in range(depth)))
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=None)
def outer_product_accumulator(n_rows: int, n_cols: int, depth: int):
    """An inlined numba function ``accumulate(out, a, a_off, b, b_off)`` adding A^T B to ``out``.

    ``out[c, r] += sum_k a[k, a_off + r] * b[k, b_off + c]`` for r < n_rows, c < n_cols: the
    (c, r) entry of B^T A, i.e. ``out`` holds a column-major n_rows x n_cols block. Every operand
    is read before ``out`` is written."""
    namespace: dict = {}
    name = f"<outer_product_accumulator {n_rows}x{n_cols}x{depth}>"
    exec(compile(_source(n_rows, n_cols, depth), name, "exec"), namespace)  # noqa: S102 - our own source
    return numba.njit(inline="always", fastmath=CONTRACT)(namespace["accumulate"])


def cacheable_kernel(py_func: Callable, decorator: Callable, **accumulators) -> Callable:
    """``decorator(py_func)`` with the generated ``accumulators`` bound as globals, not closure cells.

    numba's on-disk cache keys a closure by the pickled contents of its cells, and a dispatcher
    pickles with a per-process id: a kernel that captured a generated accumulator was compiled
    again in every process. Bound as globals (resolved at compile time) they leave the key to the
    code and to the remaining cells (the block sizes), which are the same in every process."""
    namespace = dict(py_func.__globals__, **accumulators)
    rebound = types.FunctionType(py_func.__code__, namespace, py_func.__name__, py_func.__defaults__,
                                 py_func.__closure__)
    rebound.__qualname__ = py_func.__qualname__
    return decorator(rebound)
