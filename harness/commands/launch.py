"""`bench launch`: print, and by default run, the torchrun / mpiexec line of a distributed `bench run`.

    bench launch --backend torch --nproc 4 ...                                   this machine
    bench launch --backend torch --nnodes 2 --nproc 4 --node-rank K --master-addr node01 --master-port 29500 ...
    bench launch --backend torch --nnodes 2 --nproc 4 --rdzv-endpoint node01:29500 ...  (same line everywhere)
    bench launch --backend chainer --hostfile hosts [--nproc N] ...             N: the hosts' slots
    bench launch --backend torch --slurm --nodes 2 --ntasks-per-node 4 --time 1:00:00 --partition gpu ...

Its own flags are those above and --dry-run; every other argument is a `bench run` flag,
passed on unchanged (the CLI hands them over as ``args.extra_args``) after being checked
here exactly as every rank will check them (with the job's total process count), so a typo
fails now rather than after N processes started. The lines are built by harness/launch.py
over harness/distributed/launchers.py. With ``--nnodes`` and ``--dry-run`` every node's line
is printed; without --dry-run this node's line runs (it needs --node-rank, or the elastic
--rdzv-endpoint). ``--slurm`` writes the batch script, prints it and submits it with sbatch
(``--dry-run``: writes and prints only; ``--wait``: sbatch --wait).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn

from harness.commands.run import add_setting_flags, given_settings
from harness.config import RunConfig
from harness.distributed import LAUNCHER_OF, per_rank_batch
from harness.distributed import launchers as L
from harness.distributed.outcome import run_launcher
from harness.errors import BenchError
from harness.launch import build_command, format_command, multinode_lines, slurm_script

NAME = "launch"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, allow_abbrev=False,
        help="print and run the torchrun (torch) / mpiexec (chainer) line of a distributed bench run, on one "
             "machine, several, or as a SLURM job",
        usage="bench launch --backend {torch,chainer} [--nproc N] [several machines | --slurm ...] [--dry-run] "
              "[bench run flags ...]",
        description="Start a data-parallel `bench run --distributed`: torch under torchrun (DDP), chainer under "
                    "mpiexec (ChainerMN), on this machine, on several, or as a SLURM job. Prints the exact "
                    "launcher line, then runs it. Other flags go to `bench run` (see `bench run --help`); "
                    "--batch-size is the global batch and must divide by the number of processes.")
    p.add_argument("--nproc", type=int, metavar="N", help="processes on this machine (per node with --nnodes; the "
                                                          "total with --hostfile, default: the hostfile's slots)")
    p.add_argument("--backend", required=True, choices=sorted(LAUNCHER_OF), help="framework to train")
    p.add_argument("--dry-run", action="store_true", help="print the line(s) (--slurm: write the script), run nothing")
    t = p.add_argument_group("several machines, torch (torchrun rendezvous; run the printed line on each node)")
    t.add_argument("--nnodes", type=int, default=1, metavar="N", help="number of machines (default 1)")
    t.add_argument("--node-rank", type=int, metavar="K", help="this machine's index, 0..nnodes-1 (0: --master-addr's)")
    t.add_argument("--master-addr", metavar="HOST", help="address of node 0, reachable from every node")
    t.add_argument("--master-port", type=int, default=L.DEFAULT_PORT, metavar="PORT",
                   help="a free port on node 0 (default 29500)")
    t.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="torchrun's elastic c10d rendezvous instead: the "
                                                                "same line on every node, ranks assigned as nodes join")
    t.add_argument("--rdzv-id", default="bench", metavar="ID", help="shared by the nodes of one c10d rendezvous")
    m = p.add_argument_group("several machines, chainer (mpiexec)")
    m.add_argument("--hostfile", type=Path, metavar="FILE", help="MPI hostfile, one `HOST slots=N` per line")
    s = p.add_argument_group("SLURM (writes a batch script and submits it with sbatch)")
    s.add_argument("--slurm", action="store_true", help="run as a SLURM job")
    s.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes to allocate (default 1)")
    s.add_argument("--ntasks-per-node", type=int, metavar="K", help="processes per node (default: --nproc, else 1)")
    s.add_argument("--time", metavar="LIMIT", help="time limit: minutes, HH:MM:SS or D-HH:MM")
    s.add_argument("--partition", metavar="NAME", help="partition (default: the cluster's)")
    s.add_argument("--cpus-per-task", type=int, metavar="C", help="CPUs per process (and OMP_NUM_THREADS)")
    s.add_argument("--gpus-per-node", type=int, metavar="G", help="GPUs per node (default with --device cuda: one "
                                                                  "per task)")
    s.add_argument("--slurm-via", metavar="HOW", help="torch: torchrun (one per node, default) or srun (one task "
                                                      "per rank); chainer: pmix (default), pmi2 or mpiexec")
    s.add_argument("--script", type=Path, metavar="PATH", help="where to write the batch script "
                                                               "(default bench-<time>.sbatch)")
    s.add_argument("--wait", action="store_true", help="sbatch --wait: return when the job ends, with its status")
    p.set_defaults(extra_args=[])  # takes the arguments it does not know: they are `bench run`'s


def run(args: argparse.Namespace) -> int:
    run_args = list(args.extra_args)
    if args.slurm:
        return _slurm(args, run_args)
    if args.hostfile is not None and args.backend != "chainer":
        raise BenchError("--hostfile is for chainer (mpiexec); torch across machines uses --nnodes with "
                         "--master-addr or --rdzv-endpoint")
    multinode = args.nnodes > 1 or args.rdzv_endpoint is not None or args.master_addr is not None
    if multinode and args.backend != "torch":
        raise BenchError("--nnodes/--master-addr/--rdzv-endpoint are torchrun's: for chainer across machines give "
                         "--hostfile (one `HOST slots=N` per line)")
    nproc = _nproc(args)
    if not multinode:
        check_run_flags(args.backend, nproc, run_args)
        env_add, command = build_command(nproc, args.backend, run_args, hostfile=args.hostfile)
        return _run_or_print(args.backend, env_add, command, args.dry_run)
    nodes = L.Nodes(args.nnodes, nproc, args.node_rank, args.master_addr, args.master_port, args.rdzv_endpoint,
                    args.rdzv_id).validate()
    check_run_flags(args.backend, nodes.nnodes * nproc, run_args)
    env_add, lines = multinode_lines(nodes, args.backend, run_args)
    if args.dry_run:
        for where, command in lines:
            print(f"# {where}\n{format_command(env_add, command)}", flush=True)
        return 0
    if not nodes.elastic and args.node_rank is None:
        raise BenchError(f"--nnodes {nodes.nnodes}: give this machine's --node-rank (0..{nodes.nnodes - 1}) to run "
                         f"its line; --dry-run prints every node's line")
    return _run_or_print(args.backend, env_add, lines[0][1], False)


def _nproc(args: argparse.Namespace) -> int:
    """--nproc, or the hostfile's slots; checked against them."""
    nproc = args.nproc
    if args.hostfile is not None:
        slots = sum(n for _, n in L.read_hostfile(args.hostfile))
        nproc = slots if nproc is None else nproc
        if nproc > slots:
            raise BenchError(f"--nproc {nproc} is more than the {slots} slots of --hostfile {args.hostfile}: "
                             f"add slots there or ask for fewer processes")
    if nproc is None:
        raise BenchError("--nproc N is required: the number of processes on this machine (per node with --nnodes)")
    if nproc < 1:
        raise BenchError(f"--nproc must be at least 1, got {nproc}")
    return nproc


def _run_or_print(backend: str, env_add: Mapping[str, str], command: list[str], dry_run: bool) -> int:
    line = format_command(env_add, command)
    if dry_run:
        print(line, flush=True)
        return 0
    if backend == "chainer" and shutil.which(command[0]) is None:
        raise BenchError("mpiexec not found: run scripts/ensure-mpi.sh (Debian: apt-get install openmpi-bin "
                         "libopenmpi-dev, then pip install mpi4py) or install an MPI")
    print(f"bench launch: {line}", file=sys.stderr, flush=True)
    # rank 0's exit code (3 diverged, 130 interrupted, 2 a one-line error), not torchrun's 1
    return run_launcher(command, {**os.environ, **env_add})


def _slurm(args: argparse.Namespace, run_args: list[str]) -> int:
    """Write the batch script of a SLURM job, print it, and (without --dry-run) submit it."""
    for flag, value in (("--nnodes", args.nnodes != 1), ("--hostfile", args.hostfile), ("--node-rank", args.node_rank),
                        ("--master-addr", args.master_addr), ("--rdzv-endpoint", args.rdzv_endpoint)):
        if value:
            raise BenchError(f"{flag} does not go with --slurm: SLURM places the processes; give --nodes and "
                             f"--ntasks-per-node")
    per_node = args.ntasks_per_node or args.nproc or 1
    device = run_args[run_args.index("--device") + 1] if "--device" in run_args[:-1] else "cpu"
    gpus = args.gpus_per_node or (per_node if device.startswith("cuda") else None)  # one GPU per rank
    job = L.SlurmJob(args.nodes, per_node, args.time, args.partition, args.cpus_per_task, gpus).validate()
    via = args.slurm_via or L.SLURM_VIA[LAUNCHER_OF[args.backend]][0]
    check_run_flags(args.backend, job.ntasks, run_args)
    text = slurm_script(job, args.backend, via, run_args, shlex.join(["bench", *sys.argv[1:]]))
    script = args.script or Path(f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}.sbatch")
    _write_script(script, text)
    print(text, end="", flush=True)
    submit = ["sbatch", *(["--wait"] if args.wait else []), str(script)]
    if args.dry_run:
        print(f"bench launch: wrote {script}; submit it with: {shlex.join(submit)}", file=sys.stderr, flush=True)
        return 0
    if shutil.which("sbatch") is None:
        raise BenchError(f"sbatch not found: this is not a SLURM login node (the script is in {script}: copy it to "
                         f"one and run `sbatch {script.name}`)")
    print(f"bench launch: {shlex.join(submit)}", file=sys.stderr, flush=True)
    return subprocess.run(submit, check=False).returncode


def _write_script(path: Path, text: str) -> None:
    from harness import schema as R

    try:
        R.atomic_write_bytes(path, text.encode())
        path.chmod(0o755)
    except OSError as exc:
        raise BenchError(f"cannot write the batch script {path}: {exc.strerror or exc}; give --script PATH "
                         f"somewhere writable") from None


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
