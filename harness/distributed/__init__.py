"""Data-parallel runs over several processes, framework-free: the launcher's environment, the
per-rank batch maths, the communicator the run loop talks to, and how per-rank figures
become one epochs.csv row.

A distributed run is N copies of ``bench run --distributed`` started by the framework's own
launcher (``bench launch`` prints and runs the line, harness/launch.py):

- torch under ``torchrun``: DDP, gloo on CPU, NCCL on GPU (backends/torch_impl/distributed.py);
- chainer under ``mpiexec``: ChainerMN, ``naive`` communicator on CPU, ``pure_nccl`` on GPU,
  ``create_multi_node_optimizer`` (backends/chainer_impl/distributed.py).

What every rank does, and why:

- ``--batch-size`` is the GLOBAL batch; each of the ``world`` ranks trains on
  ``batch_size / world`` images of it (must divide: :func:`per_rank_batch`). The harness's
  own ``BatchStream(shard=(rank, world))`` plays ChainerMN's ``scatter_dataset`` and
  DistributedSampler's ``set_epoch``: global batch k of epoch e is the same images whatever
  the world size, and rank r takes its elements ``r::world``. The last partial global batch
  is dropped in training (as without --distributed), so every rank takes the same number of
  steps, which DDP and allreduce require.
- gradients are averaged over ranks every step by the framework, so all ranks take the same
  update. BatchNorm normalises with per-rank batch statistics (over ``batch_size / world``
  images: the one place where N processes compute something else than one process with the
  global batch); its running statistics are averaged over ranks at the end of every epoch
  (:meth:`Communicator.sync_buffers`), before evaluation and the checkpoint, so every rank
  then holds exactly rank 0's model.
- evaluation is sharded the same way (every test image once, on one rank) and the loss and
  correct counts are summed over ranks.
- rank 0 alone creates and writes the run folder; it broadcasts the folder's name so all
  ranks agree on the run id. The other ranks write nothing there: their utilisation samples
  go to a local spool file and are sent to rank 0 at every epoch end (:class:`UtilRelay`),
  so util.csv holds every rank's samples (``rank`` column) and the run works across hosts
  without a shared filesystem. (--resume does need the run folder visible to every rank:
  every rank loads rank 0's checkpoint from it.)

Modules: env.py (the launcher's variables -> :class:`LaunchEnv`), plan.py (distributed or
not, per-rank batch and device), comm.py (:class:`Communicator`, :class:`Dist`,
:func:`connect`), combine.py (per-rank figures -> one row), relay.py (util.csv of every rank), slurm.py (ranks
from an srun step), topology.py (node ranks, nodes x processes per node, transport),
launchers.py (torchrun/mpiexec lines across machines and SLURM batch scripts, as data).
Import from the package (``from harness import distributed as D``): these names are its API.
"""
from __future__ import annotations

from harness.distributed.combine import ROW_REDUCTIONS, combine_epoch, epoch_part, per_rank_record, state_digest
from harness.distributed.comm import LOCAL, Communicator, Dist, LocalComm, connect
from harness.distributed.env import (LAUNCHER_OF, LAUNCHER_PROGRAM, MPI, TORCHRUN, LaunchEnv, detect,
                                     per_rank_batch, rank_device)
from harness.distributed.plan import Plan, plan
from harness.distributed.relay import UtilRelay

__all__ = ["LAUNCHER_OF", "LAUNCHER_PROGRAM", "LOCAL", "MPI", "ROW_REDUCTIONS", "TORCHRUN", "Communicator",
           "Dist", "LaunchEnv", "LocalComm", "Plan", "UtilRelay", "combine_epoch", "connect", "detect",
           "epoch_part", "per_rank_batch", "per_rank_record", "plan", "rank_device", "state_digest"]
