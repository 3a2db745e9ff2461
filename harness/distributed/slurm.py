"""Where a process sits in a SLURM job step, from the variables srun sets (framework-free).

`bench run` started by ``srun`` (one task per rank: ``srun bench run ...`` for torch, or
``srun --mpi=pmix bench run ...`` for chainer) has no torchrun or mpiexec variables; SLURM's
own describe the job:

- ``SLURM_PROCID`` / ``SLURM_NTASKS``: global rank and world size of the step;
- ``SLURM_LOCALID``: rank among the step's tasks on this node (picks cuda:LOCAL_RANK);
- ``SLURM_NODEID``: this node's index in the step; ``SLURM_STEP_TASKS_PER_NODE`` (``2(x3),1``)
  how many tasks each node runs;
- ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST`` (``gpu[01-04],login7``): the hosts; rank 0
  runs on the first, so it is the rendezvous address torch's ``env://`` needs.

Only a job *step* counts (``SLURM_STEP_ID`` set): the batch script itself also carries
``SLURM_PROCID=0`` and the job's ``SLURM_NTASKS``, and a `bench run` typed there is one process,
not rank 0 of N waiting forever for the others. The launchers' own variables come first
(harness/distributed reads torchrun's and MPI's before these): under ``srun torchrun`` or
``mpiexec`` inside an allocation, SLURM's numbers describe the launchers, not the ranks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from harness.errors import BenchError

SLURM = "slurm"
# torch's env:// rendezvous port when the job does not set MASTER_PORT: derived from the job
# id so two jobs sharing a node do not collide, and the same on every node of one job.
PORT_BASE, PORT_SPAN = 15000, 20000


@dataclass(frozen=True)
class SlurmStep:
    """One task's view of its SLURM job step."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    hosts: tuple[str, ...]
    job_id: str

    @property
    def nodes(self) -> int:
        return len(self.hosts)

    def master_addr(self, environ: Mapping[str, str]) -> str:
        """``MASTER_ADDR`` if the job set it, else the step's first host (where rank 0 runs)."""
        return environ.get("MASTER_ADDR") or self.hosts[0]

    def master_port(self, environ: Mapping[str, str]) -> str:
        if environ.get("MASTER_PORT"):
            return environ["MASTER_PORT"]
        digits = re.sub(r"\D", "", self.job_id)
        return str(PORT_BASE + int(digits or "0") % PORT_SPAN)

    def torch_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The variables torch's ``env://`` reads (what torchrun would have set), for a rank
        that srun started directly."""
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
                "LOCAL_WORLD_SIZE": str(self.local_world_size), "GROUP_RANK": str(self.node_rank),
                "MASTER_ADDR": self.master_addr(environ), "MASTER_PORT": self.master_port(environ)}


def expand_hostlist(text: str) -> list[str]:
    """SLURM's compressed host list: ``gpu[01-03,07],login`` -> gpu01 gpu02 gpu03 gpu07 login
    (zero padding kept; several brackets in one name expand as a product)."""
    hosts: list[str] = []
    for item in _split_top_level(text.strip()):
        hosts += _expand_one(item)
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item]


def _expand_one(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not m:
        return [item]
    prefix, ranges, rest = m.groups()
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise BenchError(f"cannot read the SLURM host list {item!r}: unset SLURM_JOB_NODELIST or run under srun")
        for n in range(int(lo), int(hi or lo) + 1):
            out += [f"{prefix}{n:0{len(lo)}d}{tail}" for tail in _expand_one(rest)]
    return out


def expand_tasks_per_node(text: str) -> list[int]:
    """``2(x3),1`` -> [2, 2, 2, 1]: tasks on each node of the step, in node order."""
    counts: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise BenchError(f"cannot read SLURM's tasks per node {text!r}: unset SLURM_STEP_TASKS_PER_NODE "
                             "or run under srun")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def detect_step(environ: Mapping[str, str]) -> SlurmStep | None:
    """This task's place in its srun step, or None outside a step (see the module docstring)."""
    if "SLURM_STEP_ID" not in environ or "SLURM_PROCID" not in environ:
        return None
    size_var = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS"
    try:
        rank, world = int(environ["SLURM_PROCID"]), int(environ.get(size_var, "1"))
        local_rank, node_rank = int(environ.get("SLURM_LOCALID", "0")), int(environ.get("SLURM_NODEID", "0"))
    except ValueError:
        raise BenchError(f"srun set SLURM_PROCID={environ['SLURM_PROCID']!r} {size_var}={environ.get(size_var)!r}, "
                         f"which are not integers: run bench under srun, or unset the SLURM_* variables") from None
    if not (world >= 1 and 0 <= rank < world):
        raise BenchError(f"srun set SLURM_PROCID={rank} with {size_var}={world}: a rank must lie in 0..{world - 1}; "
                         f"run bench under srun, or unset the SLURM_* variables")
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or environ.get(
        "SLURM_NODELIST") or "localhost"
    hosts = tuple(expand_hostlist(nodelist)) or ("localhost",)
    per_node = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    counts = expand_tasks_per_node(per_node) if per_node else [world]
    local_world = counts[node_rank] if node_rank < len(counts) else 1
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID") or "0"
    return SlurmStep(rank, world, local_rank, local_world, node_rank, hosts, job)
