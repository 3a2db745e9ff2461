"""ChainerMN for `bench run --distributed` under mpiexec: ``naive`` communicator on CPU,
``pure_nccl`` on GPU, ``create_multi_node_optimizer``.

ChainerMN's recipe is a communicator, a multi-node optimizer (gradients averaged over ranks
before every update) and ``scatter_dataset``; here the harness's ``BatchStream`` shards each
global batch instead of scattering the dataset once, which gives every rank the same images
``scatter_dataset`` + a per-rank iterator would, but in the order and with the augmentation
every other backend and world size sees (harness/distributed/).

Two details of ``create_multi_node_optimizer`` are handled in :meth:`ChainerComm.wrap`:

- its first ``update()`` only broadcasts rank 0's parameters and *skips the step* (it
  notices the parameter set "changed" from nothing). We broadcast at wrap time and prime
  that bookkeeping, so step 1 is a real step, as in torch's DDP and in a 1-process run.
- ``zero_fill=False``: a parameter without a gradient stays without one, so the optimisers
  skip it as torch does (backends/chainer_impl/optimizers.py, point 3).

BatchNorm running statistics are per rank during the epoch (the optimizer does not touch
them) and averaged at every epoch end by :meth:`ChainerComm.sync_buffers`, on the host, so
it works with any MPI, CUDA-aware or not.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._compat import chainer  # noqa: F401  (the numpy.distutils shim before chainermn imports chainer)
from harness.distributed import Plan
from harness.errors import BenchError


def connect(plan: Plan) -> "ChainerComm":
    try:
        import chainermn
        from mpi4py import MPI  # noqa: F401
    except ImportError as exc:
        raise BenchError(f"chainer distributed runs need mpi4py and an MPI ({exc}): run scripts/ensure-mpi.sh "
                         "or install openmpi-bin libopenmpi-dev and `pip install mpi4py`") from None
    name = "pure_nccl" if plan.device.startswith("cuda") else "naive"
    try:
        comm = chainermn.create_communicator(name)
    except Exception as exc:  # pure_nccl without CuPy/NCCL
        raise BenchError(f"cannot create the ChainerMN {name!r} communicator ({type(exc).__name__}: {exc}): "
                         "on GPU it needs CuPy with NCCL; on CPU use --device cpu") from None
    if comm.rank != plan.rank or comm.size != plan.world_size:
        raise BenchError(f"MPI says rank {comm.rank} of {comm.size}, the environment rank {plan.rank} of "
                         f"{plan.world_size}: start with mpiexec, or under SLURM with srun --mpi=pmix "
                         "(`bench launch --slurm` writes the line)")
    return ChainerComm(name, comm)


class ChainerComm:
    def __init__(self, name: str, comm: Any) -> None:
        self.name = name
        self.comm = comm
        self.mpi = comm.mpi_comm

    def wrap(self, backend: Any) -> None:
        import chainermn

        model = backend.model
        optimizer = chainermn.create_multi_node_optimizer(backend.optimizer, self.comm, zero_fill=False)
        self.comm.bcast_data(model)  # rank 0's parameters everywhere (the canonical init already agrees)
        optimizer.is_changed(model)  # record the parameter set now, or update() #1 would only broadcast
        backend.optimizer = optimizer

    def sync_buffers(self, backend: Any) -> None:
        from mpi4py import MPI

        size = self.mpi.Get_size()
        for _, link in sorted(backend.model.namedlinks()):
            for name in sorted(getattr(link, "_persistent", ())):
                value = getattr(link, name)
                if value is None or not hasattr(value, "dtype") or value.dtype.kind != "f":
                    continue  # BatchNorm's N (a count, equal on every rank) and non-arrays
                host = np.ascontiguousarray(chainer.backend.CpuDevice().send(value), dtype=np.float64)
                self.mpi.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
                value[...] = backend.device.send((host / size).astype(value.dtype))

    def allgather(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj)

    def gather(self, obj: Any) -> list[Any] | None:
        return self.mpi.gather(obj, root=0)

    def broadcast(self, obj: Any) -> Any:
        return self.mpi.bcast(obj, root=0)

    def barrier(self) -> None:
        self.mpi.Barrier()

    def close(self) -> None:
        pass  # mpi4py finalises MPI at interpreter exit

    def abort(self, code: int) -> None:
        # A rank that leaves normally would wait in MPI_Finalize for ranks waiting on it.
        self.mpi.Abort(code)
