"""`bench run` and `bench run --resume`: several backends and repeats, one run folder each.

Everything that can fail on the user's input (flags, dataset files, framework missing,
device, results dir) is checked before the first run folder is made, so a bad command
leaves nothing behind. Backends run one after the other with identical settings, data and
seed, and start from the same canonical initial weights.

Under a launcher (``--distributed``, harness/distributed/) every rank runs these same
steps; rank 0 creates the run folder and tells the others its name, and only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import errno
import shlex
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import distributed as D
from harness import schema as R
from harness.backend import load_backend_class
from harness.config import RunConfig, resume_changes, resume_conflicts
from harness.errors import BenchError
from harness.experiments import context
from harness.train.commit import check_resumable, read_checkpoint, restore_rows, set_aside, settle_pending
from harness.train.lock import RunLock
from harness.train.extend import extension, record_extension
from harness.train.keep import Keep
from harness.train.loop import train_loop
from harness.train.prepare import load_data, prepare_backend, resolve_device
from harness.train.progress import Progress
from harness.train.signals import Interrupted, StopOnSignals
from harness.train.rundir import Origin, ensure_writable, finish, now_iso, start_run

EXIT_OK, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 3, 130


@dataclass
class RunOutcome:
    run_dir: Path
    status: str

    @property
    def exit_code(self) -> int:
        return {R.COMPLETED: EXIT_OK, R.DIVERGED: EXIT_DIVERGED, R.INTERRUPTED: EXIT_INTERRUPTED}.get(self.status, 1)


def run_command(config: RunConfig, command: str) -> tuple[int, list[Path]]:
    """Run every (repeat, backend) pair; returns (exit code, run folders)."""
    config.validate()
    requested = config.device
    config.device = resolve_device(config.device, config.backends[0])  # auto -> cuda or cpu (imports the framework)
    dist_plan = D.plan(config)  # None: one process; BenchError: wrong launcher, batch not divisible
    if dist_plan is not None:
        config.distributed = True  # also when only the launcher's environment said so
        config.validate()
    if dist_plan is None or dist_plan.rank == 0:
        ensure_writable(config.results_dir)
    for name in config.backends:  # a missing framework fails before any data is loaded
        load_backend_class(name)
    # spawned by a parent (harness/experiments/runner.py): process start + imports; device auto -> the one used
    origin = Origin(startup_s=context.startup_s(), device_requested=requested)
    dist = _connect(dist_plan)
    try:
        with dist.abort_on_error():
            return _run_all(config, command, dist, origin)
    finally:
        dist.comm.close()


_secondary_rank = False  # this process is a rank > 0: rank 0 alone prints the summary


def _connect(dist_plan: D.Plan | None) -> D.Dist:
    global _secondary_rank
    dist = D.connect(dist_plan)
    _secondary_rank = not dist.is_writer
    return dist


def _run_all(config: RunConfig, command: str, dist: D.Dist, origin: Origin) -> tuple[int, list[Path]]:
    with dist.rank0_first():  # a download or cache is written by one process
        dataset = load_data(config)
    Keep.of(config.best_metric, config.snapshot_every, dataset, "")  # a --best-metric the data lacks: before any folder
    progress = Progress(config.quiet or not dist.is_writer)
    outcomes: list[RunOutcome] = []
    for repeat in range(config.repeat):
        seed = config.seed + repeat
        for name in config.backends:
            with dist.rank0_first() if config.weights != "none" else contextlib.nullcontext():
                prepared = prepare_backend(dist.rank_config(config), name, seed, len(dataset.class_names))
            dist.comm.wrap(prepared.backend)
            run_dir, meta = _start(config, name, seed, context.repeat_index(repeat), command, dataset, prepared,
                                   dist, origin)
            progress.line(f"{name}: {config.model} on {config.dataset} ({len(dataset.train_labels)} train / "
                          f"{len(dataset.test_labels)} test images), {config.device}, seed {seed}"
                          f"{f', {dist.world_size} processes' if dist.distributed else ''} -> {run_dir}")
            with _writer_lock(run_dir, dist):
                status = _train_and_finish(config, prepared, dataset, run_dir, meta, seed, 1, 0.0, progress, dist)
            outcomes.append(RunOutcome(run_dir, status))  # every rank exits with the run's code
            if status == R.INTERRUPTED:
                return EXIT_INTERRUPTED, _written(outcomes, dist)
    worst = max((o.exit_code for o in outcomes), default=EXIT_OK)
    return worst, _written(outcomes, dist)


def _writer_lock(run_dir: Path, dist: D.Dist) -> contextlib.AbstractContextManager[Any]:
    """Rank 0 holds the run folder's lock while it writes (harness/train/lock.py)."""
    return RunLock(run_dir) if dist.is_writer else contextlib.nullcontext()


def _written(outcomes: list[RunOutcome], dist: D.Dist) -> list[Path]:
    """The run folders this process wrote (for the summary): none on ranks > 0."""
    return [o.run_dir for o in outcomes] if dist.is_writer else []


def _start(config: RunConfig, name: str, seed: int, repeat: int, command: str, dataset: Any,
           prepared: Any, dist: D.Dist, origin: Origin) -> tuple[Path, dict[str, Any]]:
    """start_run on rank 0; the other ranks learn the folder's name from it (collective)."""
    ranks = dist.describe_ranks(prepared.thread_settings) if dist.distributed else None
    if not dist.is_writer:
        return config.results_dir / dist.comm.broadcast(None), {}
    run_dir, meta = start_run(config, name, seed, repeat, command, dataset, prepared,
                              distributed=dist.run_meta(ranks) if ranks else None, origin=origin)
    if dist.distributed:
        dist.comm.broadcast(run_dir.name)
    return run_dir, meta


def _finish(run_dir: Path, meta: dict[str, Any], status: str, dist: D.Dist) -> None:
    if not dist.is_writer:
        return
    finish(run_dir, meta, status)
    if status == R.INTERRUPTED:
        # Recorded; now end the job, so no rank waits in a collective (or MPI_Finalize) for a
        # peer the signal stopped elsewhere. A no-op for torchrun and ordinary runs.
        dist.comm.abort(EXIT_INTERRUPTED)


def resume_command(run_dir: Path, given: dict[str, Any], command: str, quiet: bool, restart: bool = False) -> int:
    """Continue ``run_dir`` from its last checkpoint. ``given``: the settings the user typed
    (harness.commands.run.given_settings); a fixed one that contradicts the run's recorded
    settings is an error, a run-only control (quiet, data_dir, ...) applies to the rest of the run.

    A folder with recorded epochs but no checkpoint is refused, untouched; ``restart``
    (``--restart``) starts it over from epoch 1 instead, the old rows moved aside
    (:func:`harness.train.commit.set_aside`). A folder another process is writing is refused
    (harness/train/lock.py).

    A distributed run resumes under the same launcher with the same number of processes;
    every rank reads run.json and loads rank 0's checkpoint from ``run_dir`` (so the folder
    must be visible to every rank: one host, or a shared filesystem); rank 0 alone writes."""
    R.read_meta(run_dir)  # not a run folder: its one-line error before anything else
    writer = all(env.rank == 0 for env in D.detect().values())
    with RunLock(run_dir) if writer else contextlib.nullcontext():  # one writer (harness/train/lock.py)
        # read under the lock: a run that ended meanwhile is seen with its final status
        return _resume_locked(run_dir, R.read_meta(run_dir), given, command, quiet, restart, writer)


def _resume_locked(run_dir: Path, meta: dict[str, Any], given: dict[str, Any], command: str, quiet: bool,
                   restart: bool, writer: bool) -> int:
    extend_to = extension(run_dir, meta, given)  # --epochs N beyond the run's: harness/train/extend.py
    if meta.get("status") == R.COMPLETED and extend_to is None:
        raise BenchError(f"{run_dir} is already complete ({meta.get('epochs_completed')} epochs): nothing to resume "
                         f"(to train it further: --epochs N, N > {meta['settings']['epochs']}, for a constant "
                         f"schedule)")
    if meta.get("schema_version") != R.SCHEMA_VERSION:
        raise BenchError(f"{run_dir} was written by another bench (results schema {meta.get('schema_version')}, "
                         f"this one writes {R.SCHEMA_VERSION}): resume it with that version, or start a new run")
    config = RunConfig.from_recorded(meta["settings"], run_dir.parent)
    conflicts = resume_conflicts(config, {k: v for k, v in given.items() if not (k == "epochs" and extend_to)})
    if conflicts:
        raise BenchError(f"--resume {run_dir} conflicts with flags given: {'; '.join(conflicts)}. "
                         f"Drop those flags to continue the run as it was started")
    changes = resume_changes(config, given)  # how it runs now (--data-dir, --no-download, ...)
    if "results_dir" in changes and Path(changes.pop("results_dir")).resolve() != run_dir.parent.resolve():
        raise BenchError(f"--results-dir has no effect with --resume: the run stays in {run_dir}; drop --results-dir")
    for name, value in changes.items():
        setattr(config, name, value)
    config.quiet = quiet
    config.epochs = extend_to or config.epochs
    config.validate()
    _check_world_size(run_dir, meta, config)
    dist_plan = D.plan(config)
    checkpoint = run_dir / f"checkpoint{load_backend_class(config.backends[0]).checkpoint_suffix}"
    if writer:
        settle_pending(run_dir, checkpoint)  # an epoch commit a kill interrupted, finished or undone
        if not restart:
            check_resumable(run_dir, checkpoint, meta)  # refused: the folder as it was
        ensure_writable(run_dir)
    dist = _connect(dist_plan)
    try:
        with dist.abort_on_error():
            return _resume(run_dir, meta, config, command, dist, restart, changes)
    finally:
        dist.comm.close()


def _check_world_size(run_dir: Path, meta: dict[str, Any], config: RunConfig) -> None:
    """A run's rows are for one world size: resume with as many processes as it started with."""
    backend = config.backends[0]
    env = D.detect().get(D.LAUNCHER_OF.get(backend, ""))
    recorded, now = int(meta.get("world_size") or 1), env.world_size if env else 1
    if recorded == now:
        return
    how = (f"`bench launch --nproc {recorded} --backend {backend} --resume {run_dir}`" if recorded > 1
           else f"`bench run --resume {run_dir}` without a launcher")
    raise BenchError(f"{run_dir} was run with {recorded} process(es), this is {now}: its rows would mix world "
                     f"sizes; resume it as it was started: {how}")


def _resume(run_dir: Path, meta: dict[str, Any], config: RunConfig, command: str, dist: D.Dist,
            restart: bool, changes: dict[str, Any]) -> int:
    with dist.rank0_first():
        dataset = load_data(config)
    prepared = prepare_backend(dist.rank_config(config), config.backends[0], meta["seed"], len(dataset.class_names))
    ckpt = run_dir / f"checkpoint{prepared.backend.checkpoint_suffix}"
    last = None if restart else read_checkpoint(run_dir, ckpt)
    first_epoch, elapsed = (last.epoch + 1, last.elapsed_s) if last else (1, 0.0)
    if last is not None:
        prepared.backend.load_checkpoint(ckpt)  # every rank: rank 0's checkpoint
    # else: killed during the first epoch: start over with the same seed
    dist.comm.wrap(prepared.backend)  # after loading: DDP / ChainerMN start from the checkpoint
    ranks = dist.describe_ranks(prepared.thread_settings) if dist.distributed else None
    if dist.is_writer:
        entry: dict[str, Any] = {"at": now_iso(), "from_epoch": first_epoch, "command": command}
        if changes:  # controls given now that differ from the run's settings (which keep the start's)
            entry["changed"] = changes
        if restart:  # the earlier attempt's files, renamed, never deleted
            entry["set_aside"] = set_aside(run_dir, ckpt, datetime.now().strftime("%Y%m%d-%H%M%S"))
            meta["time_to_target_s"] = None
            meta.pop("target_reached_epoch", None)
        restore_rows(run_dir, last)
        Keep.of(config.best_metric, config.snapshot_every, dataset, prepared.backend.checkpoint_suffix).restore(
            run_dir, ckpt, first_epoch - 1, meta)
        meta.setdefault("resumes", []).append(entry)
        record_extension(meta, entry, config.epochs, config.identity_key())
        meta.update(status=R.RUNNING, ended_at=None, epochs_completed=first_epoch - 1, error=None)
        if ranks:  # this job's processes; the per-epoch records past the checkpoint are dropped
            section = meta.setdefault("distributed", dist.run_meta(ranks))
            section.update(ranks=ranks, hosts=sorted({r["hostname"] for r in ranks}),
                           per_epoch=[e for e in section.get("per_epoch", []) if e["epoch"] < first_epoch])
            meta["resumes"][-1]["world_size"] = dist.world_size
        R.write_json(run_dir / R.RUN_JSON, meta)
    progress = Progress(config.quiet or not dist.is_writer)
    progress.line(f"resuming {run_dir} at epoch {first_epoch}/{config.epochs}")
    status = _train_and_finish(config, prepared, dataset, run_dir, meta, meta["seed"], first_epoch, elapsed,
                               progress, dist)
    return RunOutcome(run_dir, status).exit_code


def _train_and_finish(config: RunConfig, prepared: Any, dataset: Any, run_dir: Path, meta: dict[str, Any], seed: int,
                      first_epoch: int, elapsed: float, progress: Progress, dist: D.Dist) -> str:
    """The epochs, then run.json's final status, with SIGTERM / Ctrl-C turned into an
    interruption that is recorded whole (harness/train/signals.py: later signals wait)."""
    problem: str | None = None
    with StopOnSignals() as signals:
        status = R.COMPLETED
        try:
            if first_epoch <= config.epochs:
                status = train_loop(config, prepared, dataset, run_dir, meta, seed, first_epoch, elapsed, progress, dist)
        except Interrupted:  # a signal in the instant before the loop's own handlers: recorded all the same
            status = R.INTERRUPTED
        except (BenchError, OSError) as exc:  # a full disk, a file that cannot be written: the user's to fix
            status, problem = R.INTERRUPTED, _one_line(exc)
            meta["error"] = problem
        except Exception as exc:  # a bug: recorded as failed, and its traceback shown
            signals.shield()
            meta["error"] = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(BenchError, OSError):
                _finish(run_dir, meta, R.FAILED, dist)
            raise
        signals.shield()
        try:
            _finish(run_dir, meta, status, dist)
        except (BenchError, OSError) as exc:  # run.json itself cannot be written (the disk is full)
            if problem is None:
                raise
            problem += f"; run.json could not be updated either ({_one_line(exc)})"
    if signals.ignored:
        progress.line(f"bench: {', '.join(signals.ignored)} received while the run was being recorded: "
                      f"the records were finished first")
    if problem is not None:
        raise BenchError(f"{problem}. The epochs committed so far are kept; once that is fixed, continue the run "
                         f"with: bench run --resume {shlex.quote(str(run_dir))}")
    return status


def _one_line(exc: BaseException) -> str:
    """A failed write as one line: the file, the reason and, for a full disk, the free space."""
    if isinstance(exc, BenchError) or not isinstance(exc, OSError):
        return str(exc)
    where = exc.filename or "a file of the run"
    text = f"cannot write {where}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename:
        with contextlib.suppress(OSError):
            text += f" ({shutil.disk_usage(Path(exc.filename).parent).free / 2**20:.1f} MiB free there)"
    return text


def print_summary(run_dirs: list[Path]) -> None:
    """A short table at the end of `bench run`, from the files just written (the compare table)."""
    if not run_dirs or _secondary_rank:
        return
    from harness.report.compare import format_table, summarise_run

    rows = [summarise_run(R.read_run(d, with_util=False)) for d in run_dirs]
    print(format_table(rows, "text"))
