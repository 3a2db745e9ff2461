"""torch.distributed for `bench run --distributed` under torchrun: DDP, gloo on CPU, NCCL on GPU.

:func:`connect` joins the process group torchrun describes (``env://``: RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). :meth:`TorchComm.wrap` puts the backend's training forward
through ``DistributedDataParallel``, which averages gradients over ranks during backward
(bucketed allreduce overlapping the backward pass). Everything else in the backend keeps the
plain module: state_arrays/checkpoints keep torchvision's names (no ``module.`` prefix),
evaluation and predict() run the local module without collectives.

``forward_sync_buffers=False`` (torch < 2.14: ``broadcast_buffers=False``): DDP's default re-broadcasts rank 0's BatchNorm running
statistics before every forward; instead each rank keeps its own during the epoch and the
harness averages them at the epoch end (:meth:`TorchComm.sync_buffers`), which is what the
ChainerMN backend does too (its multi-node optimizer never touches them), so both frameworks
record the same thing, and the per-step broadcast is saved.

Harness metadata (figures, run id, util rows) goes over a gloo group even when training uses
NCCL, so small Python objects never need a GPU round trip.
"""
from __future__ import annotations

import datetime
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from harness.backend import Batch
from harness.distributed import Plan
from harness.errors import BenchError

TIMEOUT = datetime.timedelta(minutes=30)  # torch's default; a dead peer is noticed by torchrun first


def connect(plan: Plan) -> "TorchComm":
    on_gpu = plan.device.startswith("cuda")
    if on_gpu:
        if not torch.cuda.is_available():
            raise BenchError("--device cuda was requested but torch sees no GPU: use --device cpu")
        torch.cuda.set_device(torch.device(plan.device))  # NCCL binds to the current device
    backend = "nccl" if on_gpu else "gloo"
    try:
        dist.init_process_group(backend=backend, init_method="env://", timeout=TIMEOUT)
    except ValueError as exc:  # MASTER_ADDR/MASTER_PORT missing: not started by torchrun
        raise BenchError(f"cannot join the torch process group ({exc}): start with torchrun, "
                         "e.g. `bench launch --nproc 2 --backend torch ...`") from None
    if dist.get_rank() != plan.rank or dist.get_world_size() != plan.world_size:
        raise BenchError(f"torch.distributed says rank {dist.get_rank()} of {dist.get_world_size()}, the "
                         f"environment rank {plan.rank} of {plan.world_size}: start with torchrun, or under SLURM "
                         "with srun (`bench launch --slurm` writes the line)")
    # Python objects travel over gloo (CPU) whatever the training backend.
    objects = dist.new_group(backend="gloo") if backend != "gloo" else None
    return TorchComm(backend, plan, objects)


class TorchComm:
    def __init__(self, name: str, plan: Plan, objects: Any) -> None:
        self.name = name
        self.plan = plan
        self._objects = objects

    def wrap(self, backend: Any) -> None:
        """Train through DDP. The backend's one training step (``_train_step``) is replaced on
        this instance by the same step calling the DDP wrapper instead of the bare module;
        backends/torch_impl/backend.py is unchanged, and everything but training (state,
        checkpoints, evaluation, predict) keeps using the bare module."""
        if not callable(getattr(type(backend), "_train_step", None)):
            raise RuntimeError("TorchBackend has no _train_step to route through DDP: update "
                               "backends/torch_impl/distributed.py to the backend's training step")
        net = backend.model
        device_ids = [backend.device.index] if backend.device.type == "cuda" else None  # CPU: no device_ids
        # DDP broadcasts rank 0's parameters and buffers here, so every rank starts identical.
        ddp = DDP(net, device_ids=device_ids, forward_sync_buffers=False)
        forward: Any = ddp
        if backend.compile_mode != "none":  # --compile: the DDP wrapper is what trains, so it is compiled
            forward = torch.compile(ddp, mode=None if backend.compile_mode == "default" else backend.compile_mode)

        def train_step(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x, y = backend._images(batch.images), backend._labels(batch.labels)
            logits, loss = backend._update(forward, x, y)
            return logits, loss, y

        backend._train_step = train_step
        backend.ddp = ddp

    def sync_buffers(self, backend: Any) -> None:
        world = dist.get_world_size()
        with torch.no_grad():
            for _, buf in sorted(backend.model.named_buffers()):
                if buf.is_floating_point():  # running_mean/var; num_batches_tracked is equal anyway
                    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                    buf.div_(world)

    def allgather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj, group=self._objects)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(obj, out, dst=0, group=self._objects)
        return out

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._objects)
        return box[0]

    def barrier(self) -> None:
        dist.barrier(group=self._objects)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def abort(self, code: int) -> None:
        # Nothing to do here: this process exits non-zero and torchrun stops the other workers.
        pass
