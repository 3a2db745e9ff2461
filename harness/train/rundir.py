"""The run folder: claimed, opened with run.json, and closed with the final status.

A run folder is made only after everything that can fail on the user's input has been
checked (harness/train/session.py), so a bad command leaves nothing behind. What is written
into it per epoch, and in which order, is harness/train/loop.py's :func:`commit_epoch`.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from harness import schema as R
from harness.schema.meta import now_iso
from harness.config import RunConfig
from harness.data import normalization
from harness.data.dataset import Dataset
from harness.errors import BenchError
from harness.experiments import context
from harness.measure.sysinfo import machine_info
from harness.train.prepare import Prepared


@dataclass(frozen=True)
class Origin:
    """How this run was started: seconds from the parent's spawn to the framework imported
    (None: started by hand) and the device asked for (``auto`` before it was resolved)."""
    startup_s: float | None
    device_requested: str


def ensure_writable(folder: Path) -> None:
    """Fail before any work if results cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".bench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"results dir {folder} is not writable ({exc.strerror}): choose another with --results-dir") from None


def new_run_dir(results_dir: Path, backend: str, model: str) -> Path:
    """A folder no other run has: timestamp + random suffix, claimed with an exclusive mkdir,
    so two runs started in the same second into the same results dir never collide."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = results_dir / f"{stamp}-{backend}-{model}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise BenchError(f"could not create a run folder in {results_dir}: clean it up or choose another --results-dir")


def _bn_statistics(config: RunConfig) -> str:
    """What happens to BatchNorm running statistics during training, for run.json."""
    if config.train_bn or config.freeze == "none":
        return "trained"
    return "frozen (trained only in the --no-skip blocks)" if config.no_skip else "frozen"


def start_run(config: RunConfig, name: str, seed: int, repeat_index: int, command: str,
              dataset: Dataset, prepared: Prepared,
              distributed: R.DistributedSection | None = None,
              origin: Origin | None = None) -> tuple[Path, dict[str, Any]]:
    """Create the run folder and run.json. ``distributed``: run.json's section for a
    distributed run (harness.distributed.Dist.run_meta; rank 0 alone calls this).
    ``origin``: the device requested (``auto``) and process start + imports when a parent
    spawned this run (harness/experiments/context.py gives the comparison key and experiment)."""
    run_dir = new_run_dir(config.results_dir, name, config.model)
    total, trainable = prepared.backend.param_count()
    settings = config.settings()
    origin = origin or Origin(None, config.device)
    experiment = context.run_meta(settings, backend=name, world_size=distributed["world_size"] if distributed else 1,
                                  device_requested=origin.device_requested, started=origin.startup_s)
    settings.update(backend=name, seed=seed)
    settings.pop("backends", None)
    mean, std = normalization(config.normalize, config.model)
    sections: dict[str, Any] = {"distributed": distributed} if distributed else {}
    meta = R.build_meta(
        run_id=run_dir.name, command=command, settings=settings, machine=machine_info(),
        threads=R.threads_section(config.threads, prepared.thread_settings),
        backend={"name": name, "versions": prepared.backend.versions()},
        dataset=dataset.identity | {"num_classes": len(dataset.class_names), "class_names": dataset.class_names},
        model={"name": config.model, "params": total, "trainable_params": trainable,
               "image_size": prepared.spec.image_size, "train_flops_per_image": prepared.flops_per_image,
               "shortcut": config.shortcut, "no_skip": list(config.no_skip), "head": config.head,
               "freeze": config.freeze, "bn_statistics": _bn_statistics(config),
               "init": f"harness canonical init (harness/init_weights.py), seed {seed}", "weights": config.weights,
               # where --weights came from (path, sha256) and which parts kept the canonical init
               "weights_source": prepared.weights},
        seed=seed, group=config.identity_key(), repeat_index=repeat_index,
        # how the arithmetic ran: --precision's dtypes and scaler, --compile's mode and cache state
        execution=prepared.execution,
        world_size=distributed["world_size"] if distributed else 1,
        preprocess=config.preprocess().describe() | {"mean": list(mean), "std": list(std)},
        evaluation=dataset.evaluation_plan(), deterministic=config.deterministic,
        target_acc=config.target_acc, time_to_target_s=None, epochs_completed=0, resumes=[],
        **sections,
        **experiment,  # key, experiment, device_requested, startup_s (harness/experiments/context.py)
    )
    R.write_json(run_dir / R.RUN_JSON, meta)
    # Built typed; from here the loop updates it in place as plain JSON, as --resume does with
    # the run.json it reads back from disk, so both hand on the same plain dict.
    return run_dir, cast(dict[str, Any], meta)


def finish(run_dir: Path, meta: dict[str, Any], status: str) -> None:
    """The run's last run.json write: its final status and end time."""
    meta.update(status=status, ended_at=now_iso())
    R.write_json(run_dir / R.RUN_JSON, meta)
