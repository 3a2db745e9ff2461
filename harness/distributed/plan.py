"""The plan of a run: is it distributed, under which launcher, with what batch per rank and
on which device. Decided before any framework is imported, so a wrong launcher or a batch
that does not divide fails as a one-line error."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from harness.distributed.env import LAUNCHER_OF, LAUNCHER_PROGRAM, LaunchEnv, detect, per_rank_batch, rank_device
from harness.distributed.slurm import SLURM
from harness.errors import BenchError

@dataclass(frozen=True)
class Plan:
    backend: str
    env: LaunchEnv
    global_batch: int
    per_rank_batch: int
    device: str  # this rank's device

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size


def plan(config: Any, environ: Mapping[str, str] | None = None) -> Plan | None:
    """The distributed plan for ``config`` (a validated RunConfig), or None for an ordinary run.

    Under its own launcher with more than one process a backend runs distributed even
    without --distributed: N independent copies racing for the same cores and results
    folder are never what was meant. Raises BenchError (before any framework is imported)
    for --distributed without a launcher, the wrong launcher for the backend, or a global
    batch that does not divide over the processes.
    """
    found = detect(environ)
    name = config.backends[0]
    wanted = LAUNCHER_OF.get(name)
    # srun starting every rank itself (`srun bench run`, `srun --mpi=pmix bench run`) stands in
    # for the backend's launcher; under torchrun or mpiexec SLURM's numbers count launchers.
    env = (found.get(wanted) or found.get(SLURM)) if wanted else None
    strangers = [e for k, e in found.items() if k not in (wanted, SLURM) and e.world_size > 1]
    if env is None or (env.world_size == 1 and not config.distributed):
        if strangers:
            e = strangers[0]
            raise BenchError(f"started by {LAUNCHER_PROGRAM[e.launcher]} with {e.world_size} processes, but the "
                             f"{name} backend runs distributed under {LAUNCHER_PROGRAM.get(wanted or '', '?')}: "
                             f"use `bench launch --nproc {e.world_size} --backend {name} ...`")
        if config.distributed:
            raise BenchError(f"--distributed runs must be started by a launcher ({LAUNCHER_PROGRAM.get(wanted or '', '?')} "
                             f"for {name}): `bench launch --nproc N --backend {name} [bench run flags]` "
                             f"prints and runs the command")
        return None
    if len(config.backends) != 1:
        raise BenchError("a distributed run trains one backend: pass --backend once (launch one job per backend)")
    return Plan(name, env, config.batch_size, per_rank_batch(config.batch_size, env.world_size),
                rank_device(config.device, env))

