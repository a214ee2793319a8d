"""The architecture, checked on the source: imports point one way, no cycles, no private names
crossing modules, no module over the size limit, package __init__ files that only re-export.

Everything is read from the abstract syntax trees of the modules under ``sparselm/`` (function-local
imports included), so the test imports nothing of the package. The layers are data: a new package
is one name in :data:`LAYERS`.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: from low to high; a module may import modules of its own rank or of lower ones, never higher ones.
#: A module's rank is that of the first component of its path under sparselm/ (a subpackage, or a
#: module such as formats.py). The top-level __init__.py (the public API) is above everything.
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("util", "math"),
    ("manifolds",),
    ("core", "residuals"),
    ("linalg",),
    ("lm",),
    ("formats", "bal", "g2o", "colmap", "scipy_api", "covariance", "distributed"),
    ("profiling",),
    ("cli",),
)
MAX_LINES = 600
#: what a package __init__.py may hold besides its docstring and imports
INIT_ASSIGNMENTS = {"__all__", "__version__"}
INIT_CALLS = {"_set_thread_defaults"}  # the thread policy must be set before numpy loads BLAS


class Source:
    """The modules of a package as {dotted name: (is a package __init__, source text)}."""

    def __init__(self, modules: Dict[str, Tuple[bool, str]]):
        self.modules = modules

    @classmethod
    def of_folder(cls, root: Path, package: str = "sparselm") -> "Source":
        modules = {}
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_init else parts)] = (is_init, path.read_text())
        return cls(modules)

    def is_package(self, name: str) -> bool:
        return self.modules.get(name, (False, ""))[0]

    def imports(self, name: str) -> List[Tuple[str, str, int]]:
        """(imported module of the package, imported name or '', line) of every import in ``name``."""
        root = name.split(".")[0]
        found = []
        for node in ast.walk(ast.parse(self.modules[name][1], name)):
            if isinstance(node, ast.Import):
                found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == root]
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = name.split(".")[:None if self.is_package(name) else -1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                if source.split(".")[0] != root:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    found.append((sub, "", node.lineno) if sub in self.modules else (source, alias.name, node.lineno))
        return found

    def edges(self) -> Dict[str, Set[str]]:
        """module -> modules it imports; importing a package stands for what its __init__ imports."""
        direct = {n: {t for t, _, _ in self.imports(n) if t in self.modules and t != n} for n in self.modules}

        def expand(target: str, seen: Set[str]) -> Set[str]:
            if not self.is_package(target) or target in seen:
                return {target}
            seen.add(target)
            out = set().union(*(expand(t, seen) for t in direct[target])) if direct[target] else set()
            return out or {target}

        return {n: set().union(*(expand(t, set()) for t in ts)) if ts else set() for n, ts in direct.items()}


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS)
    for r, names in enumerate(LAYERS):
        if parts[1] in names:
            return r
    raise AssertionError(f"{module}: package {parts[1]!r} is in no layer; add it to LAYERS in {__file__}")


def back_edges(src: Source) -> List[str]:
    return [f"{n} (layer {rank(n)}) imports {t} (layer {rank(t)})"
            for n, ts in sorted(src.edges().items()) if not src.is_package(n)
            for t in sorted(ts) if rank(t) > rank(n)]


def cycles(src: Source) -> List[str]:
    edges = {n: {t for t in ts if not src.is_package(t)} for n, ts in src.edges().items() if not src.is_package(n)}
    state: Dict[str, int] = {}
    stack: List[str] = []
    found: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def private_imports(src: Source) -> List[str]:
    def private(n: str) -> bool:
        return n.startswith("_") and not n.startswith("__")

    return [f"{n}:{line}: " + (f"from {t} import {imported}" if imported else f"import {t}")
            for n in sorted(src.modules) for t, imported, line in src.imports(n)
            if (private(imported) or (not imported and private(t.rsplit(".", 1)[-1]))) and t != n]


def init_violations(src: Source) -> List[str]:
    bad = []
    for name, (is_init, text) in src.modules.items():
        if not is_init:
            continue
        for i, stmt in enumerate(ast.parse(text).body):
            docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            assignment = isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) and t.id in INIT_ASSIGNMENTS
                                                               for t in stmt.targets)
            call = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and \
                isinstance(stmt.value.func, ast.Name) and stmt.value.func.id in INIT_CALLS
            if not (docstring or assignment or call or isinstance(stmt, (ast.Import, ast.ImportFrom))):
                bad.append(f"{name.replace('.', '/')}/__init__.py:{stmt.lineno}: {type(stmt).__name__} "
                           f"(an __init__ only re-exports)")
    return bad


SPARSELM = Source.of_folder(ROOT)


def test_every_module_has_a_layer():
    for name in SPARSELM.modules:
        rank(name)


def test_imports_point_down_the_layers():
    bad = back_edges(SPARSELM)
    assert not bad, "imports pointing up the layers:\n  " + "\n  ".join(bad)


def test_no_import_cycles():
    bad = cycles(SPARSELM)
    assert not bad, "import cycles:\n  " + "\n  ".join(bad)


def test_no_private_name_imported_across_modules():
    bad = private_imports(SPARSELM)
    assert not bad, "private names crossing a module boundary:\n  " + "\n  ".join(bad)


def test_package_inits_only_re_export():
    bad = init_violations(SPARSELM)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(SPARSELM.modules))
def test_module_size(name):
    n = len(SPARSELM.modules[name][1].splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (limit {MAX_LINES}): split it by job"


def test_the_checks_find_what_they_look_for():
    """The same checks on a made-up package: each rule is caught, function-local imports included."""
    fake = Source({
        "sparselm": (True, '"""doc"""\nfrom sparselm.cli.main import main\n__all__ = ["main"]\n'),
        "sparselm.util": (True, "x = 1\n"),
        "sparselm.util.low": (False, "def f():\n    from sparselm.cli.main import main\n"),
        "sparselm.lm": (True, '"""doc"""\n'),
        "sparselm.lm.a": (False, "from sparselm.lm import b\nfrom sparselm.lm.b import _hidden\n"),
        "sparselm.lm.b": (False, "import sparselm.lm.a\n"),
        "sparselm.cli": (True, "from sparselm.cli.main import main\n"),
        "sparselm.cli.main": (False, "from sparselm.util import low\nfrom . import main as again\n"),
    })
    assert back_edges(fake) == ["sparselm.util.low (layer 0) imports sparselm.cli.main (layer 7)"]
    assert cycles(fake) == ["sparselm.cli.main -> sparselm.util.low -> sparselm.cli.main",
                            "sparselm.lm.a -> sparselm.lm.b -> sparselm.lm.a"]
    assert private_imports(fake) == ["sparselm.lm.a:2: from sparselm.lm.b import _hidden"]
    assert init_violations(fake) == ["sparselm/util/__init__.py:1: Assign (an __init__ only re-exports)"]
