"""A non-editable install works from anywhere: the package data ships, the console script runs.

A copy of the checkout's files (``git ls-files``: what a clean clone has, plus files not yet
committed) is built into a wheel and installed into a new virtual environment; the dependencies come
from the environment running the tests (a ``.pth`` line, so nothing is downloaded). Then, from
another directory, that environment's ``sparselm datasets list``, ``sparselm solve`` (the built-in
problem) and ``sparselm doctor`` must succeed with their usual output.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args, cwd, env=None, timeout=300):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    # the checkout's files, as a clean clone would have them
    listed = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).splitlines()
    src = tmp_path / "src"
    for name in listed:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", wheels, src], cwd=tmp_path)
    wheel = next(wheels.glob("sparselm-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # numpy, scipy, numba, ...
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARSELM_DATA", "VIRTUAL_ENV")}
    env.update(SPARSELM_CACHE=str(tmp_path / "cache"), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    where = _run([python, "-c", "import sparselm; print(sparselm.__file__)"], cwd=elsewhere, env=env).strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the checkout
    exe = venv / "bin" / "sparselm"

    listing = _run([exe, "datasets", "list"], cwd=elsewhere, env=env)
    assert "problem-16-22106-pre" in listing and "74 problems" in listing
    solved = _run([exe, "solve", "-q"], cwd=elsewhere, env=env)
    assert "CONVERGENCE" in solved.upper(), solved
    doctor = _run([exe, "doctor"], cwd=elsewhere, env=env)
    assert "sparselm doctor" in doctor and "CHOLMOD uses" in doctor
