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

Bitwise reproducibility across processes rests on one rule: every generated sum is a chain
``((start + p0) + p1) + ...`` in which each addition has exactly one product operand
(:func:`fused_chain`), so contraction has a single choice, fma(p_k, previous). In ``a*b + c*d``
either product may be fused, and which one LLVM fuses depends on the code around it. numba
optimises a parallel kernel's loop body twice: once as a library of its own, which is what the
process that compiled the kernel runs, and again inside the kernel that links it, whose machine
code goes to the disk cache and is what every later process runs. With the SLP vectoriser on, the
two optimisations fused different products of ``a0*b0 + a1*b1 + a2*b2``, and a solve in the
compiling process ended a few ulps away from the same solve in processes that loaded the cache.
Hand-written kernel loops already have the chain form (``s += a * b``).
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


@contextlib.contextmanager
def slp_vectorization() -> Iterator[None]:
    """Compile (first call of a kernel) with LLVM's SLP vectoriser on; numba's setting is restored after.

    Wrap every call of a kernel that inlines :func:`outer_product_accumulator`: the first call
    compiles (or loads the cached machine code), later calls only pay the attribute flip."""
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


def fused_chain(start: str, products: list[str]) -> str:
    """Source of ``((start + p0) + p1) + ...``: each addition has one product operand (see the module
    docstring). ``start`` is the accumulator or ``0.0``, which LLVM may not fold away without ``nsz``."""
    return " + ".join([start, *products])


def _source(n_rows: int, n_cols: int, depth: int, assign: bool, lower: bool) -> str:
    """Python source of ``accumulate(out, a, a_off, b, b_off)``:
    out[c, r] (+)= sum_k a[k, a_off + r] * b[k, b_off + c]  (r < n_rows, c < n_cols; r >= c if lower)."""
    lines = ["def accumulate(out, a, a_off, b, b_off):"]
    for k in range(depth):
        lines += [f"    a{k}_{r} = a[{k}, a_off + {r}]" for r in range(n_rows)]
        lines += [f"    b{k}_{c} = b[{k}, b_off + {c}]" for c in range(n_cols)]
    for c in range(n_cols):
        for r in range(c if lower else 0, n_rows):
            start = "0.0" if assign else f"out[{c}, {r}]"
            lines.append(f"    out[{c}, {r}] = " + fused_chain(start, [f"a{k}_{r} * b{k}_{c}" for k in range(depth)]))
    if len(lines) == 1:  # an empty block (a size 0: a branch the kernel never takes)
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def _inlined(source: str, name: str):
    """numba's always-inlined, contracting compilation of the function ``accumulate`` in ``source``; the
    dispatcher keeps the text as ``generated_source`` (tests check the :func:`fused_chain` form)."""
    namespace: dict = {}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - our own generated source
    dispatcher = numba.njit(inline="always", fastmath=CONTRACT)(namespace["accumulate"])
    dispatcher.generated_source = source
    return dispatcher


@lru_cache(maxsize=None)
def outer_product_accumulator(n_rows: int, n_cols: int, depth: int, assign: bool = False, lower: bool = False):
    """An inlined numba function ``accumulate(out, a, a_off, b, b_off)`` adding A^T B to ``out``.

    ``out[c, r] += sum_k a[k, a_off + r] * b[k, b_off + c]`` for r < n_rows, c < n_cols: the
    (c, r) entry of B^T A, i.e. ``out`` holds a column-major n_rows x n_cols block. Every operand
    is read before ``out`` is written. ``assign``: store the product instead of adding it (a first
    contribution: ``out`` need not be zeroed). ``lower``: only the entries r >= c (a symmetric
    product A^T A whose upper part nobody reads); the others are left untouched."""
    variant = (" assign" if assign else "") + (" lower" if lower else "")
    return _inlined(_source(n_rows, n_cols, depth, assign, lower),
                    f"<outer_product_accumulator {n_rows}x{n_cols}x{depth}{variant}>")


@lru_cache(maxsize=None)
def transposed_product_accumulator(n_rows: int, depth: int):
    """An inlined numba function ``accumulate(out, a, x, x_off)`` adding A^T x to the vector ``out``:
    ``out[r] += sum_k a[k, r] * x[x_off + k]`` for r < n_rows, k < depth (A is depth x n_rows). Each sum
    is formed in registers and added to ``out`` once, so consecutive calls on one ``out`` do not wait
    on each other's stores."""
    lines = ["def accumulate(out, a, x, x_off):"]
    lines += [f"    x{k} = x[x_off + {k}]" for k in range(depth)]
    lines += [f"    a{k}_{r} = a[{k}, {r}]" for k in range(depth) for r in range(n_rows)]
    lines += [f"    out[{r}] += " + fused_chain("0.0", [f"a{k}_{r} * x{k}" for k in range(depth)]) for r in range(n_rows)]
    return _inlined("\n".join(lines) + "\n", f"<transposed_product_accumulator {n_rows}x{depth}>")


@lru_cache(maxsize=None)
def gradient_accumulator(n_cols: int, depth: int):
    """An inlined numba function ``accumulate(grad, norms, g_off, jac, j_off, res)`` adding one residual
    block's J^T r and column norms: ``grad[g_off + a] += sum_k jac[k, j_off + a] res[k]`` and
    ``norms[g_off + a] += sum_k jac[k, j_off + a]^2`` for a < n_cols, k < depth."""
    lines = ["def accumulate(grad, norms, g_off, jac, j_off, res):"]
    lines += [f"    r{k} = res[{k}]" for k in range(depth)]
    lines += [f"    j{k}_{a} = jac[{k}, j_off + {a}]" for k in range(depth) for a in range(n_cols)]
    for a in range(n_cols):
        lines.append(f"    grad[g_off + {a}] += " + fused_chain("0.0", [f"j{k}_{a} * r{k}" for k in range(depth)]))
        lines.append(f"    norms[g_off + {a}] += " + fused_chain("0.0", [f"j{k}_{a} * j{k}_{a}" for k in range(depth)]))
    return _inlined("\n".join(lines) + "\n", f"<gradient_accumulator {n_cols}x{depth}>")


def cacheable_kernel(py_func: Callable, decorator: Callable, **accumulators) -> Callable:
    """``decorator(py_func)`` with the generated ``accumulators`` bound as globals, not closure cells.

    numba's on-disk cache keys a closure by the pickled contents of its cells, and a dispatcher
    pickles with a per-process id: a kernel that captured a generated accumulator was compiled
    again in every process. Bound as globals (resolved at compile time) they leave the key to the
    code and to the remaining cells (the block sizes), which are the same in every process. The key
    ignores globals: every parameter that changes the bound accumulators must also be a cell of
    ``py_func`` (read in its body), or two specialisations share one cache entry. numba invalidates a
    cache entry when the kernel's own file changes, not this one: after editing a generator here,
    delete the ``*.nbi``/``*.nbc`` files of the kernels that bind it."""
    namespace = dict(py_func.__globals__, **accumulators)
    rebound = types.FunctionType(py_func.__code__, namespace, py_func.__name__, py_func.__defaults__,
                                 py_func.__closure__)
    rebound.__qualname__ = py_func.__qualname__
    return decorator(rebound)
