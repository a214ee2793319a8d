r"""Generate numba kernels (Python source) from a traced residual: exact derivatives + CSE.

A traced residual is r(x_0, ..., x_{S-1}, d, g_1, ..., g_P) where x_j is the block in slot j, d the
data row and g_p = G_p(x_{s(p)}) a vector precomputed once per block of slot s(p) (per-block
precomputation, like Ceres' EvaluationCallback). By the chain rule

.. math::

    \frac{\partial r}{\partial x_j} = \frac{\partial r}{\partial x_j}\Big|_{g\ \mathrm{fixed}}
        + \sum_{p:\ s(p) = j} \frac{\partial r}{\partial g_p} \frac{\partial G_p}{\partial x_j},

so each kernel first fills, in a ``prange`` over the blocks of slot s(p), the values g_p and (for the
Jacobian kernel) the derivatives dG_p/dx_j of every block, and then, in a ``prange`` over the
instances, reads them as scalars. All partial derivatives are exact (sympy's ``diff``); the
expressions of one loop body share common subexpressions (``sympy.cse``) and are printed as straight-
line scalar code. Only the Jacobian columns asked for (``needed``) are derived and written, so
constant slots and constant coordinates cost nothing; the other columns are left untouched.

Kernels are compiled with ``error_model="numpy"``: a division by zero in a branch of ``where`` that
is not taken yields inf/nan that is never used, rather than an exception.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import sympy
from sympy.printing.pycode import PythonCodePrinter


@dataclass
class Precomputed:
    """A vector g = G(x_slot) computed once per block of one slot.

    name     the residual function's parameter that receives it.
    slot     the slot whose blocks it is a function of.
    symbols  the symbols standing for g in the residual expressions.
    outputs  G as expressions of that slot's symbols.
    """

    name: str
    slot: int
    symbols: Tuple
    outputs: List


@dataclass
class SymbolicResidual:
    """A traced residual: expressions in the slot, data and precomputed symbols."""

    name: str
    block_sizes: Tuple[int, ...]
    data_size: int
    slot_symbols: Tuple[Tuple, ...]
    data_symbols: Tuple
    residuals: List
    precomputed: List[Precomputed]


#: Loop bodies are separate functions. numba's parallel-loop analysis is slow on bodies with many
#: branches (the where guards of a rotation and its derivative: 10x the compile time), so a body with
#: more than a few branches stays a called function (a per-block body is called once per block
#: anyway); the others are inlined into the loop by numba, which keeps the per-instance loop as fast
#: as hand-written code (a call per instance cost ~20% on BAL).
_HELPER_DECORATOR = '@njit(cache=True, error_model="numpy")'
_INLINED_DECORATOR = '@njit(cache=True, error_model="numpy", inline="always")'
_MAX_INLINED_BRANCHES = 8
_KERNEL_DECORATOR = '@njit(parallel=True, cache=True, error_model="numpy")'


class _Printer(PythonCodePrinter):
    """Python printer whose floats round-trip exactly and whose small integer powers are products."""

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Pow(self, expr, rational=False):
        base, e = expr.as_base_exp()
        if isinstance(base, sympy.UnevaluatedExpr) and e == -1:  # a shared reciprocal
            return f"(1.0/({self._print(base.args[0])}))"
        if e.is_Integer and 1 < abs(int(e)) <= 4:
            product = "*".join([f"({self._print(base)})"] * abs(int(e)))
            return f"({product})" if e > 0 else f"(1.0/({product}))"
        return super()._print_Pow(expr, rational=rational)


_PRINTER = _Printer({"standard": "python3"})


class _Sweep:
    """Straight-line code for some outputs and their exact derivatives by reverse-mode differentiation
    of the CSE'd expression graph: the outputs are first reduced to a sequence of temporaries
    v_k = e_k(inputs, v_<k) (``sympy.cse``); then, walking the temporaries backwards, the adjoint
    of v_k for output r is the sum over its consumers u of adjoint(u) * d e_u / d v_k, each local
    partial d e_u / d v_k derived symbolically once and shared by all outputs. The derivative code
    thus follows the structure of the user's computation (rotation, then projection, then
    distortion) instead of expanding it, and structurally zero derivatives are never formed.
    """

    def __init__(self, prefix: str, outputs: Sequence, wrt: Sequence):
        self.statements: List[Tuple[str, object]] = []
        self.prefix = prefix
        self._partials = {}
        temps, self.outputs = sympy.cse(list(outputs), symbols=sympy.numbered_symbols(f"{prefix}v"), order="none")
        self.statements += [(t.name, e) for t, e in temps]
        self.forward_count = len(self.statements)  # the statements that compute the outputs
        self.derivatives = {}
        self.temporaries = temps
        self.adjoints = {}  # temporary -> {output r: its adjoint (a symbol or an atom)}
        self.zero_when = {}  # symbol -> condition under which its value is exactly 0 (a where branch)
        if not wrt:
            return
        wanted = set(wrt)
        temp_expr = dict(temps)
        adjoint = {}  # symbol -> {output r: [terms]}
        self._partials = {}
        partial = self.partial

        def relevant(s):
            return s in wanted or s in temp_expr

        for r, out in enumerate(self.outputs):
            for s in out.free_symbols:
                if relevant(s):
                    d = sympy.diff(out, s)
                    if not d.is_zero:
                        adjoint.setdefault(s, {}).setdefault(r, []).append(d)
        for t, e in reversed(temps):
            if t not in adjoint:
                continue
            symbols_of_t = {}
            for r, terms in sorted(adjoint.pop(t).items()):
                total = sympy.Add(*terms)
                if total.has(sympy.Piecewise):
                    total = sympy.piecewise_fold(total)
                if total.is_Atom:
                    symbols_of_t[r] = total
                else:
                    sym = sympy.Symbol(f"{prefix}a{r}_{t.name}", real=True)
                    self.statements.append((sym.name, total))
                    self._note_zero(sym, total)
                    symbols_of_t[r] = sym
            self.adjoints[t] = symbols_of_t
            for s in e.free_symbols:
                if not relevant(s):
                    continue
                d = partial(t, e, s)
                if d.is_zero:
                    continue
                for r, a in symbols_of_t.items():
                    adjoint.setdefault(s, {}).setdefault(r, []).append(self.times(a, d))
        for s in wrt:
            for r, terms in adjoint.get(s, {}).items():
                self.derivatives[r, s] = sympy.Add(*terms)

    def _note_zero(self, sym, e) -> None:
        """Remember when the value of ``sym`` (defined as e) is exactly 0 because a where branch is 0."""
        if not isinstance(e, sympy.Piecewise):
            return
        zero, earlier = [], []
        for value, cond in e.args:
            if value.is_zero:
                zero.append(sympy.And(cond, *[sympy.Not(c) for c in earlier]))
            earlier.append(cond)
        if zero:
            self.zero_when[sym] = sympy.Or(*zero)

    def times(self, a, d):
        """a * d, but exactly 0 where a or d is a where branch equal to 0: the other factor may then be
        inf/nan (the derivative of sqrt at 0 in the branch not taken), and 0 * inf must not leak in."""
        conditions = [self.zero_when[x] for x in (a, d) if x in self.zero_when]
        if not conditions:
            return a * d
        return sympy.Piecewise((0, sympy.Or(*conditions)), (a * d, True))

    def partial(self, node, e, s):
        """d e / d s for the expression e of ``node`` (a temporary or output), as an atom or a symbol
        whose defining statement is appended once."""
        key = (node, s)
        if key not in self._partials:
            d = sympy.diff(e, s)
            if d.is_Atom or d.is_zero:
                self._partials[key] = d
            else:
                sym = sympy.Symbol(f"{self.prefix}p{len(self._partials)}", real=True)
                self.statements.append((sym.name, d))
                self._note_zero(sym, d)
                self._partials[key] = sym
        return self._partials[key]

    def derivative(self, r: int, s):
        """d output_r / d s (0 where it is structurally zero)."""
        return self.derivatives.get((r, s), sympy.Integer(0))


def _print(e) -> str:
    return _PRINTER.doprint(e)


def _free_names(statements, finals) -> set:
    names = set()
    for _, e in statements:
        names |= {s.name for s in e.free_symbols}
    for e in finals:
        names |= {s.name for s in e.free_symbols}
    return names


def _share_reciprocals(statements, prefix: str):
    """Rewrite b**-n (integer n) as r**n with one statement r = 1/b per base b, placed before its
    first use: one division per base instead of one per power (the compiler may not do this
    without fast-math, as it changes the rounding)."""
    out, reciprocal = [], {}
    for name, e in statements:
        powers = [q for q in e.atoms(sympy.Pow) if q.exp.is_Integer and q.exp < 0]
        mapping = {}
        for q in sorted(powers, key=sympy.default_sort_key):
            if q.base not in reciprocal:
                sym = sympy.Symbol(f"{prefix}r{len(reciprocal)}", real=True)
                reciprocal[q.base] = sym
                out.append((sym.name, 1 / sympy.UnevaluatedExpr(q.base)))
            r = reciprocal[q.base]
            mapping[q] = r if q.exp == -1 else r ** (-q.exp)
        out.append((name, e.xreplace(mapping) if mapping else e))
    return out


def _emit(sweep: "_Sweep", values, derivatives, loads, indent: str, prefix: str) -> List[str]:
    """Loads of the symbols used, the forward statements and the ``target = expr`` value assignments,
    then the derivative statements and assignments. Values are printed exactly as in a kernel without
    derivatives (divisions as divisions), so both kernels compute bitwise equal residuals; the
    derivative part shares reciprocals and collects its remaining common subexpressions (an exp in a
    value and its derivative) in a last CSE pass."""
    forward = sweep.statements[:sweep.forward_count] + list(values)
    shared, reduced = sympy.cse([e for _, e in derivatives], symbols=sympy.numbered_symbols(f"{prefix}w"),
                                order="none")
    backward = _share_reciprocals(sweep.statements[sweep.forward_count:] + [(t.name, e) for t, e in shared]
                                  + [(target, e) for (target, _), e in zip(derivatives, reduced)], prefix)
    body = forward + backward
    free = _free_names(body, [])
    lines = [f"{indent}{s.name} = {src}" for s, src in loads if s.name in free]
    return lines + [f"{indent}{name} = {_print(e)}" for name, e in body]


def _precompute_loops(spec: SymbolicResidual, needed, with_derivatives: bool, kind: str):
    """Lines of the per-block loops in the kernel, the helper functions they call (one per precomputed
    vector, the loop body) and per precomputed vector the nonzero derivative entries
    {(a, c): (symbol, column in its dpre array)}."""
    lines, helpers, nonzero = [], [], []
    for p, pc in enumerate(spec.precomputed):
        slot_syms = spec.slot_symbols[pc.slot]
        wrt = [slot_syms[c] for c, ok in enumerate(needed[pc.slot]) if ok] if with_derivatives else []
        sweep = _Sweep(f"b{p}", pc.outputs, wrt)
        q = len(pc.symbols)
        values = [(f"pre{p}[b, {a}]", out) for a, out in enumerate(sweep.outputs)]
        assignments = []
        entries = {}
        for a in range(q):
            for c, ok in enumerate(needed[pc.slot]):
                if with_derivatives and ok:
                    d = sweep.derivative(a, slot_syms[c])
                    if not d.is_zero:
                        col = len(entries)
                        entries[a, c] = (sympy.Symbol(f"dg{p}_{a}_{c}", real=True), col)
                        assignments.append((f"dpre{p}[b, {col}]", d))
        nonzero.append(entries)
        nb = f"params[{pc.slot}].shape[0]"
        arrays = f"pre{p}, dpre{p}" if with_derivatives else f"pre{p}"
        lines.append(f"    pre{p} = np.empty(({nb}, {q}))")
        if with_derivatives:
            lines.append(f"    dpre{p} = np.empty(({nb}, {max(len(entries), 1)}))")
        lines += [f"    for b in prange({nb}):", f"        {kind}_block{p}(params, {arrays}, b)"]
        helpers += ["", "", _HELPER_DECORATOR, f"def {kind}_block{p}(params, {arrays}, b):"]
        helpers += _emit(sweep, values, assignments,
                         [(s, f"params[{pc.slot}][b, {c}]") for c, s in enumerate(slot_syms)], "    ", f"b{p}")
    return lines, helpers, nonzero


def _chain_rule(sweep: "_Sweep", pc: Precomputed, nonzero, n_outputs: int, needed_cols, p: int) -> dict:
    """{(r, c): the part of d r / d x_c that flows through the precomputed vector g = G(x)}.

    Two exact ways, the cheaper one (by multiplications) is generated: *reverse* contracts the total
    derivatives d r / d g_a with dG_a / dx_c (m * |g| * columns); *tangent* first forms, for every
    temporary v that reads g directly, dv / dx_c = sum_a (d e_v / d g_a) dG_a / dx_c and contracts
    those with the adjoints of v (cheaper when g enters through few temporaries, e.g. a rotation
    matrix read only by R X).
    """
    cols = [c for c, ok in enumerate(needed_cols) if ok]
    g_set = set(pc.symbols)
    reverse_cost = sum(1 for r in range(n_outputs) for c in cols for a, g in enumerate(pc.symbols)
                       if (a, c) in nonzero and not sweep.derivative(r, g).is_zero)
    frontier = [(t, e) for t, e in sweep.temporaries if t in sweep.adjoints and e.free_symbols & g_set]
    direct = [r for r, out in enumerate(sweep.outputs) if out.free_symbols & g_set]
    tangent_cost = sum(1 for t, e in frontier for c in cols for a, g in enumerate(pc.symbols)
                       if (a, c) in nonzero and g in e.free_symbols)
    tangent_cost += sum(len(sweep.adjoints[t]) for t, e in frontier for c in cols
                        if any((a, c) in nonzero and g in e.free_symbols for a, g in enumerate(pc.symbols)))
    terms = {}
    if direct or reverse_cost <= tangent_cost:
        for r in range(n_outputs):
            for c in cols:
                terms[r, c] = sympy.Add(*[sweep.derivative(r, g) * nonzero[a, c][0]
                                          for a, g in enumerate(pc.symbols) if (a, c) in nonzero])
        return terms
    for k, (t, e) in enumerate(frontier):
        for c in cols:
            tangent = sympy.Add(*[sweep.partial(t, e, g) * nonzero[a, c][0] for a, g in enumerate(pc.symbols)
                                  if (a, c) in nonzero and g in e.free_symbols])
            if tangent.is_zero:
                continue
            sym = sympy.Symbol(f"tg{p}_{k}_{c}", real=True)
            sweep.statements.append((sym.name, tangent))
            for r, adj in sweep.adjoints[t].items():
                terms[r, c] = terms.get((r, c), 0) + sweep.times(adj, sym)
    return terms


def _instance_loop(spec: SymbolicResidual, needed, nonzero, with_derivatives: bool, kind: str):
    """Lines of the instance loop in the kernel and of the helper function it calls (the loop body)."""
    wrt = []
    if with_derivatives:
        wrt = [spec.slot_symbols[j][c] for j, k in enumerate(spec.block_sizes) for c in range(k) if needed[j][c]]
        wrt += [g for pc in spec.precomputed for g in pc.symbols]
    sweep = _Sweep("", spec.residuals, wrt)
    values = [(f"residuals[i, {r}]", out) for r, out in enumerate(sweep.outputs)]
    assignments = []
    if with_derivatives:
        chains = [_chain_rule(sweep, pc, nonzero[p], len(spec.residuals), needed[pc.slot], p)
                  for p, pc in enumerate(spec.precomputed)]
        for j, k in enumerate(spec.block_sizes):
            for r in range(len(spec.residuals)):
                for c in range(k):
                    if not needed[j][c]:
                        continue
                    e = sweep.derivative(r, spec.slot_symbols[j][c])
                    for p, pc in enumerate(spec.precomputed):
                        if pc.slot == j:
                            e = e + chains[p].get((r, c), 0)
                    assignments.append((f"jac{j}[i, {r}, {c}]", e))
    loads = [(s, f"params[{j}][b{j}, {c}]") for j, syms in enumerate(spec.slot_symbols) for c, s in enumerate(syms)]
    loads += [(s, f"data[i, {c}]") for c, s in enumerate(spec.data_symbols)]
    for p, pc in enumerate(spec.precomputed):
        loads += [(g, f"pre{p}[b{pc.slot}, {a}]") for a, g in enumerate(pc.symbols)]
        loads += [(sym, f"dpre{p}[b{pc.slot}, {col}]") for sym, col in nonzero[p].values()]
    arrays = "".join(f", pre{p}" + (f", dpre{p}" if with_derivatives else "") for p in range(len(spec.precomputed)))
    args = "params, index, data, residuals" + (", jacobians" if with_derivatives else "") + arrays + ", i"
    body = [f"    jac{j} = jacobians[{j}]" for j in range(len(spec.block_sizes)) if with_derivatives and any(needed[j])]
    body += [f"    b{j} = index[i, {j}]" for j in range(len(spec.block_sizes))]
    body += _emit(sweep, values, assignments, loads, "    ", "")
    branches = sum(line.count(" if ") for line in body)
    decorator = _INLINED_DECORATOR if branches <= _MAX_INLINED_BRANCHES else _HELPER_DECORATOR
    helper = ["", "", decorator, f"def {kind}_instance({args}):"] + body
    return ["    for i in prange(index.shape[0]):", f"        {kind}_instance({args})"], helper


def generate_source(spec: SymbolicResidual, needed: Sequence[Sequence[bool]]) -> str:
    """Python source of a module defining ``residual_kernel`` and ``jacobian_kernel`` (the contract of
    :mod:`sparselm.residuals.base`); the Jacobian kernel writes only the columns where ``needed[j][c]``."""
    mask = "; ".join("".join("1" if ok else "0" for ok in slot) for slot in needed)
    out = [f'"""Kernels generated by sparselm from residual function {spec.name!r} (Jacobian columns {mask}).',
           'Generated code: do not edit (see sparselm.residuals.codegen)."""',
           "import math", "", "import numpy as np", "from numba import njit, prange"]
    kernels = []
    for kind, with_derivatives, signature in (("residual", False, "params, index, data, residuals"),
                                              ("jacobian", True, "params, index, data, residuals, jacobians")):
        pre_lines, pre_helpers, nonzero = _precompute_loops(spec, needed, with_derivatives, kind)
        loop, helper = _instance_loop(spec, needed, nonzero, with_derivatives, kind)
        out += pre_helpers + helper
        kernels += ["", "", _KERNEL_DECORATOR, f"def {kind}_kernel({signature}):"] + pre_lines + loop
    return "\n".join(out + kernels) + "\n"
