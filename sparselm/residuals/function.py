"""Residual types written as one Python function of one instance: ``@sparselm.residual``.

The contract
------------
::

    import sparselm
    from sparselm import math as sm

    @sparselm.residual(residual_size=1, block_sizes=(2,), data_size=2, name="exp_decay")
    def exp_decay(x, obs):                   # x = (a, b) one block; obs = (t, y) one data row
        return [x[0] * sm.exp(-x[1] * obs[0]) - obs[1]]

* Arguments, in order: one per slot (``len(block_sizes)``), then the data row if ``data_size > 0``,
  then one per precomputed vector (by name, see below). Each is indexable (``x[0]``, ``x[1:3]``,
  ``len(x)``, unpacking); entries are traced scalars.
* The body may contain arithmetic (``+ - * / **``, unary ``-``, ``abs``), the functions of
  :mod:`sparselm.math`, local variables, helper functions, Python loops and ``if`` over *Python*
  values (sizes, constants), and ``sm.where(cond, a, b)`` for branches on traced values (conditions
  ``< <= > >=`` combined with ``& | ~``).
* It returns a sequence of ``residual_size`` values (traced values or numbers), raw model minus
  observation; weighting (sigma/covariance) and robust losses belong to the residual group.
* The decorator returns a :class:`FunctionResidualType`, an ordinary
  :class:`~sparselm.residuals.base.ResidualType` whose numba kernels evaluate the residual and its
  exact Jacobian (symbolic differentiation, see :mod:`sparselm.residuals.codegen`) for a whole group
  in a ``prange`` loop, and whose :attr:`jacobian_kernel_for` gives kernels that skip Jacobian columns
  of constant slots and constant coordinates.

Per-block precomputation
------------------------
``precompute={"R": ("camera", rotation)}`` computes ``R = rotation(camera)`` (a function of one block
returning a sequence of numbers, written like a residual function) once per block of the slot whose
argument is named ``camera`` per evaluation, together with its derivatives, and passes it to the
residual function as the argument ``R``. It pays when the blocks of that slot are shared by many
instances (a rotation matrix per camera seen ~10-500 times in bundle adjustment: on BAL the Jacobian
kernel is 1.5-2.8x faster with it, see benchmarks/bench_residual_function.py).
:mod:`sparselm.residuals.geometry` has traceable rotation helpers (``angle_axis_to_matrix``).

Stability promise
-----------------
The decorator's arguments, the argument order of residual functions, the ``precompute`` form, the
names in :mod:`sparselm.math`, :class:`FunctionResidualType`'s fields and ``jacobian_kernel_for``
are the contract other modules build on; the generated code behind them may change (the cache key
then changes with it).

Errors
------
Everything tracing cannot represent fails here, when the type is created, with a
:class:`~sparselm.residuals.errors.ResidualDefinitionError` naming the function, the source line
and the reason: the wrong number of arguments, a wrong return length, a Python ``if`` on a traced
value, ``math``/numpy functions on traced values, an index out of range, a non-finite constant.

Cache
-----
Generated kernels are cached on disk (:mod:`sparselm.residuals.kernel_cache`, folder
``SPARSELM_CACHE_DIR``) with numba's compiled code next to them; a later process with the same
function loads them without tracing (sympy is not imported) or compiling. A residual function is
traced once, when the type is created on a cache miss; on a hit it is not run at all.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

from sparselm.residuals.base import ResidualType
from sparselm.residuals.kernel_cache import cache_dir, fingerprint, load_or_generate
from sparselm.residuals.errors import ResidualDefinitionError, describe

__all__ = ["residual", "FunctionResidualType", "ResidualDefinitionError"]

Needed = Tuple[Tuple[bool, ...], ...]


@dataclass(frozen=True)
class FunctionResidualType(ResidualType):
    """A :class:`ResidualType` generated from a residual function by :func:`residual`.

    function    the user's function of one instance.
    source_path the generated module of the full-Jacobian kernels (in the disk cache).
    cache_hit   True when those kernels came from the disk cache (no tracing, no code generation).
    """

    function: Optional[Callable] = field(default=None, compare=False)
    source_path: str = field(default="", compare=False)
    cache_hit: bool = field(default=False, compare=False)


class _Definition:
    """Everything needed to (re)generate the kernels of one residual function, traced lazily."""

    def __init__(self, func, name, residual_size, block_sizes, data_size, precompute):
        self.func, self.name = func, name
        self.residual_size, self.block_sizes, self.data_size = residual_size, block_sizes, data_size
        self.precompute = precompute  # [(argument name, slot, function)]
        self.key = fingerprint([func] + [f for _, _, f in precompute], name, residual_size, block_sizes, data_size,
                               [(a, s) for a, s, _ in precompute])
        self._spec = None

    def spec(self):
        if self._spec is None:
            from sparselm.residuals.symbolic import trace_residual  # sympy is imported only here
            self._spec = trace_residual(self.func, self.name, self.residual_size, self.block_sizes, self.data_size,
                                        self.precompute)
        return self._spec

    def module(self, needed: Needed):
        mask = "_".join("".join("1" if ok else "0" for ok in slot) for slot in needed)
        path = cache_dir() / f"{self.name}_{self.key}_{mask}.py"

        def generate():
            from sparselm.residuals.codegen import generate_source
            return generate_source(self.spec(), needed)

        return load_or_generate(path, generate)


def _check_signature(func, block_sizes, data_size, precompute_names):
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise ResidualDefinitionError(f"{describe(func)}: not a Python function") from None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise ResidualDefinitionError(f"{describe(func)}: *args/**kwargs are not allowed: one argument per block, "
                                      f"then the data row")
    expected = len(block_sizes) + (1 if data_size > 0 else 0) + len(precompute_names)
    if len(params) != expected:
        what = f"{len(block_sizes)} block argument(s) (block_sizes={tuple(block_sizes)})"
        what += ", 1 data argument" if data_size > 0 else ", no data argument (data_size=0)"
        if precompute_names:
            what += f", precomputed {', '.join(sorted(precompute_names))}"
        raise ResidualDefinitionError(f"{describe(func)}: takes {len(params)} argument(s), expected {expected}: {what}")
    positional = [p.name for p in params[:expected - len(precompute_names)]]
    rest = {p.name for p in params[expected - len(precompute_names):]}
    if rest != set(precompute_names):
        raise ResidualDefinitionError(f"{describe(func)}: the last argument(s) {sorted(rest)} must be the precomputed "
                                      f"names {sorted(precompute_names)}")
    return positional


def _resolve_precompute(func, precompute, slot_names) -> list:
    out = []
    for arg, spec in (precompute or {}).items():
        try:
            slot, pfunc = spec
        except (TypeError, ValueError):
            raise ResidualDefinitionError(f"{describe(func)}: precompute[{arg!r}] must be (slot argument name, "
                                          f"function)") from None
        if isinstance(slot, str):
            if slot not in slot_names:
                raise ResidualDefinitionError(f"{describe(func)}: precompute[{arg!r}]: {slot!r} is not a block "
                                              f"argument (block arguments: {', '.join(slot_names)})")
            slot = slot_names.index(slot)
        elif not (isinstance(slot, int) and 0 <= slot < len(slot_names)):
            raise ResidualDefinitionError(f"{describe(func)}: precompute[{arg!r}]: slot {slot!r} out of range")
        if not callable(pfunc):
            raise ResidualDefinitionError(f"{describe(func)}: precompute[{arg!r}]: {pfunc!r} is not a function")
        out.append((arg, slot, pfunc))
    return out


def residual(residual_size: int, block_sizes: Sequence[int], data_size: int = 0, name: Optional[str] = None,
             precompute: Optional[Dict[str, Tuple[Union[str, int], Callable]]] = None,
             observation_error: Optional[Callable] = None):
    """Decorator: turn a residual function of one instance into a :class:`FunctionResidualType`.

    residual_size  m, the number of values the function returns.
    block_sizes    size of the parameter block of each slot, e.g. (6, 3) for pose and point.
    data_size      number of per-instance constants (the data row argument; none if 0).
    name           identifier of the type (default: the function's name); also names cache files.
    precompute     {argument name: (block argument name or slot index, function of that block)}: vectors
                   computed once per block and evaluation (see the module docstring).
    observation_error  optional, passed on to the ResidualType (see :mod:`sparselm.residuals.base`).

    Raises ResidualDefinitionError (naming the function, the line and the reason) for anything that
    cannot be turned into kernels. See the module docstring for what the function may contain.
    """
    block_sizes = tuple(int(k) for k in block_sizes)
    residual_size, data_size = int(residual_size), int(data_size)

    def wrap(func: Callable) -> FunctionResidualType:
        if not callable(func):
            raise ResidualDefinitionError(f"sparselm.residual: {func!r} is not a function")
        type_name = name or func.__name__
        if not type_name.isidentifier():
            raise ResidualDefinitionError(f"{describe(func)}: name {type_name!r} must be a Python identifier")
        # validate the sizes before anything else (ResidualType's own checks, with the function named)
        try:
            ResidualType(type_name, residual_size, block_sizes, data_size, func)
        except ValueError as exc:
            raise ResidualDefinitionError(f"{describe(func)}: {exc}") from None
        names = list((precompute or {}).keys())
        positional = _check_signature(func, block_sizes, data_size, names)
        resolved = _resolve_precompute(func, precompute, positional[:len(block_sizes)])
        definition = _Definition(func, type_name, residual_size, block_sizes, data_size, resolved)
        full = tuple(tuple(True for _ in range(k)) for k in block_sizes)
        module, hit, path = definition.module(full)

        @lru_cache(maxsize=None)
        def jacobian_kernel_for(needed: Needed):
            needed = tuple(tuple(bool(v) for v in slot) for slot in needed)
            if tuple(len(slot) for slot in needed) != block_sizes:
                raise ValueError(f"residual type {type_name!r}: needed columns must have the block sizes "
                                 f"{block_sizes}, got {tuple(len(slot) for slot in needed)}")
            if needed == full:
                return module.jacobian_kernel
            variant, _, _ = definition.module(needed)
            return variant.jacobian_kernel

        return FunctionResidualType(type_name, residual_size, block_sizes, data_size, module.residual_kernel,
                                    module.jacobian_kernel, jacobian_kernel_for=jacobian_kernel_for,
                                    observation_error=observation_error, function=func,
                                    source_path=str(path), cache_hit=hit)

    return wrap
