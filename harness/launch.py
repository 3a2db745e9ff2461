"""`bench launch`: print, and by default run, the launcher line of a distributed `bench run`.

    bench launch --nproc 2 --backend torch --model resnet20 --epochs 2 [--dry-run]
    OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node=2 .venv/bin/bench run --backend torch --distributed --model resnet20 --epochs 2

    bench launch --nproc 2 --backend chainer --model resnet20 --epochs 2
    OMP_NUM_THREADS=1 mpiexec --allow-run-as-root --bind-to none -x OMP_NUM_THREADS -n 2 .venv/bin/bench run --backend chainer --distributed ...

Every flag other than --nproc, --backend and --dry-run goes to `bench run` unchanged, and is
checked here first (a typo fails in a second, not after N processes started). The
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

The exit status is the launcher's (torchrun says 1 for any failed worker).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.distributed import LAUNCHER_OF, MPI, TORCHRUN, per_rank_batch
from harness.errors import BenchError

# Passed on with Open MPI's -x when set (local processes inherit the environment anyway).
MPI_EXPORTS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "SETUPTOOLS_USE_DISTUTILS",
               "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "NCCL_DEBUG")


class _PassThrough(argparse.ArgumentParser):
    """The `launch` sub-parser: hands every argument after `launch` to :func:`main`, which
    separates its own flags from `bench run`'s (argparse would reject the run flags)."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        namespace = namespace or argparse.Namespace()
        namespace.launch_args = list(args or [])
        namespace.func = _cmd_launch
        return namespace, []


def add_launch_parser(sub: Any) -> None:
    p = sub.add_parser("launch", add_help=False,
                       help="print and run the torchrun (torch) / mpiexec (chainer) line of a distributed bench run")
    p.__class__ = _PassThrough


def _own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench launch", allow_abbrev=False,
        usage="bench launch --nproc N --backend {torch,chainer} [--dry-run] [bench run flags ...]",
        description="Start a data-parallel `bench run --distributed` with N processes on this machine: torch "
                    "under torchrun (DDP), chainer under mpiexec (ChainerMN). Prints the exact launcher line, "
                    "then runs it. Other flags go to `bench run` (see `bench run --help`); --batch-size is the "
                    "global batch and must divide by N.")
    p.add_argument("--nproc", type=int, required=True, help="number of processes (ranks) on this machine")
    p.add_argument("--backend", required=True, choices=sorted(LAUNCHER_OF), help="framework to train")
    p.add_argument("--dry-run", action="store_true", help="print the line, do not run it")
    return p


def _cmd_launch(args: argparse.Namespace) -> int:
    return main(args.launch_args)


def main(argv: Sequence[str]) -> int:
    parser = _own_parser()
    own, run_args = parser.parse_known_args(list(argv))
    if own.nproc < 1:
        raise BenchError(f"--nproc must be at least 1, got {own.nproc}")
    check_run_flags(own.backend, own.nproc, run_args)
    env_add, command = build_command(own.nproc, own.backend, run_args)
    line = format_command(env_add, command)
    if own.dry_run:
        print(line, flush=True)
        return 0
    if own.backend == "chainer" and shutil.which(command[0]) is None:
        raise BenchError("mpiexec not found: run scripts/ensure-mpi.sh (Debian: apt-get install openmpi-bin "
                         "libopenmpi-dev, then pip install mpi4py) or install an MPI")
    print(f"bench launch: {line}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, {**os.environ, **env_add})  # signals go straight to the launcher
    return 0  # not reached


def check_run_flags(backend: str, nproc: int, run_args: list[str]) -> None:
    """Parse and validate the `bench run` flags now, as every rank will (exit 2 on a typo)."""
    from harness import cli
    from harness.config import RunConfig

    if "--resume" in run_args:
        cli.build_parser().parse_args(["run", *run_args])  # settings come from run.json
        return
    args = cli.build_parser().parse_args(["run", "--backend", backend, "--distributed", *run_args])
    given = cli._given(args)
    if "no_skip" in given:
        given["no_skip"] = tuple(given["no_skip"])
    config = RunConfig(**given).validate()
    per_rank_batch(config.batch_size, nproc)


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


def build_command(nproc: int, backend: str, run_args: Sequence[str], *, environ: Mapping[str, str] | None = None,
                  is_root: bool | None = None, cores: int | None = None,
                  open_mpi: bool | None = None) -> tuple[dict[str, str], list[str]]:
    """(variables to add to the environment, argv) that start ``nproc`` ranks of ``backend``."""
    environ = os.environ if environ is None else environ
    cores = _cores() if cores is None else cores
    env_add: dict[str, str] = {}
    if "OMP_NUM_THREADS" not in environ:  # --threads T: T, as the framework will use
        given = list(run_args)
        threads = given[given.index("--threads") + 1] if "--threads" in given[:-1] else None
        env_add["OMP_NUM_THREADS"] = threads or str(max(1, cores // nproc))
    bench = _program("bench")
    run = ["run", "--backend", backend, "--distributed", *run_args]
    if LAUNCHER_OF[backend] == TORCHRUN:
        script = [bench] if Path(bench).is_file() else ["-m", "harness.cli"]
        return env_add, [_program("torchrun"), "--standalone", f"--nproc_per_node={nproc}", *script, *run]
    assert LAUNCHER_OF[backend] == MPI
    mpiexec = shutil.which("mpiexec") or "mpiexec"
    command = [mpiexec]
    if _is_open_mpi(mpiexec) if open_mpi is None else open_mpi:
        if (os.geteuid() == 0) if is_root is None else is_root:
            command.append("--allow-run-as-root")
        if nproc > cores:
            command.append("--oversubscribe")
        command += ["--bind-to", "none"]
        for var in MPI_EXPORTS:
            if var in environ or var in env_add:
                command += ["-x", var]
    program = [bench] if Path(bench).is_file() else [sys.executable, "-m", "harness.cli"]
    return env_add, [*command, "-n", str(nproc), *program, *run]


def format_command(env_add: Mapping[str, str], command: Sequence[str]) -> str:
    """The line as a shell would take it: ``VAR=value ... program args``."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env_add.items()), shlex.join(command)])
