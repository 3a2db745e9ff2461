"""SLURM on this machine (tests/slurm_local.py starts a real one-node cluster): the cluster
itself, the rank variables `bench run` reads under srun, and real `bench` jobs submitted with
`bench launch --slurm` for torch and for chainer. Skips, saying why, where SLURM cannot run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mpi_missing
from tests.slurm_local import LocalSlurm, slurm  # noqa: F401  (the fixture)

# One cluster per pytest session: with ./test.sh's two workers, all SLURM tests run on one.
pytestmark = pytest.mark.xdist_group("slurm")

# Each rank writes its own file: stdout forwarded by mpiexec from two ranks can interleave or lose
# a line at exit (CI once read "rankrank 1 of 2 sum 3"), which says nothing about the allocation.
MPI_HELLO = ("import sys, pathlib; from mpi4py import MPI; c = MPI.COMM_WORLD; s = c.allreduce(c.Get_rank() + 1); "
             "pathlib.Path(sys.argv[1], f'rank{c.Get_rank()}').write_text(f'rank {c.Get_rank()} of {c.Get_size()} sum {s}')")


def _ok(proc, cluster: LocalSlurm) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{cluster.logs()}"
    return proc.stdout


def test_srun_gives_each_task_its_slurm_rank(slurm):
    out = _ok(slurm.run("srun", "-N1", "-n2", "bash", "-c",
                        "echo $SLURM_PROCID $SLURM_NTASKS $SLURM_LOCALID $SLURM_NODEID $SLURM_JOB_NODELIST"), slurm)
    rows = sorted(line.split() for line in out.splitlines())
    assert [r[:4] for r in rows] == [["0", "2", "0", "0"], ["1", "2", "1", "0"]]
    assert rows[0][4] == rows[1][4] != ""  # the node list: this machine's hostname


def test_sbatch_job_with_two_tasks_per_node_runs(slurm, tmp_path):
    out_file = tmp_path / "job.out"
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n"
                      f"#SBATCH --output={out_file}\nsrun bash -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n")
    _ok(slurm.run("sbatch", "--wait", str(script)), slurm)
    assert sorted(out_file.read_text().splitlines()) == ["task 0 of 2", "task 1 of 2"]


@pytest.mark.parametrize("how", ["mpiexec", "srun-pmix"])
def test_mpi_in_an_allocation_starts_two_ranks(slurm, how, tmp_path):
    if (why := mpi_missing()) is not None:
        pytest.skip(why)
    hello = [sys.executable, "-c", MPI_HELLO, str(tmp_path)]
    if how == "mpiexec":  # Open MPI reads the allocation from SLURM_* and starts its daemons with srun
        argv = ["salloc", "-N1", "-n2", "mpiexec", "--allow-run-as-root", *hello]
    else:
        argv = ["srun", "--mpi=pmix", "-N1", "-n2", *hello]
    _ok(slurm.run(*argv), slurm)
    assert sorted(p.read_text() for p in tmp_path.glob("rank*")) == ["rank 0 of 2 sum 3", "rank 1 of 2 sum 3"]


# --- real bench jobs: `bench launch --slurm` writes the script, sbatch --wait runs it ----------

def _bench_job(cluster: LocalSlurm, tmp_path: Path, backend: str, via: str) -> dict:
    """Submit a 1-node x 2-task job and return its run.json (one folder, written by rank 0)."""
    from tests.conftest import BENCH, TINY, run_dirs
    from tests.test_multinode import LOOPBACK, _free_port

    results, script = tmp_path / "results", tmp_path / f"{via}.sbatch"
    size = ["--train-size", "64", "--test-size", "32"] if backend == "chainer" else []
    argv = [BENCH, "launch", "--backend", backend, "--slurm", "--ntasks-per-node", "2", "--slurm-via", via,
            "--time", "10", "--script", str(script), "--wait", *TINY, *size, "--epochs", "1",
            "--results-dir", str(results)]
    # rank 0's address and port given to the job: the loopback address and a port free now
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=400,
                          env=cluster.env(**LOOPBACK, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())))
    job_out = "\n".join(p.read_text() for p in tmp_path.glob("bench-*.out"))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{job_out}\n{cluster.logs()}"
    assert proc.stdout.startswith(script.read_text()) and "#SBATCH --ntasks-per-node=2" in proc.stdout
    assert "Submitted batch job" in proc.stdout  # sbatch's own line
    runs = run_dirs(results)
    assert len(runs) == 1, (runs, job_out)
    meta = json.loads((runs[0] / "run.json").read_text())
    d = meta["distributed"]
    assert meta["status"] == "completed" and d["world_size"] == 2 and d["ranks_identical"] is True
    assert (d["nodes"], d["processes_per_node"]) == (1, 2)
    assert [(r["rank"], r["node_rank"], r["local_rank"]) for r in d["ranks"]] == [(0, 0, 0), (1, 0, 1)]
    return d


@pytest.mark.slow  # a SLURM job: ~15 s of work, and sbatch --wait polls
def test_torch_job_one_torchrun_per_node(slurm, tmp_path):
    d = _bench_job(slurm, tmp_path, "torch", "torchrun")
    assert (d["launcher"], d["transport"]) == ("torchrun", "gloo")


@pytest.mark.slow
def test_torch_job_takes_its_ranks_from_slurm(slurm, tmp_path):
    d = _bench_job(slurm, tmp_path, "torch", "srun")  # no torchrun: SLURM_PROCID & co. and env:// from them
    assert (d["launcher"], d["transport"]) == ("slurm", "gloo")


@pytest.mark.slow
@pytest.mark.parametrize("via, launcher", [("pmix", "slurm"), ("mpiexec", "mpi")])
def test_chainer_job(slurm, tmp_path, via, launcher):
    if (why := mpi_missing()) is not None:
        pytest.skip(why)
    d = _bench_job(slurm, tmp_path, "chainer", via)
    assert (d["launcher"], d["communicator"], d["transport"]) == (launcher, "naive", "MPI")
