"""The disk cache of generated residual kernels.

Each generated module is a Python file ``<name>_<key>_<mask>.py`` in the cache folder (environment
variable ``SPARSELM_CACHE_DIR``, else ``$XDG_CACHE_HOME/sparselm/residual_functions``, else
``~/.cache/sparselm/residual_functions``). It is imported from there, so numba's own ``cache=True``
stores the compiled machine code next to it (``__pycache__``): a second process neither traces
(no sympy) nor compiles. Files are written atomically, so concurrent processes are safe.

The key is a SHA-256 of everything the generated code depends on: the bytecode, constants and names
of the residual function and of the precompute functions, recursively of the plain Python functions
they call through module globals or closures, the values of the numbers, tuples and arrays they
read from globals and closures, the sizes, the sparselm and codegen versions and the Python
version. A function reached as an attribute of a module (``mylib.helper``) is not fingerprinted:
clear the cache folder after changing one.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import numbers
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from sparselm.util.atomic import atomic_write

#: Bumped whenever sparselm.residuals.codegen changes the code it generates, so that old cache
#: entries are not reused (part of every key).
CODEGEN_VERSION = "6"


def cache_dir() -> Path:
    """The folder holding generated kernels (created on demand)."""
    env = os.environ.get("SPARSELM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparselm" / "residual_functions"


def _update_code(h, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _update_code(h, c)
        else:
            h.update(repr(c).encode())


def _all_names(code: types.CodeType):
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _all_names(c)
    return names


def _update_value(h, value, seen) -> None:
    if isinstance(value, (numbers.Number, str, bytes)):
        h.update(repr(value).encode())
    elif isinstance(value, (tuple, list)):
        h.update(b"(")
        for v in value:
            _update_value(h, v, seen)
        h.update(b")")
    elif isinstance(value, np.ndarray):
        h.update(repr((value.dtype.str, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, types.FunctionType):
        _update_function(h, value, seen)


def _update_function(h, func: types.FunctionType, seen) -> None:
    if id(func) in seen or (func.__module__ or "").startswith("sparselm."):
        return
    seen.add(id(func))
    _update_code(h, func.__code__)
    h.update(repr(func.__defaults__).encode())
    for cell in func.__closure__ or ():
        try:
            _update_value(h, cell.cell_contents, seen)
        except ValueError:  # an empty cell
            pass
    for name in sorted(_all_names(func.__code__)):
        if name in func.__globals__:
            h.update(name.encode())
            _update_value(h, func.__globals__[name], seen)


def _sparselm_version() -> str:
    try:
        return importlib.metadata.version("sparselm")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def fingerprint(functions, *parts) -> str:
    """A hex key of ``functions`` (see the module docstring) and the reprs of ``parts``."""
    h = hashlib.sha256()
    h.update(repr((sys.version_info[:2], _sparselm_version(), CODEGEN_VERSION, parts)).encode())
    seen = set()
    for f in functions:
        _update_function(h, f, seen)
    return h.hexdigest()[:24]


def load_or_generate(path: Path, generate) -> tuple:
    """Import the module at ``path``, first writing ``generate()`` there if it does not exist.

    Returns (module, hit, path) where hit tells whether the file was already there. If the folder cannot be
    written, the module goes to a private folder under the system's temporary folder instead.
    """
    hit = path.exists()
    if not hit:
        source = generate()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, source)
        except OSError:  # an unwritable cache folder: a private temporary one still works
            path = Path(tempfile.gettempdir()) / f"sparselm-{os.getuid()}" / path.name
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, source)
    module_name = "sparselm_generated." + path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module, hit, path
