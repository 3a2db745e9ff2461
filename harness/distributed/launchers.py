"""The command lines that start a distributed `bench run` on several machines, built as data.

Pure functions of their arguments (no environment reads, no subprocesses), so every line
`bench launch` prints can be checked in a test, and the one it runs is the one it printed:

- :func:`torchrun_argv`: torch across nodes. Either a static rendezvous (every node is told
  ``--nnodes``, its own ``--node-rank`` and rank 0's ``--master-addr``/``--master-port``; one
  line per node) or torchrun's elastic c10d rendezvous (``--rdzv-endpoint host:port`` and a
  shared ``--rdzv-id``; the same line on every node, ranks assigned as nodes join).
- :func:`mpiexec_argv`: chainer (ChainerMN) under Open MPI or MPICH, optionally over the hosts
  of a ``--hostfile`` (:func:`read_hostfile` checks it first).
- :func:`sbatch_script`: a SLURM batch script that runs the right launcher inside the
  allocation: torch as one ``torchrun`` per node (c10d rendezvous on the first node) or as
  one srun task per rank that reads its rank from SLURM (harness/distributed/slurm.py);
  chainer as ``srun --mpi=pmix|pmi2`` (ranks from SLURM, MPI wired by the PMI plugin) or as
  Open MPI's ``mpiexec``, which reads the allocation itself.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.distributed.env import MPI, TORCHRUN
from harness.distributed.slurm import PORT_BASE, PORT_SPAN
from harness.errors import BenchError

# How a SLURM job starts the ranks of a backend run under each launcher (harness.backend's
# BACKENDS entries name a backend's launcher; the first way is the default).
SLURM_VIA = {TORCHRUN: ("torchrun", "srun"), MPI: ("pmix", "pmi2", "mpiexec")}
DEFAULT_PORT = 29500  # torchrun's own default


# --- torchrun across nodes --------------------------------------------------------------------

@dataclass(frozen=True)
class Nodes:
    """A torch job over ``nnodes`` machines with ``nproc_per_node`` processes each."""

    nnodes: int
    nproc_per_node: int
    node_rank: int | None = None  # static rendezvous: this node's index (None: print every node's line)
    master_addr: str | None = None  # static rendezvous: rank 0's host, reachable from every node
    master_port: int = DEFAULT_PORT
    rdzv_endpoint: str | None = None  # elastic c10d rendezvous instead: host:port of any one node
    rdzv_id: str = "bench"  # the same on every node of one job, another for the next job

    @property
    def elastic(self) -> bool:
        return self.rdzv_endpoint is not None

    def validate(self) -> "Nodes":
        if self.nnodes < 1 or self.nproc_per_node < 1:
            raise BenchError(f"--nnodes {self.nnodes} and --nproc {self.nproc_per_node} must both be at least 1")
        if not 0 < self.master_port < 65536:
            raise BenchError(f"--master-port {self.master_port} is not a TCP port: use 1024..65535 (e.g. 29500)")
        if self.elastic:
            if self.node_rank is not None or self.master_addr is not None:
                raise BenchError("--rdzv-endpoint assigns node ranks itself: drop --node-rank/--master-addr, or drop "
                                 "--rdzv-endpoint for a static rendezvous")
            if not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", self.rdzv_endpoint or ""):
                raise BenchError(f"--rdzv-endpoint {self.rdzv_endpoint!r} must be HOST:PORT, e.g. node01:29500")
            return self
        if self.nnodes > 1 and not self.master_addr:
            raise BenchError("a multi-node torch job needs rank 0's address: --master-addr HOST (the first node, "
                             "reachable from every node) --master-port PORT, or --rdzv-endpoint HOST:PORT")
        if self.node_rank is not None and not 0 <= self.node_rank < self.nnodes:
            raise BenchError(f"--node-rank {self.node_rank} must lie in 0..{self.nnodes - 1} for --nnodes {self.nnodes}")
        return self


def torchrun_argv(torchrun: str, nodes: Nodes, node_rank: int | None, program: Sequence[str]) -> list[str]:
    """One node's torchrun line (``node_rank`` ignored for the elastic rendezvous)."""
    argv = [torchrun, f"--nnodes={nodes.nnodes}", f"--nproc-per-node={nodes.nproc_per_node}"]
    if nodes.elastic:
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={nodes.rdzv_endpoint}", f"--rdzv-id={nodes.rdzv_id}"]
    else:
        argv += [f"--node-rank={node_rank or 0}", f"--master-addr={nodes.master_addr}",
                 f"--master-port={nodes.master_port}"]
    return [*argv, *program]


def torchrun_node_lines(torchrun: str, nodes: Nodes, program: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(which node, argv) for every line to run: one per node for a static rendezvous (only
    the given node's when --node-rank is set), one for every node with c10d."""
    if nodes.elastic:
        return [(f"on each of the {nodes.nnodes} nodes", torchrun_argv(torchrun, nodes, None, program))]
    ranks = [nodes.node_rank] if nodes.node_rank is not None else list(range(nodes.nnodes))
    where = {0: f"on node 0 ({nodes.master_addr})"}
    return [(where.get(r, f"on node {r}"), torchrun_argv(torchrun, nodes, r, program)) for r in ranks]


# --- mpiexec ----------------------------------------------------------------------------------

def read_hostfile(path: Path) -> list[tuple[str, int]]:
    """(host, slots) per line of an Open MPI / MPICH hostfile (``host [slots=N]`` or ``host:N``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BenchError(f"cannot read --hostfile {path}: {exc.strerror or exc}") from None
    hosts: list[tuple[str, int]] = []
    counted: dict[str, bool] = {}  # host -> had an explicit slot count
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(\S+?)(?::(\d+))?(?:\s+slots\s*=\s*(\d+))?(?:\s+max[-_]slots\s*=\s*\d+)?", line)
        if not m:
            raise BenchError(f"--hostfile {path} line {number} ({line!r}) is not `HOST slots=N`: one host per line")
        host, explicit = m.group(1), bool(m.group(3) or m.group(2))
        if host in counted and (explicit or counted[host]):  # Open MPI refuses this with an "internal error"
            raise BenchError(f"--hostfile {path} lists {host} again on line {number} with a slot count: list a host "
                             f"once per slot, or once with slots=N")
        counted[host] = explicit
        hosts.append((host, int(m.group(3) or m.group(2) or 1)))
    if not hosts:
        raise BenchError(f"--hostfile {path} lists no hosts: one `HOST slots=N` per line")
    return hosts


def mpiexec_argv(mpiexec: str, nproc: int | None, program: Sequence[str], *, open_mpi: bool, is_root: bool,
                 oversubscribe: bool, exports: Sequence[str] = (), hostfile: Path | None = None,
                 mca: Mapping[str, str] | None = None) -> list[str]:
    """mpiexec starting ``nproc`` ranks of ``program`` (``nproc`` None: as many as the hosts'
    slots, or the SLURM allocation's tasks). The Open MPI flags are explained in
    harness/launch.py; ``-x VAR`` carries ``exports`` to processes on other hosts."""
    argv = [mpiexec]
    if open_mpi:
        if is_root:
            argv.append("--allow-run-as-root")
        if oversubscribe:
            argv.append("--oversubscribe")
        argv += ["--bind-to", "none"]
        for key, value in (mca or {}).items():
            argv += ["--mca", key, value]
        for var in exports:
            argv += ["-x", var]
    if hostfile is not None:
        argv += ["--hostfile", str(hostfile)]
    if nproc is not None:
        argv += ["-n", str(nproc)]
    return [*argv, *program]


# --- SLURM ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlurmJob:
    """The allocation: ``#SBATCH`` options of the script."""

    nodes: int
    ntasks_per_node: int
    time: str | None = None  # SLURM's formats: minutes, HH:MM:SS, D-HH:MM
    partition: str | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    job_name: str = "bench"
    output: str = "bench-%j.out"

    def validate(self) -> "SlurmJob":
        if self.nodes < 1 or self.ntasks_per_node < 1:
            raise BenchError(f"--nodes {self.nodes} and --ntasks-per-node {self.ntasks_per_node} must both be at least 1")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise BenchError(f"--cpus-per-task {self.cpus_per_task} must be at least 1")
        if self.time is not None and not re.fullmatch(r"\d+(-\d{1,2})?(:\d{1,2}){0,2}", self.time):
            raise BenchError(f"--time {self.time!r} is not a SLURM time: use minutes (30), HH:MM:SS or D-HH:MM")
        return self

    @property
    def ntasks(self) -> int:
        return self.nodes * self.ntasks_per_node

    def directives(self) -> list[str]:
        opts = {"job-name": self.job_name, "nodes": self.nodes, "ntasks-per-node": self.ntasks_per_node,
                "cpus-per-task": self.cpus_per_task, "gpus-per-node": self.gpus_per_node, "time": self.time,
                "partition": self.partition, "output": self.output}
        return [f"#SBATCH --{k}={v}" for k, v in opts.items() if v is not None]


def sbatch_script(job: SlurmJob, launcher: str, via: str, program: Sequence[str], *, torchrun: str = "torchrun",
                  mpiexec_flags: Sequence[str] = ("mpiexec",), threads: int | None = None,
                  command_line: str = "") -> str:
    """The batch script: ``#SBATCH`` options, the thread count, rank 0's address and port,
    then ``via``'s line (one of ``SLURM_VIA[launcher]``) running ``program`` (the `bench run`
    argv). ``mpiexec_flags``: the mpiexec argv before the program, without ``-n`` (Open MPI
    takes the allocation's task count)."""
    if via not in SLURM_VIA.get(launcher, ()):
        raise BenchError(f"--slurm-via {via} cannot start a {launcher} backend's ranks: use one of "
                         f"{', '.join(SLURM_VIA[launcher])}")
    threads = threads or job.cpus_per_task or 1
    step_cpus = job.cpus_per_task or 1
    run = shlex.join(program)
    lines = ["#!/bin/bash", *job.directives(),
             f"# Written by: {command_line}" if command_line else "# Written by bench launch --slurm.",
             "# Every node runs the same paths: bench's environment must be on a filesystem all nodes share.",
             "set -euo pipefail",
             f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{threads}}}",
             "# rank 0's host and a port for the rendezvous (the job may set them itself)",
             'export MASTER_ADDR="${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}"',
             # the port bench run itself derives under srun (harness/distributed/slurm.py)
             f"export MASTER_PORT=${{MASTER_PORT:-$(({PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN}))}}",
             ('echo "bench: job $SLURM_JOB_ID: $SLURM_JOB_NUM_NODES node(s) x $SLURM_NTASKS_PER_NODE task(s), '
              'rendezvous $MASTER_ADDR:$MASTER_PORT" >&2')]
    if via == "torchrun":
        # One torchrun per node, holding that node's CPUs; it starts the node's ranks itself.
        # (--ntasks too: srun would take the job's task count from SLURM_NTASKS otherwise)
        lines.append("srun --kill-on-bad-exit=1 --nodes=\"$SLURM_JOB_NUM_NODES\" --ntasks=\"$SLURM_JOB_NUM_NODES\" "
                     f"--ntasks-per-node=1 --cpus-per-task={step_cpus * job.ntasks_per_node} "
                     f"{shlex.quote(torchrun)} --nnodes=\"$SLURM_JOB_NUM_NODES\" "
                     f"--nproc-per-node={job.ntasks_per_node} --rdzv-backend=c10d "
                     f"--rdzv-endpoint=\"$MASTER_ADDR:$MASTER_PORT\" --rdzv-id=\"$SLURM_JOB_ID\" {run}")
    elif via == "srun":  # one task per rank; bench run reads SLURM_PROCID & co.
        lines.append(f"srun --kill-on-bad-exit=1 --cpus-per-task={step_cpus} {run}")
    elif via in ("pmix", "pmi2"):
        lines.append(f"srun --kill-on-bad-exit=1 --mpi={via} --cpus-per-task={step_cpus} {run}")
    else:  # Open MPI's mpiexec reads the allocation (hosts, slots) from SLURM and starts its daemons with srun
        lines.append(f"{shlex.join(mpiexec_flags)} {run}")
    return "\n".join(lines) + "\n"
