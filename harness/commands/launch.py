"""`bench launch`: print, and by default run, the torchrun / mpiexec line of a distributed `bench run`.

Its own flags are --nproc, --backend and --dry-run; every other argument is a `bench run`
flag, passed on unchanged (the CLI hands them over as ``args.extra_args``) after being
checked here exactly as every rank will check them, so a typo fails now rather than after N
processes started. The line itself is built by harness/launch.py.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any, NoReturn

from harness.commands.run import add_setting_flags, given_settings
from harness.config import RunConfig
from harness.distributed import LAUNCHER_OF, per_rank_batch
from harness.errors import BenchError
from harness.launch import build_command, format_command

NAME = "launch"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, allow_abbrev=False,
        help="print and run the torchrun (torch) / mpiexec (chainer) line of a distributed bench run",
        usage="bench launch --nproc N --backend {torch,chainer} [--dry-run] [bench run flags ...]",
        description="Start a data-parallel `bench run --distributed` with N processes on this machine: torch "
                    "under torchrun (DDP), chainer under mpiexec (ChainerMN). Prints the exact launcher line, "
                    "then runs it. Other flags go to `bench run` (see `bench run --help`); --batch-size is the "
                    "global batch and must divide by N.")
    p.add_argument("--nproc", type=int, required=True, metavar="N", help="number of processes (ranks) on this machine")
    p.add_argument("--backend", required=True, choices=sorted(LAUNCHER_OF), help="framework to train")
    p.add_argument("--dry-run", action="store_true", help="print the line, do not run it")
    p.set_defaults(extra_args=[])  # takes the arguments it does not know: they are `bench run`'s


def run(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise BenchError(f"--nproc must be at least 1, got {args.nproc}")
    run_args = list(args.extra_args)
    check_run_flags(args.backend, args.nproc, run_args)
    env_add, command = build_command(args.nproc, args.backend, run_args)
    line = format_command(env_add, command)
    if args.dry_run:
        print(line, flush=True)
        return 0
    if args.backend == "chainer" and shutil.which(command[0]) is None:
        raise BenchError("mpiexec not found: run scripts/ensure-mpi.sh (Debian: apt-get install openmpi-bin "
                         "libopenmpi-dev, then pip install mpi4py) or install an MPI")
    print(f"bench launch: {line}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, {**os.environ, **env_add})  # signals go straight to the launcher
    return 0  # not reached


class _RunFlags(argparse.ArgumentParser):
    """`bench run`'s flags, parsed here only to check them: a mistake is a BenchError."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise BenchError(f"{message} (these go to `bench run`: see `bench run --help`)")


def check_run_flags(backend: str, nproc: int, run_args: list[str]) -> None:
    """Parse and validate the `bench run` flags now, as every rank will (exit 2 on a typo)."""
    parser = _RunFlags(prog="bench run", add_help=False)
    add_setting_flags(parser, groups=False)
    parser.add_argument("--resume")
    args = parser.parse_args(["--backend", backend, "--distributed", *run_args])
    if args.resume is not None:
        return  # the settings come from the run's run.json
    config = RunConfig(**given_settings(args)).validate()
    per_rank_batch(config.batch_size, nproc)
