"""What `bench run FILE`, `bench run --backend a --backend b` and `bench suite run` share:
list the cells (``--dry-run``), run them through the runner, and say how it went."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import schema as R
from harness.experiments import estimate as E
from harness.experiments.matrix import Cell
from harness.experiments.repeats import Policy
from harness.experiments.runner import (
    NOT_FAILURES,
    SUITE_JSON,
    CellOutcome,
    SuiteRunner,
    policy_for,
    worst_exit,
)
from harness.experiments.support import UNSUPPORTED, needs_device, static_reason


def dry_run(cells: list[Cell], results_dir: Path | None, policy: Policy | None) -> None:
    """One line per cell: its number, label, key and estimated time (and what the estimate is
    based on); a cell no machine (or not its device) can run says so, one that needs a GPU too."""
    rates = E.rates_for(results_dir)
    total = 0.0
    bases = set()
    print(f"{'#':>3s}  {'key':12s}  {'estimate':>9s}  cell")
    for i, cell in enumerate(cells, 1):
        est = E.estimate(cell, rates)
        p = policy_for(cell, policy)
        repeats = p.max_n if p.auto else p.count
        why = static_reason(cell)
        total += 0 if why else est.seconds * repeats
        bases.add(est.basis)
        rep = f" x{repeats}{' (auto, at most)' if p.auto else ''}" if repeats > 1 else ""
        if why is not None:
            rep += f"  [unsupported: {why}]"
        elif (kind := needs_device(cell)) is not None:
            rep += f"  [runs only where --device auto finds {kind}]"
        print(f"{i:>3d}  {cell.key:12s}  {E.show(est.seconds):>9s}  {cell.label()}{rep}")
    print(f"{len(cells)} cells, about {E.show(total)} in all (rates: {'; '.join(sorted(bases))}; "
          f"see harness/experiments/estimate.py)")


def execute(cells: list[Cell], out: Path, policy: Policy | None, *, name: str, suite: bool,
            quiet: bool = True, extra: dict[str, Any] | None = None) -> tuple[int, list[CellOutcome]]:
    """Run every cell in a child process; returns (exit code, outcomes). ``suite``: resume
    (skip cells done in ``out``), logs in ``out/logs``, and ``out/suite.json``."""
    from harness.train.rundir import ensure_writable

    ensure_writable(Path(out))  # before the first child: one line, exit 2, nothing started
    runner = SuiteRunner(cells, out, policy, name=name, quiet_children=quiet or suite, logs=suite, skip_done=suite,
                         summary_file=suite, summary_extra=extra)
    outcomes = runner.run()
    failed = [(o, a) for o in outcomes for a in o.attempts if a.status not in NOT_FAILURES]
    unsupported = [o for o in outcomes if o.status == UNSUPPORTED]
    if unsupported and len(unsupported) == len(outcomes):
        print(f"none of the {len(cells)} cells can run on this machine: the reasons above name the fix")
    elif unsupported:
        print(f"{len(unsupported)} of {len(cells)} cells are unsupported on this machine (not failures; "
              f"their reasons are above and in {SUITE_JSON if suite else 'their lines'}).")
    if failed:
        print(f"{len(failed)} of {len(cells)} cells did not complete:")
        for o, a in failed:
            where = f" ({a.run_dir})" if a.run_dir else " (no run folder)"
            print(f"  {o.cell.label()} [{o.cell.key}] repeat {a.repeat}: {a.status}: {a.reason}{where}")
    if suite:
        print(f"summary of every cell and attempt: {Path(out) / SUITE_JSON}")
    return worst_exit(outcomes), outcomes


def run_dirs(outcomes: list[CellOutcome]) -> list[Path]:
    """The training run folders of the outcomes, for the end-of-run table."""
    return [Path(a.run_dir) for o in outcomes if o.cell.kind == "train" for a in o.attempts
            if a.run_dir and (Path(a.run_dir) / R.EPOCHS_CSV).is_file()]
