"""Extending a run to more epochs: ``bench run --resume RUN --epochs N``, N above the epochs
the run was started with (completed or not).

The new epochs continue from the last checkpoint, with the rows, seed and batch order of an
uninterrupted N-epoch run. A learning-rate schedule that depends on the total (cosine, step)
is refused, not restarted: continuing it would give the new epochs learning rates of an
N-epoch schedule the earlier epochs never followed, and restarting it (a warm restart) is
another experiment than the one run.json's settings describe. The fix is named instead:
``--schedule constant`` for a run meant to be extended, or a new run with ``--epochs N``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from harness.errors import BenchError
from harness.experiments.keys import key_of_run

TOTAL_DEPENDENT = ("cosine", "step")
"""Schedules whose learning rate at an epoch depends on --epochs (harness.config.lr_at)."""


def extension(run_dir: Path, meta: Mapping[str, Any], given: Mapping[str, Any]) -> int | None:
    """The new total when ``given`` (the flags typed with --resume) asks for more epochs than
    the run was started with; None when --epochs is absent or the same. BenchError for
    fewer epochs, or for a schedule that depends on the total."""
    if "epochs" not in given:
        return None
    recorded, wanted = int(meta["settings"]["epochs"]), int(given["epochs"])
    if wanted == recorded:
        return None
    if wanted < recorded:
        raise BenchError(f"--epochs {wanted} is fewer than the {recorded} {run_dir} was started with: a run cannot "
                         f"be shortened (its rows up to epoch {wanted} are in epochs.csv; keep earlier models with "
                         f"--snapshot-every K)")
    schedule = meta["settings"].get("schedule")
    if schedule in TOTAL_DEPENDENT:
        raise BenchError(f"schedule {schedule} depends on --epochs: extending {run_dir} from {recorded} to {wanted} "
                         f"epochs would change the learning rate of epochs already run; extend runs started with "
                         f"--schedule constant, or start a new run with --epochs {wanted}")
    return wanted


def record_extension(meta: dict[str, Any], resume: dict[str, Any], epochs: int, group: str) -> None:
    """run.json after an extension: the new total in its settings, comparison group and key
    (harness/experiments/keys.py: epochs is part of what was measured), and the resume entry
    saying from which total it was extended."""
    before = int(meta["settings"]["epochs"])
    if epochs == before:
        return
    meta["settings"]["epochs"] = epochs
    meta["group"] = group
    if meta.get("key"):
        meta["key"] = key_of_run(meta)
    resume["extended"] = {"from_epochs": before, "to_epochs": epochs}
