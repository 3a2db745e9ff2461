"""The launcher line of a distributed `bench run` (`bench launch`: harness/commands/launch.py).

    bench launch --nproc 2 --backend torch --model resnet20 --epochs 2 [--dry-run]
    OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node=2 .venv/bin/bench run --backend torch --distributed --model resnet20 --epochs 2

    bench launch --nproc 2 --backend chainer --model resnet20 --epochs 2
    OMP_NUM_THREADS=1 mpiexec --allow-run-as-root --bind-to none -x OMP_NUM_THREADS -n 2 .venv/bin/bench run --backend chainer --distributed ...

Every flag other than --nproc, --backend and --dry-run goes to `bench run` unchanged (the
command checks them first: a typo fails in a second, not after N processes started). The
launcher-specific details the line takes care of:

- torch runs under torchrun (DDP); ``--standalone`` makes it a one-host job with its own
  rendezvous on a free port, so two jobs on one machine never collide.
- chainer runs under mpiexec (ChainerMN). With Open MPI: ``--allow-run-as-root`` when root
  (it refuses otherwise), ``--oversubscribe`` when there are more processes than cores (it
  counts physical cores as slots and refuses otherwise), ``--bind-to none`` (Open MPI pins
  each process to one core by default, which would starve a process's own threads and
  differs from torchrun, which pins nothing), and ``-x VAR`` for the thread and Python
  variables that are set, so processes on other hosts get them too.
- ``OMP_NUM_THREADS`` = cores / processes (or --threads) unless it is set: each process's
  framework would otherwise start one thread per core and N processes would oversubscribe
  the CPU N times (torchrun would set 1 and warn, mpiexec sets nothing).

Several machines (the pure builders are in harness/distributed/launchers.py; this module
fills in this environment's programs and thread count):

- torch: :func:`multinode_lines`, one torchrun line per node (static rendezvous: node rank
  and rank 0's address) or one for every node (torchrun's elastic c10d rendezvous);
- chainer: :func:`build_command` with a ``hostfile`` (mpiexec over its hosts and slots);
- SLURM: :func:`slurm_script`, a batch script that runs the right launcher in the allocation.

The exit status is rank 0's, as `bench run` would exit (harness/distributed/outcome.py), or the
launcher's when rank 0 left none (torchrun says 1 for any failed worker; rank 0 on another
node; sbatch with --slurm).
"""  # noqa: E501  (the example command lines above are shown whole, as bench launch prints them)
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from harness.distributed import LAUNCHER_OF, MPI, TORCHRUN
from harness.distributed import launchers as L

# Passed on with Open MPI's -x when set (local processes inherit the environment anyway).
MPI_EXPORTS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "SETUPTOOLS_USE_DISTUTILS",
               "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "NCCL_DEBUG")


def _cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except Exception:
        return os.cpu_count() or 1


def _program(name: str) -> str:
    """This environment's copy of a console script (the venv's torchrun/bench), else PATH's."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else (shutil.which(name) or name)


def _is_open_mpi(mpiexec: str) -> bool:
    """Open MPI's mpiexec takes --allow-run-as-root/--oversubscribe/--bind-to/-x; MPICH's
    (Hydra) allows root and oversubscription by default and passes the environment itself."""
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return True  # not installed: show the line for Open MPI, what scripts/ensure-mpi.sh installs
    return "open mpi" in (out.stdout + out.stderr).lower() or "openrte" in (out.stdout + out.stderr).lower()


def threads_flag(run_args: Sequence[str]) -> str | None:
    """The value of ``--threads`` among the `bench run` flags, if given."""
    given = list(run_args)
    return given[given.index("--threads") + 1] if "--threads" in given[:-1] else None


def _bench_script(backend: str, run_args: Sequence[str]) -> list[str]:
    """torchrun's script and its arguments: this environment's `bench run --distributed ...`."""
    bench = _program("bench")
    script = [bench] if Path(bench).is_file() else ["-m", "harness.cli"]
    return [*script, "run", "--backend", backend, "--distributed", *run_args]


def _thread_env(nproc: int, run_args: Sequence[str], environ: Mapping[str, str], cores: int) -> dict[str, str]:
    if "OMP_NUM_THREADS" in environ:
        return {}
    return {"OMP_NUM_THREADS": threads_flag(run_args) or str(max(1, cores // nproc))}  # --threads T: T


def build_command(nproc: int, backend: str, run_args: Sequence[str], *, environ: Mapping[str, str] | None = None,
                  is_root: bool | None = None, cores: int | None = None, open_mpi: bool | None = None,
                  hostfile: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """(variables to add to the environment, argv) that start ``nproc`` ranks of ``backend``
    on this machine (chainer: over the hosts of ``hostfile``)."""
    environ = os.environ if environ is None else environ
    cores = _cores() if cores is None else cores
    env_add = _thread_env(nproc, run_args, environ, cores)
    if LAUNCHER_OF[backend] == TORCHRUN:
        return env_add, [_program("torchrun"), "--standalone", f"--nproc_per_node={nproc}",
                         *_bench_script(backend, run_args)]
    assert LAUNCHER_OF[backend] == MPI
    mpiexec = shutil.which("mpiexec") or "mpiexec"
    bench = _program("bench")
    program = [bench] if Path(bench).is_file() else [sys.executable, "-m", "harness.cli"]
    exports = [var for var in MPI_EXPORTS if var in environ or var in env_add]
    # a hostfile's slots say how many processes each host takes; cores are this machine's only
    command = L.mpiexec_argv(mpiexec, nproc, [*program, "run", "--backend", backend, "--distributed", *run_args],
                             open_mpi=_is_open_mpi(mpiexec) if open_mpi is None else open_mpi,
                             is_root=(os.geteuid() == 0) if is_root is None else is_root,
                             oversubscribe=hostfile is None and nproc > cores, exports=exports, hostfile=hostfile)
    return env_add, command


def multinode_lines(nodes: L.Nodes, backend: str, run_args: Sequence[str], *,
                    environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    """(variables to add, [(which node, torchrun argv)]) of a torch job over ``nodes``; the
    thread count is this machine's cores / processes per node, as each node's own
    `bench launch` would compute it on a machine like this one."""
    environ = os.environ if environ is None else environ
    env_add = _thread_env(nodes.nproc_per_node, run_args, environ, _cores())
    return env_add, L.torchrun_node_lines(_program("torchrun"), nodes, _bench_script(backend, run_args))


def slurm_script(job: L.SlurmJob, backend: str, via: str, run_args: Sequence[str], command_line: str) -> str:
    """The batch script of ``job`` with this environment's bench, torchrun and mpiexec."""
    mpiexec = shutil.which("mpiexec") or "mpiexec"
    flags = L.mpiexec_argv(mpiexec, None, [], open_mpi=_is_open_mpi(mpiexec), is_root=os.geteuid() == 0,
                           oversubscribe=False, exports=["OMP_NUM_THREADS"])  # set by the script itself
    threads = threads_flag(run_args)
    program = [_program("bench"), "run", "--backend", backend, "--distributed", *run_args]
    return L.sbatch_script(job, LAUNCHER_OF[backend], via, program, torchrun=_program("torchrun"), mpiexec_flags=flags,
                           threads=int(threads) if threads and threads.isdigit() else None,
                           command_line=command_line)


def format_command(env_add: Mapping[str, str], command: Sequence[str]) -> str:
    """The line as a shell would take it: ``VAR=value ... program args``."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env_add.items()), shlex.join(command)])
