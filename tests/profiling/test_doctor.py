"""Diagnostics: which BLAS CHOLMOD really loaded, versions, numba's cache, the CPU; ``sparselm doctor``."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import sparselm
from sparselm.cli import main as cli_main
from sparselm.profiling import blas
from sparselm.profiling import doctor as diagnostics
from sparselm.profiling.jit import numba_cache_status

KINDS = {"openblas", "mkl", "blis", "atlas", "flexiblas", "accelerate", "reference", "unknown"}
MULTIARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
REFERENCE_BLAS_DIR = Path(f"/usr/lib/{MULTIARCH}/blas")


@pytest.mark.parametrize("path, kind", [
    ("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", "reference"),
    ("/usr/lib64/libblas.so.3", "reference"),
    ("/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "reference"),
    ("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", "openblas"),
    ("/usr/lib/x86_64-linux-gnu/libopenblasp-r0.3.21.so", "openblas"),
    ("/opt/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so", "openblas"),
    ("/opt/intel/lib/libmkl_rt.so.2", "mkl"),
    ("/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4", "blis"),
    ("/usr/lib/x86_64-linux-gnu/atlas/libblas.so.3", "atlas"),
    ("/usr/lib64/libflexiblas.so.3", "flexiblas"),
    ("/usr/lib/libsomething.so.1", "unknown"),
])
def test_blas_kind_from_path(path, kind):
    assert blas._blas_kind(path) == kind


def test_blas_info_names_cholmods_blas():
    info = blas.blas_info()
    chol = info["cholmod"]
    assert isinstance(chol, dict), info["warnings"]
    assert chol["kind"] in KINDS
    assert os.path.exists(chol["library"]) and "libcholmod" in chol["library"]
    assert chol["blas"] and os.path.exists(chol["blas"])
    # the library named is really mapped into this process (read from /proc/self/maps)
    mapped = {os.path.realpath(p) for p in blas.mapped_libraries()}
    assert os.path.realpath(chol["blas"]) in mapped
    assert all(isinstance(w, str) for w in info["warnings"])
    assert info["numpy"]["name"]
    for lib in info["loaded"]:
        assert lib["kind"] in KINDS
    # the reference BLAS is flagged, and only it
    assert any("reference" in w for w in info["warnings"]) == (chol["kind"] == "reference")
    summary = blas.blas_summary(info)
    assert chol["kind"] in summary and str(chol["blas"]) in summary
    json.dumps(info)  # plain data


def test_reference_blas_is_flagged(monkeypatch):
    """With CHOLMOD's libblas resolving to the netlib reference BLAS, blas_info warns."""
    ref = f"/usr/lib/{MULTIARCH}/blas/libblas.so.3.11.0"
    cholmod = f"/usr/lib/{MULTIARCH}/libcholmod.so.3.0.14"
    monkeypatch.setattr(blas, "mapped_libraries", lambda: [cholmod, ref])
    monkeypatch.setattr(blas, "_ldd_resolution", lambda lib: {"libblas.so.3": ref})
    monkeypatch.setattr(blas, "_describe_library", lambda p: {"path": p, "kind": blas._blas_kind(p),
                                                                      "threads": 1})
    info = blas.blas_info(load_cholmod=False)
    assert info["cholmod"]["kind"] == "reference"
    assert info["cholmod"]["blas"] == ref
    assert len([w for w in info["warnings"] if "reference" in w and "10x slower" in w]) == 1
    assert "update-alternatives" in info["warnings"][0]


@pytest.mark.skipif(not (REFERENCE_BLAS_DIR / "libblas.so.3").exists(), reason="no reference BLAS installed")
def test_reference_blas_detected_end_to_end(tmp_path):
    """A real process whose loader resolves libblas.so.3 to the reference BLAS: doctor warns and names it."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(REFERENCE_BLAS_DIR))
    out = subprocess.run([sys.executable, "-m", "sparselm.cli", "doctor", "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    chol = report["blas"]["cholmod"]
    assert chol["kind"] == "reference"
    assert str(REFERENCE_BLAS_DIR) in chol["blas"]
    assert any("reference" in w for w in report["blas"]["warnings"])
    strict = subprocess.run([sys.executable, "-m", "sparselm.cli", "doctor", "--strict"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert strict.returncode == 1
    assert "WARNING" in strict.stdout and "reference" in strict.stdout


def test_versions():
    v = diagnostics.versions()
    for key in ("python", "numpy", "scipy", "numba", "llvmlite", "scikit-sparse", "sparselm", "cholmod", "suitesparse"):
        assert key in v
    for key in ("python", "numpy", "scipy", "numba", "llvmlite", "scikit-sparse", "sparselm"):
        assert isinstance(v[key], str) and v[key][0].isdigit(), (key, v[key])
    assert v["sparselm"] == sparselm.__version__
    import numpy

    assert v["numpy"] == numpy.__version__
    # CHOLMOD is loaded: its version comes from the library itself (cholmod_version) or its file name
    assert v["cholmod"] is not None and v["cholmod"][0].isdigit()
    assert v["suitesparse"] is not None


def test_cpu_and_threads():
    cpu = diagnostics.cpu_info()
    assert cpu["count"] >= 1 and 1 <= cpu["usable"] <= cpu["count"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    th = diagnostics.thread_info()
    import numba

    assert th["numba_threads"] == numba.get_num_threads()
    assert isinstance(th["numba_threading_layer"], str)


def test_numba_cache_status_in_process():
    st = numba_cache_status()
    assert st["kernels"] > 10  # sparselm has dozens of cache=True kernels
    assert 0 <= st["kernels_warm"] <= st["kernels"]
    assert st["kernels_warm"] + len(st["cold"]) + len(st["stale"]) + len(st["other_cpu"]) == st["kernels"]
    assert st["warm"] == (st["kernels_warm"] == st["kernels"])
    assert all(n.startswith("sparselm.") for n in st["cold"] + st["stale"] + st["other_cpu"])
    json.dumps(st)


def test_numba_cache_status_cold_and_warm(tmp_path):
    """With NUMBA_CACHE_DIR pointing at an empty folder nothing is cached; after a solve, its kernels are."""
    code = ("import json, sparselm\n"
            "from sparselm.profiling import jit as diagnostics\n"
            "before = diagnostics.numba_cache_status()\n"
            "from sparselm.core.layout import accumulate_gradient_and_column_norms as k\n"
            "import numpy as np\n"
            "z = np.zeros(2, np.int64)\n"
            "k(z, z[:0], z[:0], z[:1], z[:1], z[:1] + 1, np.zeros((0, 1)), np.zeros((0, 1, 1)), np.zeros(1),"
            " np.zeros(1))\n"
            "after = diagnostics.numba_cache_status()\n"
            "print(json.dumps([before, after]))\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before["warm"] is False and before["kernels_warm"] == 0
    assert before["index_files"] == 0
    assert after["kernels_warm"] == 1
    assert "sparselm.core.layout.accumulate_gradient_and_column_norms" not in after["cold"]
    assert after["index_files"] >= 1 and after["bytes"] > 0
    assert all(str(tmp_path) in d for d in after["cache_dirs"])


def test_doctor_report_text():
    report = diagnostics.doctor_report()
    text = diagnostics.format_doctor(report)
    chol = report["blas"]["cholmod"]
    assert "CHOLMOD uses" in text and chol["kind"] in text and chol["blas"] in text
    assert "numba" in text and "threading layer" in text
    assert "numba cache" in text
    json.dumps(report, default=str)


def _run_cli(argv, capsys):
    rc = cli_main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_doctor_command(capsys):
    rc, out, err = _run_cli(["doctor"], capsys)
    assert rc == 0, err
    info = blas.blas_info()
    assert f"CHOLMOD uses    {info['cholmod']['kind']}" in out
    assert info["cholmod"]["blas"] in out
    for name in ("numpy", "scipy", "numba", "scikit-sparse", "suitesparse"):
        assert name in out
    rc, out, err = _run_cli(["doctor", "--json"], capsys)
    assert rc == 0
    report = json.loads(out)
    assert report["blas"]["cholmod"]["kind"] == info["cholmod"]["kind"]
    assert set(report) >= {"versions", "blas", "cpu", "threads", "numba_cache"}


def test_doctor_help_and_usage_error(capsys):
    assert cli_main(["doctor"]) == 0
    out, _ = capsys.readouterr()
    assert "BLAS" in out
    assert cli_main(["doctor", "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "reference" in out and "--strict" in out
    assert cli_main(["doctor", "--bogus"]) == 2
    _, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == "sparselm: error: unrecognized arguments: --bogus"


_DOCTOR_THEN_METIS = """
import numpy as np
import sparselm
from sparselm.bal import build_problem, synthetic_problem
from sparselm.profiling.doctor import doctor_report
sparselm.solve(build_problem(synthetic_problem(30, 200, seed=3).initial), linear_solver="sparse_schur",
               ordering="metis", max_iterations=2)  # CHOLMOD and the METIS it links are loaded and used
doctor_report()  # reads versions out of the loaded CHOLMOD and BLAS libraries
import pymetis
n = 40  # a ring: METIS cuts it into 4 arcs of 10
adjacency = [[(i - 1) % n, (i + 1) % n] for i in range(n)]
_, parts = pymetis.part_graph(4, adjacency=adjacency, options=pymetis.Options(seed=0))
print(sorted(np.bincount(parts, minlength=4).tolist()))
"""


def test_doctor_leaves_the_loaded_libraries_private():
    """The doctor opens CHOLMOD and BLAS without promoting their symbols to the global scope: promoted,
    CHOLMOD's METIS captured pymetis's calls in the same process (another METIS build: 'Incorrect
    ufactor', then heap corruption at exit)."""
    pytest.importorskip("pymetis")
    run = subprocess.run([sys.executable, "-c", _DOCTOR_THEN_METIS], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[10, 10, 10, 10]"
