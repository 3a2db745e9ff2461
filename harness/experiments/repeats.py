"""`--repeat auto`: run a cell again until its steady-state images/s is stable (Phoronix's rule).

Stop when at least ``min_n`` repeats are done and the relative standard deviation (sample
standard deviation / mean) of their steady-state images/s is below ``rsd``, or when
``max_n`` repeats are done. Steady state: the mean train images/s of the epochs after the
first (the first holds warm-up: allocator growth, lazy init); a one-epoch run has only its first.
"""
from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from harness import schema as R

DEFAULT_RSD = 0.03
DEFAULT_MAX = 5
MIN_REPEATS = 3


@dataclass(frozen=True)
class Policy:
    """A fixed count (``auto`` False: ``count`` repeats) or the stopping rule."""
    auto: bool = False
    count: int = 1
    rsd: float = DEFAULT_RSD
    max_n: int = DEFAULT_MAX
    min_n: int = MIN_REPEATS

    @property
    def cap(self) -> int:
        return self.max_n if self.auto else self.count


def rsd(values: list[float]) -> float | None:
    """Relative sample standard deviation; None under two values or a zero mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def should_stop(values: list[float], policy: Policy) -> tuple[bool, str]:
    """(stop?, why) after ``len(values)`` completed repeats."""
    n = len(values)
    if not policy.auto:
        return n >= policy.count, f"{n} of {policy.count} repeats"
    spread = rsd(values)
    if n >= policy.min_n and spread is not None and spread < policy.rsd:
        return True, f"stable: RSD {spread:.1%} < {policy.rsd:.1%} after {n} repeats"
    if n >= policy.max_n:
        shown = f"{spread:.1%}" if spread is not None else "n/a"
        return True, f"cap: {n} repeats (RSD {shown}, target {policy.rsd:.1%})"
    return False, ""


def steady_images_per_s(run_dir: Path) -> float | None:
    """Mean train images/s of the epochs after the first (the first if it is the only one)."""
    path = Path(run_dir) / R.EPOCHS_CSV
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("train_images_per_s")]
    except OSError:
        return None
    values = []
    for r in rows[1:] or rows:
        try:
            v = float(r["train_images_per_s"])
        except ValueError:
            continue
        if math.isfinite(v):
            values.append(v)
    return statistics.fmean(values) if values else None
