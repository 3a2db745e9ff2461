"""Where this process sits in a distributed job, read from its launcher's environment.

Launchers are told apart by the variables they set (:data:`_ENV_VARIABLES`, first match
wins). A new launcher is one more entry there plus its name in :data:`LAUNCHER_PROGRAM`;
SLURM's ``srun`` (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NODEID / the step's
tasks per node) is read by its own module (slurm.py), which hooks in here: :func:`detect` is
the one place that turns environment variables into :class:`LaunchEnv` values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from harness.backend import BACKENDS
from harness.device import parse_device
from harness.distributed import slurm
from harness.distributed.slurm import SLURM
from harness.errors import BenchError

TORCHRUN, MPI = "torchrun", "mpi"
# The launcher that starts each backend's processes: the one its process group expects.
LAUNCHER_PROGRAM = {TORCHRUN: "torchrun", MPI: "mpiexec", SLURM: "srun"}
# From each backend's capability flag (harness.backend.BACKENDS: the program it needs).
LAUNCHER_OF = {name: next(k for k, prog in LAUNCHER_PROGRAM.items() if prog == entry.launcher)
               for name, entry in BACKENDS.items() if entry.launcher}


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the job, as its launcher describes it."""

    launcher: str  # TORCHRUN | MPI | SLURM
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank among the processes on this host (picks cuda:LOCAL_RANK)
    local_world_size: int = 1


# (launcher, rank, world size, local rank, local world size) variables, first match wins.
# torchrun (torch.distributed.run) sets RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE and
# MASTER_ADDR/MASTER_PORT; Open MPI sets OMPI_COMM_WORLD_*; MPICH and Intel MPI (Hydra) set
# PMI_RANK/PMI_SIZE and MPI_LOCALRANKID/MPI_LOCALNRANKS.
_ENV_VARIABLES = (
    (TORCHRUN, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    (MPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    (MPI, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
)


def detect(environ: Mapping[str, str] | None = None) -> dict[str, LaunchEnv]:
    """Every launcher whose variables are set, by launcher (``{}`` for a plain process);
    an srun step as ``SLURM`` (slurm.py), which plan.py uses only where the backend's own
    launcher set nothing."""
    env = os.environ if environ is None else environ
    found: dict[str, LaunchEnv] = {}
    for launcher, rank, size, local_rank, local_size in _ENV_VARIABLES:
        if launcher in found or rank not in env or size not in env:
            continue
        try:
            values = [int(env[rank]), int(env[size]), int(env.get(local_rank, "0")), int(env.get(local_size, "1"))]
        except ValueError:
            raise BenchError(f"the launcher set {rank}={env[rank]!r} {size}={env[size]!r}, which are not integers: "
                             f"start bench with `bench launch` or unset them") from None
        if not (values[1] >= 1 and 0 <= values[0] < values[1]):
            raise BenchError(f"the launcher set {rank}={values[0]} with {size}={values[1]}: a rank must lie in "
                             f"0..{size}-1; start bench with `bench launch` or unset them")
        found[launcher] = LaunchEnv(launcher, *values)
    step = slurm.detect_step(env)
    if step is not None:
        found[SLURM] = LaunchEnv(SLURM, step.rank, step.world_size, step.local_rank, step.local_world_size)
    return found


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """Images per rank per step: ``--batch-size`` is the global batch and must divide evenly."""
    if world_size < 1:
        raise ValueError(f"world size must be at least 1, got {world_size}")
    if global_batch % world_size:
        lower = global_batch // world_size * world_size
        hint = f"{lower} or {lower + world_size}" if lower else f"{world_size}"
        raise BenchError(f"--batch-size {global_batch} is the global batch and must divide evenly over the "
                         f"{world_size} processes (each takes batch-size / processes): use {hint}")
    return global_batch // world_size


def rank_device(device: str, env: LaunchEnv) -> str:
    """This rank's device: ``cuda`` means ``cuda:LOCAL_RANK``, one GPU per process."""
    parsed = parse_device(device)
    if not parsed.is_cuda:
        return device
    if parsed.index is None:
        return f"cuda:{env.local_rank}"
    if env.local_world_size > 1:  # cuda:N for several processes on one host: all on one GPU
        raise BenchError(f"--device {device} with {env.local_world_size} processes on this host would put them all "
                         f"on one GPU: use --device cuda (each process takes cuda:LOCAL_RANK)")
    return device

