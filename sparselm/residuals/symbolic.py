"""Trace a residual function (and its precompute functions) into a :class:`SymbolicResidual`."""
from __future__ import annotations

from typing import Callable, Sequence

from sparselm.residuals.codegen import Precomputed, SymbolicResidual
from sparselm.residuals.tracing import TracedVector, symbols, trace


def trace_residual(func: Callable, name: str, residual_size: int, block_sizes: Sequence[int], data_size: int,
                   precompute: Sequence) -> SymbolicResidual:
    """Symbols x{j}_c for slot j, d_c for the data row, g{p}_a for precomputed vector p; the residual and
    precomputed outputs as expressions of them. ``precompute`` is [(argument name, slot, function)]."""
    slot_symbols = tuple(symbols(f"x{j}", k) for j, k in enumerate(block_sizes))
    data_symbols = symbols("d", data_size)
    arg_names = list(func.__code__.co_varnames[:func.__code__.co_argcount])
    slot_labels = [f"block argument {arg_names[j]!r} (slot {j})" for j in range(len(block_sizes))]
    args = [TracedVector(label, syms) for label, syms in zip(slot_labels, slot_symbols)]
    if data_size > 0:
        args.append(TracedVector(f"data argument {arg_names[len(block_sizes)]!r}", data_symbols))
    precomputed, keyword = [], {}
    for p, (arg, slot, pfunc) in enumerate(precompute):
        outputs = trace(pfunc, [TracedVector(slot_labels[slot], slot_symbols[slot])], None, "precomputed")
        g = symbols(f"g{p}", len(outputs))
        precomputed.append(Precomputed(arg, slot, g, outputs))
        keyword[arg] = TracedVector(f"precomputed argument {arg!r}", g)
    residuals = trace(func, args, residual_size, "residual", keyword)
    return SymbolicResidual(name, tuple(block_sizes), data_size, slot_symbols, data_symbols, residuals, precomputed)
