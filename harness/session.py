"""`bench run` and `bench run --resume`: several backends and repeats, one run folder each.

Everything that can fail on the user's input (flags, dataset files, framework missing,
device, results dir) is checked before the first run folder is made, so a bad command
leaves nothing behind. Backends run one after the other with identical settings, data and
seed, and start from the same canonical initial weights.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness import results as R
from harness.backend import load_backend_class
from harness.config import RunConfig
from harness.errors import BenchError
from harness.runner import (EXIT_INTERRUPTED, EXIT_OK, Progress, RunOutcome, ensure_writable, finish,
                            load_data, now_iso, prepare_backend, start_run, train_loop)


def run_command(config: RunConfig, command: str) -> tuple[int, list[Path]]:
    """Run every (repeat, backend) pair; returns (exit code, run folders)."""
    config.validate()
    ensure_writable(config.results_dir)
    for name in config.backends:  # a missing framework fails before any data is loaded
        load_backend_class(name)
    dataset = load_data(config)
    progress = Progress(config.quiet)
    outcomes: list[RunOutcome] = []
    for repeat in range(config.repeat):
        seed = config.seed + repeat
        for name in config.backends:
            prepared = prepare_backend(config, name, seed, len(dataset.class_names))
            run_dir, meta = start_run(config, name, seed, repeat, command, dataset, prepared)
            progress.line(f"{name}: {config.model} on {config.dataset} ({len(dataset.train_labels)} train / "
                          f"{len(dataset.test_labels)} test images), {config.device}, seed {seed} -> {run_dir}")
            status = train_loop(config, prepared, dataset, run_dir, meta, seed, 1, 0.0, progress)
            finish(run_dir, meta, status)
            outcomes.append(RunOutcome(run_dir, status))
            if status == R.INTERRUPTED:
                return EXIT_INTERRUPTED, [o.run_dir for o in outcomes]
    worst = max((o.exit_code for o in outcomes), default=EXIT_OK)
    return worst, [o.run_dir for o in outcomes]


# Flags whose value is part of a run's identity: --resume with a different value conflicts.
RESUME_FIXED = ("model", "dataset", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
                "schedule", "seed", "train_size", "test_size", "shortcut", "no_skip", "freeze", "train_bn",
                "head", "augment", "image_size", "device", "backend", "weights")


def config_from_settings(settings: dict[str, Any], results_dir: Path) -> RunConfig:
    fields = set(RunConfig.__dataclass_fields__)
    kwargs = {k: v for k, v in settings.items() if k in fields}
    kwargs.update(backends=[settings["backend"]], repeat=1, results_dir=results_dir,
                  data_dir=Path(settings.get("data_dir", "data")), no_skip=tuple(settings.get("no_skip", ())))
    return RunConfig(**kwargs)


def resume_command(run_dir: Path, given: dict[str, Any], command: str, quiet: bool) -> int:
    """Continue ``run_dir`` from its last checkpoint. ``given``: flags the user typed
    explicitly; any that contradict the run's recorded settings are an error."""
    meta = R.read_meta(run_dir)
    if meta.get("status") == R.COMPLETED:
        raise BenchError(f"{run_dir} is already complete ({meta.get('epochs_completed')} epochs): nothing to resume")
    settings = meta["settings"]
    conflicts = [f"--{k.replace('_', '-')} {given[k]!r} (run has {settings.get(k)!r})"
                 for k in RESUME_FIXED if k in given and given[k] != settings.get(k)]
    if conflicts:
        raise BenchError(f"--resume {run_dir} conflicts with flags given: {'; '.join(conflicts)}. "
                         f"Drop those flags to continue the run as it was started")
    config = config_from_settings(settings, run_dir.parent)
    config.quiet = quiet
    config.validate()
    ensure_writable(run_dir)
    load_backend_class(config.backends[0])
    dataset = load_data(config)
    prepared = prepare_backend(config, config.backends[0], meta["seed"], len(dataset.class_names))
    first_epoch, elapsed = 1, 0.0
    ckpt_json = run_dir / R.CHECKPOINT_JSON
    ckpt = run_dir / f"checkpoint{prepared.backend.checkpoint_suffix}"
    if ckpt_json.is_file() and ckpt.is_file():
        try:
            state = json.loads(ckpt_json.read_text())
            epoch, elapsed, last_row = int(state["epoch"]), float(state["elapsed_s"]), state["row"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"{ckpt_json} is damaged ({exc}): the run cannot be resumed; start a new one") from None
        prepared.backend.load_checkpoint(ckpt)
        first_epoch = epoch + 1
        rows = [r for r in _complete_rows(run_dir) if int(r["epoch"]) < epoch]
        rows.append(last_row)  # the checkpointed epoch's row, even if the kill came before it was appended
    else:  # killed during the first epoch: start over with the same seed
        rows = []
    R.rewrite_epochs(run_dir / R.EPOCHS_CSV, rows)
    meta.setdefault("resumes", []).append({"at": now_iso(), "from_epoch": first_epoch, "command": command})
    meta.update(status=R.RUNNING, ended_at=None, epochs_completed=first_epoch - 1, error=None)
    R.write_json(run_dir / R.RUN_JSON, meta)
    progress = Progress(quiet)
    progress.line(f"resuming {run_dir} at epoch {first_epoch}/{config.epochs}")
    status = R.COMPLETED
    if first_epoch <= config.epochs:
        status = train_loop(config, prepared, dataset, run_dir, meta, meta["seed"], first_epoch, elapsed, progress)
    finish(run_dir, meta, status)
    return RunOutcome(run_dir, status).exit_code


def _complete_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / R.EPOCHS_CSV
    if not path.is_file():
        return []
    return [r for r in R.read_epochs_rows(path) if r.get("status") == R.EPOCH_OK]


def print_summary(run_dirs: list[Path]) -> None:
    """A short table at the end of `bench run`, from the files just written."""
    if not run_dirs:
        return
    try:
        from harness.report.compare import format_table, summarise_run

        rows = [summarise_run(R.read_run(d, with_util=False)) for d in run_dirs]
        print(format_table(rows, "text"))
        return
    except ImportError:
        pass
    for d in run_dirs:
        run = R.read_run(d, with_util=False)
        ok = run.epochs[run.epochs["status"] == R.EPOCH_OK]
        speed = ok["train_images_per_s"].iloc[1:].median() if len(ok) > 1 else ok["train_images_per_s"].median()
        print(f"{run.meta['backend']['name']:8s} {run.meta['settings']['model']:10s} epochs {len(ok)}  "
              f"train {speed:8.1f} img/s  best test acc {ok['test_acc'].max():.3f}  [{run.meta['status']}] {d}",
              file=sys.stdout)
