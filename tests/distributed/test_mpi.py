"""``mpiexec -n K sparselm solve``: the same answer as the single-process iterative Schur solver,
the communication model, and faults that end every rank.

Each case runs the real command line under the ``mpiexec`` of the ``mpich`` wheel (the ``mpi``
extra, installed by the test extra); 4 ranks oversubscribe a 2-core machine, which is fine for
correctness. Every rank uses one thread, as does the reference, so only the order of the sums
over the cameras differs between the runs.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
FAULT_SCRIPT = Path(__file__).with_name("fault_rank.py")
LADYBUG = "ladybug/problem-49-7776-pre.txt.bz2"
SOLVE = ["--linear-solver", "iterative_schur", "--threads", "1", "--no-progress", "-q"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
MPI_TIMEOUT_S = 600


def mpiexec(n, args, **kwargs):
    assert MPIEXEC.exists(), f"no mpiexec next to {sys.executable}: install the mpi extra (pip install -e '.[mpi]')"
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, *args], env=ENV, capture_output=True,
                          text=True, timeout=MPI_TIMEOUT_S, **kwargs)


def cli(args):
    return ["-m", "sparselm.cli", "solve", *args]


def report(tmp_path, name, result):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((tmp_path / name).read_text())


def single_process(tmp_path, problem_args):
    result = subprocess.run([sys.executable, *cli(problem_args + SOLVE + ["--report", str(tmp_path / "ref.json")])],
                            env=ENV, capture_output=True, text=True, timeout=MPI_TIMEOUT_S)
    return report(tmp_path, "ref.json", result)


@pytest.fixture(params=["synthetic", "ladybug"])
def problem_args(request):
    if request.param == "synthetic":
        return []  # the built-in synthetic problem: 16 cameras, 2000 points
    return [str(request.getfixturevalue("bal_data") / LADYBUG)]


def test_ranks_give_the_single_process_answer(tmp_path, problem_args):
    ref = single_process(tmp_path, problem_args)
    for n in (1, 2, 4):
        out = tmp_path / f"out{n}.bal"
        got = report(tmp_path, f"r{n}.json", mpiexec(n, cli(problem_args + SOLVE + [
            "--report", str(tmp_path / f"r{n}.json"), "-o", str(out)])))
        assert got["linear_solver"]["ranks"] == n
        assert got["n_iterations"] == ref["n_iterations"], (n, got["n_iterations"], ref["n_iterations"])
        assert got["final_cost"] == pytest.approx(ref["final_cost"], rel=1e-10, abs=0), n
        assert got["termination"] == ref["termination"]
        assert out.exists()
        # the communication per CG iteration: one Allreduce of 9 doubles per camera, measured at the call
        info = got["linear_solver"]
        n_cameras = got["problem"]["parameter_groups"]["cameras"]["blocks"]
        assert info["allreduce_calls"]["cg"] == info["total_cg_iterations"]
        assert info["bytes_per_cg_iteration"] == info["bytes_per_cg_iteration_model"] == 8 * 9 * n_cameras


def run_fault(tmp_path, mode, rank, call, problem_args, ranks=3):
    out = tmp_path / "out.bal"
    args = [str(FAULT_SCRIPT), mode, str(rank), str(call), "--", "solve", *problem_args, *SOLVE, "-o", str(out)]
    result = mpiexec(ranks, args)
    ended = time.time()
    stamps = [float(x) for x in re.findall(r"FAULT_AT (\d+\.\d+)", result.stderr)]
    return result, ended, stamps, out


@pytest.mark.parametrize("mode,message", [("raise", "injected fault on rank 1"),
                                          ("oom", "injected out-of-memory"),
                                          ("kill", "signal 9")])
def test_a_failing_rank_ends_every_rank_quickly_without_output(tmp_path, bal_data, mode, message):
    result, ended, stamps, out = run_fault(tmp_path, mode, 1, 3, [str(bal_data / LADYBUG)])
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert len(stamps) == 1, result.stderr
    assert ended - stamps[0] < 10.0
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_a_malformed_file_ends_every_rank_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3 4\n0 0 1.0 2.0\n0 1 oops 2.0\n")
    out = tmp_path / "out.bal"
    started = time.time()
    result = mpiexec(3, cli([str(bad), *SOLVE, "-o", str(out)]))
    assert result.returncode != 0
    assert "rank 0 of 3: error:" in result.stderr and str(bad) in result.stderr
    assert time.time() - started < 60
    assert not out.exists()


def test_ctrl_c_writes_the_best_point(tmp_path, bal_data):
    out = tmp_path / "out.bal"
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable,
                             *cli([str(bal_data / LADYBUG), "--linear-solver", "iterative_schur", "--threads", "1",
                                   "--function-tolerance", "1e-14", "--max-iterations", "500", "-o", str(out)])],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"\s+3\s", line):  # iteration 3 printed: interrupt as a terminal's Ctrl-C would
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, "".join(lines) + rest
    assert "INTERRUPTED" in rest and "wrote the solution" in rest
    assert out.exists()
