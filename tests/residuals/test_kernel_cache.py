"""The cache key of generated kernels follows everything the generated code depends on."""
from __future__ import annotations

import numpy as np

from sparselm.residuals.kernel_cache import cache_dir, fingerprint

SCALE = 2.0


def _helper(v):
    return v * SCALE


def _uses_helper(x):
    return [_helper(x[0])]


def test_key_follows_bytecode_sizes_globals_and_helpers(monkeypatch):
    def f(x):
        return [x[0] * 2.0]

    def g(x):
        return [x[0] * 3.0]
    assert fingerprint([f], 1, (1,)) == fingerprint([f], 1, (1,))
    assert fingerprint([f], 1, (1,)) != fingerprint([g], 1, (1,))          # a constant in the body
    assert fingerprint([f], 1, (1,)) != fingerprint([f], 1, (2,))          # the sizes
    before = fingerprint([_uses_helper], 1, (1,))
    monkeypatch.setitem(_helper.__globals__, "SCALE", 3.0)                 # a global read by a helper
    assert fingerprint([_uses_helper], 1, (1,)) != before


def test_key_follows_closure_values():
    def make(k):
        def f(x):
            return [x[c] * k for c in range(2)]
        return f
    assert fingerprint([make(1.0)], 2) != fingerprint([make(2.0)], 2)
    assert fingerprint([make(np.ones(2))], 2) != fingerprint([make(np.zeros(2))], 2)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSELM_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("SPARSELM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sparselm" / "residual_functions"
