"""The communicator the run loop talks to, and this process's place in the run (:class:`Dist`).

:class:`LocalComm` makes an ordinary run the world-size-1 case of a distributed one, so the
loop has no second code path; :func:`connect` joins the framework's process group
(backends/<fw>_impl/distributed.py) for a distributed plan.
"""
from __future__ import annotations

import importlib
import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol

from harness.backend import BACKENDS
from harness.distributed import slurm, topology
from harness.distributed.combine import ROW_REDUCTIONS
from harness.distributed.plan import Plan
from harness.errors import BenchError
from harness.schema.meta import DistributedSection

class Communicator(Protocol):
    """What the harness asks of a framework's process group. Every call is collective: all
    ranks make it, in the same order. Objects are small picklable Python values."""

    name: str  # "gloo", "nccl", "naive", "pure_nccl"; "local" without a launcher

    def wrap(self, backend: Any) -> None:
        """Make ``backend.train_epoch`` average gradients over ranks (DDP / multi-node optimizer)."""

    def sync_buffers(self, backend: Any) -> None:
        """Average floating-point non-parameter state (BatchNorm running statistics) over ranks."""

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""

    def barrier(self) -> None: ...

    def close(self) -> None:
        """Normal end of the job."""

    def abort(self, code: int) -> None:
        """This rank failed: end the whole job now so no rank waits forever in a collective."""


class LocalComm:
    """The communicator of an ordinary run (one process): every collective is the identity."""

    name = "local"

    def wrap(self, backend: Any) -> None:
        pass

    def sync_buffers(self, backend: Any) -> None:
        pass

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def gather(self, obj: Any) -> list[Any] | None:
        return [obj]

    def broadcast(self, obj: Any) -> Any:
        return obj

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self, code: int) -> None:
        pass


def _backend_module(name: str, leaf: str) -> str:
    """``backends.torch_impl.backend:TorchBackend`` -> ``backends.torch_impl.<leaf>``."""
    return BACKENDS[name].target.split(":")[0].rsplit(".", 1)[0] + "." + leaf


@dataclass
class Dist:
    """This process's place in the run and its communicator; :data:`LOCAL` for ordinary runs."""

    plan: Plan | None = None
    comm: Communicator = field(default_factory=LocalComm)

    @property
    def distributed(self) -> bool:
        return self.plan is not None

    @property
    def rank(self) -> int:
        return self.plan.rank if self.plan else 0

    @property
    def world_size(self) -> int:
        return self.plan.world_size if self.plan else 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run folder; the other ranks compute and send it their figures."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.rank, self.world_size)

    def rank_config(self, config: Any) -> Any:
        """``config`` with this rank's device (cuda -> cuda:LOCAL_RANK) for prepare_backend;
        run.json keeps the device as the user gave it."""
        import dataclasses

        if self.plan is None or self.plan.device == config.device:
            return config
        return dataclasses.replace(config, device=self.plan.device)

    @contextmanager
    def rank0_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, caches), the others after it: no two
        processes write the same data or weights file at once."""
        if self.rank != 0:
            self.comm.barrier()
        yield
        if self.rank == 0:
            self.comm.barrier()

    @contextmanager
    def abort_on_error(self) -> Iterator[None]:
        """A rank that fails (bad data, a bug, Ctrl-C) while the others may be waiting for it
        in a collective takes the whole job down: ``MPI_Abort`` under mpiexec, a non-zero
        exit that torchrun answers by stopping the other workers."""
        try:
            yield
        except BaseException as exc:
            if self.distributed and self.world_size > 1:
                code = 2 if isinstance(exc, BenchError) else 130 if isinstance(exc, KeyboardInterrupt) else 1
                print(f"bench: rank {self.rank}/{self.world_size}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                self.comm.abort(code)
            raise

    def describe_ranks(self, thread_settings: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """Every rank's host, node rank, pid and device, on rank 0 (collective)."""
        me = {"rank": self.rank, "local_rank": self.plan.env.local_rank if self.plan else 0,
              "node_rank": topology.node_rank(os.environ), "hostname": socket.gethostname(), "pid": os.getpid(),
              "device": self.plan.device if self.plan else None, "threads": dict(thread_settings)}
        return self.comm.gather(me)

    def run_meta(self, ranks: list[dict[str, Any]]) -> DistributedSection:
        """run.json's "distributed" section (rank 0)."""
        assert self.plan is not None
        p = self.plan
        ranks = topology.fill_node_ranks(ranks)
        return {
            "launcher": p.env.launcher, "communicator": self.comm.name,
            "transport": topology.transport(self.comm.name), "world_size": p.world_size,
            **topology.layout(ranks),  # nodes, processes_per_node
            "global_batch_size": p.global_batch, "per_rank_batch_size": p.per_rank_batch,
            "hosts": sorted({r["hostname"] for r in ranks}), "ranks": ranks,
            "data": "each rank takes images r::world of every global batch (BatchStream shard, seeded by "
                    "(seed, epoch)); the last partial global batch is dropped in training",
            "evaluation": "test set sharded the same way (every image once); loss and correct counts summed over ranks",
            "batchnorm": "batch statistics per rank over its per-rank batch; running statistics averaged over "
                         "ranks at every epoch end, before evaluation and the checkpoint",
            "row": ROW_REDUCTIONS, "per_epoch": [],
        }


LOCAL = Dist()


def connect(plan_: Plan | None) -> Dist:
    """Join the framework's process group for ``plan_`` (``LOCAL`` for None). Imports the
    framework: call after everything that can be checked without it."""
    if plan_ is None:
        return LOCAL
    if plan_.env.launcher == slurm.SLURM:  # what torchrun would have set, for torch's env:// rendezvous
        step = slurm.detect_step(os.environ)
        if step is not None:
            os.environ.update(step.torch_env(os.environ))
    module = importlib.import_module(_backend_module(plan_.backend, "distributed"))
    return Dist(plan_, module.connect(plan_))

