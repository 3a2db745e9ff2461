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
"""
from __future__ import annotations

import csv
import hashlib
import importlib
import io
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from harness.backend import REGISTRY, EvalStats, TrainStats
from harness.errors import BenchError

TORCHRUN, MPI, NONE = "torchrun", "mpi", "none"
# The launcher that starts each backend's processes: the one its process group expects.
LAUNCHER_OF = {"torch": TORCHRUN, "chainer": MPI}
LAUNCHER_PROGRAM = {TORCHRUN: "torchrun", MPI: "mpiexec"}


# --- the launcher's environment -------------------------------------------------------------

@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the job, as its launcher describes it."""

    launcher: str  # TORCHRUN | MPI | NONE
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
    """Every launcher whose variables are set, by launcher (``{}`` for a plain process)."""
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
    if device == "cpu":
        return device
    if device == "cuda":
        return f"cuda:{env.local_rank}"
    if env.local_world_size > 1:  # cuda:N for several processes on one host: all on one GPU
        raise BenchError(f"--device {device} with {env.local_world_size} processes on this host would put them all "
                         f"on one GPU: use --device cuda (each process takes cuda:LOCAL_RANK)")
    return device


# --- the plan: is this a distributed run, and with what numbers ------------------------------

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
    env = found.get(wanted) if wanted else None
    strangers = [e for k, e in found.items() if k != wanted and e.world_size > 1]
    if env is None or (env.world_size == 1 and not config.distributed):
        if strangers:
            e = strangers[0]
            raise BenchError(f"started by {LAUNCHER_PROGRAM[e.launcher]} with {e.world_size} processes, but the "
                             f"{name} backend runs distributed under {LAUNCHER_PROGRAM.get(wanted, '?')}: "
                             f"use `bench launch --nproc {e.world_size} --backend {name} ...`")
        if config.distributed:
            raise BenchError(f"--distributed runs must be started by a launcher ({LAUNCHER_PROGRAM.get(wanted, '?')} "
                             f"for {name}): `bench launch --nproc N --backend {name} [bench run flags]` "
                             f"prints and runs the command")
        return None
    if len(config.backends) != 1:
        raise BenchError("a distributed run trains one backend: pass --backend once (launch one job per backend)")
    return Plan(name, env, config.batch_size, per_rank_batch(config.batch_size, env.world_size),
                rank_device(config.device, env))


# --- communicators ---------------------------------------------------------------------------

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
    return REGISTRY[name][0].split(":")[0].rsplit(".", 1)[0] + "." + leaf


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
        """Every rank's host, pid and device, on rank 0 (collective)."""
        me = {"rank": self.rank, "local_rank": self.plan.env.local_rank if self.plan else 0,
              "hostname": socket.gethostname(), "pid": os.getpid(),
              "device": self.plan.device if self.plan else None, "threads": dict(thread_settings)}
        return self.comm.gather(me)

    def run_meta(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """run.json's "distributed" section (rank 0)."""
        assert self.plan is not None
        p = self.plan
        return {
            "launcher": p.env.launcher, "communicator": self.comm.name, "world_size": p.world_size,
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
    module = importlib.import_module(_backend_module(plan_.backend, "distributed"))
    return Dist(plan_, module.connect(plan_))


# --- one row from every rank's figures --------------------------------------------------------

# How epochs.csv figures of a distributed run combine the ranks' own (recorded in run.json).
ROW_REDUCTIONS = {
    "train_loss, train_acc, test_loss, test_acc, test_top5_acc": "sums and counts added over ranks, then divided",
    "train_time_s, eval_time_s": "the slowest rank's (every step waits for it)",
    "train_images_per_s, eval_images_per_s, train_gflops_per_s": "images of all ranks / the slowest rank's time",
    "data_wait_s": "mean over ranks",
    "cpu_util_mean_pct, gpu_util_mean_pct": "mean over ranks",
    "cpu_util_max_pct, gpu_util_max_pct, gpu_mem_peak_mb": "max over ranks (gpu_mem_peak_mb: the fullest GPU)",
    "process_cpu_pct, rss_peak_mb": "sum over ranks (the whole job's CPU use and memory)",
    "epoch_time_s, elapsed_s": "rank 0's clock",
}


def _stats_part(stats: TrainStats) -> dict[str, Any]:
    return {"loss_sum": stats.loss_sum, "correct": stats.correct, "count": stats.count, "steps": stats.steps,
            "data_wait_s": stats.data_wait_s, "compute_s": stats.compute_s,
            "top5_correct": getattr(stats, "top5_correct", 0)}


def epoch_part(train: TrainStats, train_time: float, test: EvalStats, eval_time: float,
               util: Mapping[str, Any]) -> dict[str, Any]:
    """What one rank contributes to an epoch's row (small: sent to every rank)."""
    return {"train": _stats_part(train), "train_time_s": train_time, "test": _stats_part(test),
            "eval_time_s": eval_time, "util": dict(util)}


def combine_epoch(parts: Sequence[Mapping[str, Any]]) -> tuple[TrainStats, float, EvalStats, float, dict[str, Any]]:
    """Every rank's :func:`epoch_part`, in rank order -> (train, train time, test, eval time,
    util) of the whole job (:data:`ROW_REDUCTIONS`). Pure and in rank order, so every rank
    computes bit-identical figures and takes the same decisions (diverged, target reached)."""
    def add(key: str, cls: type) -> Any:
        s = cls()
        for p in parts:
            q = p[key]
            s.loss_sum += q["loss_sum"]
            s.correct += q["correct"]
            s.count += q["count"]
            s.steps += q["steps"]
            s.data_wait_s += q["data_wait_s"] / len(parts)
            s.compute_s = max(s.compute_s, q["compute_s"])
            if isinstance(s, EvalStats):
                s.top5_correct += q["top5_correct"]
        return s

    utils = [p["util"] for p in parts]

    def values(key: str) -> list[float]:
        return [u[key] for u in utils if u.get(key) is not None]

    def reduce(key: str, how: Any) -> float | None:
        xs = values(key)
        return how(xs) if xs else None

    util = {
        "cpu_util_mean_pct": reduce("cpu_util_mean_pct", lambda xs: sum(xs) / len(xs)),
        "cpu_util_max_pct": reduce("cpu_util_max_pct", max),
        "process_cpu_pct": reduce("process_cpu_pct", sum),
        "rss_peak_mb": reduce("rss_peak_mb", sum),
        "gpu_util_mean_pct": reduce("gpu_util_mean_pct", lambda xs: sum(xs) / len(xs)),
        "gpu_util_max_pct": reduce("gpu_util_max_pct", max),
        "gpu_mem_peak_mb": reduce("gpu_mem_peak_mb", max),
    }
    if len(parts) == 1:  # an ordinary run's row is exactly what its monitor measured
        util = dict(utils[0])
    train_time = max(p["train_time_s"] for p in parts)
    eval_time = max(p["eval_time_s"] for p in parts)
    return add("train", TrainStats), train_time, add("test", EvalStats), eval_time, util


def per_rank_record(epoch: int, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """run.json ``distributed.per_epoch`` entry: each rank's own counts and times."""
    return {"epoch": epoch,
            "train_images": [p["train"]["count"] for p in parts],
            "test_images": [p["test"]["count"] for p in parts],
            "train_time_s": [round(p["train_time_s"], 4) for p in parts],
            "eval_time_s": [round(p["eval_time_s"], 4) for p in parts],
            "train_loss": [p["train"]["loss_sum"] / p["train"]["count"] if p["train"]["count"] else None
                           for p in parts]}


def state_digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 over the model state (names, dtypes, shapes, bytes), in name order: equal
    digests on every rank prove the ranks hold bit-identical models."""
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


# --- util.csv from every rank ---------------------------------------------------------------

class UtilRelay:
    """util.csv rows of ranks > 0, carried to rank 0 at epoch ends.

    Each rank's Monitor samples its own process. Rank 0's writes util.csv in the run folder;
    another rank's writes a spool file in this host's temp dir, and :meth:`exchange` sends
    the rows completed since the last call to rank 0, which appends them to util.csv
    re-ordered into its own columns (hosts with other core or GPU counts lose the per-core
    columns rank 0's header lacks). The runner calls it after every epoch and once more when
    the run ends normally; an interrupted run loses the other ranks' samples of its last epoch.
    """

    def __init__(self, dist: Dist, util_csv: Path | None) -> None:
        self.dist = dist
        self.util_csv = util_csv
        self.spool: Path | None = None
        self._offset = 0
        self._header = ""
        if not dist.is_writer:
            fd, name = tempfile.mkstemp(prefix=f"bench-util-rank{dist.rank}-", suffix=".csv")
            os.close(fd)
            self.spool = Path(name)

    @property
    def monitor_path(self) -> Path | None:
        """Where this rank's Monitor writes."""
        return self.util_csv if self.dist.is_writer else self.spool

    def _new_rows(self) -> str:
        """Rows the spool gained since the last call (whole lines only: the sampler may be mid-row)."""
        if self.spool is None or not self.spool.is_file():
            return ""
        with self.spool.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        if not self._header:
            nl = data.find(b"\n")
            if nl < 0:
                return ""
            self._header = data[:nl].decode()
            self._offset += nl + 1
            data = data[nl + 1:]
        end = data.rfind(b"\n") + 1
        self._offset += end
        return data[:end].decode()

    def exchange(self) -> None:
        """Collective: every rank > 0 sends its new rows; rank 0 appends them."""
        if not self.dist.distributed or self.dist.world_size == 1:
            return
        rows = self._new_rows()
        parts = self.dist.comm.gather((self._header, rows))
        if parts is not None and self.util_csv is not None:
            self._append(parts)

    def _append(self, parts: list[tuple[str, str]]) -> None:
        from harness import results as R

        if not self.util_csv.is_file():
            return
        with self.util_csv.open() as f:
            columns = next(csv.reader(f), [])
        lines = []
        for header, text in parts[1:]:
            if not text:
                continue
            rows = csv.DictReader(io.StringIO(header + "\n" + text))
            lines += [R.csv_line(columns, {c: row.get(c) for c in columns}) for row in rows]
        if lines:
            fd = os.open(self.util_csv, os.O_WRONLY | os.O_APPEND)
            try:  # one write: the O_APPEND rows of rank 0's own sampler never land inside it
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Remove the spool (its rows were sent by the last :meth:`exchange`)."""
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)
