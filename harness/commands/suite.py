"""`bench suite run NAME|FILE` and `bench suite list`: a list of experiments as one command.

The work is harness/experiments/ (files, matrix, runner); this module parses flags. A suite
resumes: run it again with the same ``--out`` and the cells whose key already has a completed
run there are skipped, interrupted ones resumed (`bench run --resume`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands.run import AUTO, add_repeat_flags, repeat_arg, repeat_policy
from harness.errors import BenchError

NAME = "suite"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="run a suite of experiments, each cell in its own process; list the shipped ones",
                       description="A suite file (experiments/suites/NAME.toml) lists experiments; every cell "
                                   "(combination of list values) x repeat runs in a fresh process, and "
                                   "OUT/suite.json records each one's status. Run it again to resume.")
    actions = p.add_subparsers(dest="suite_action", metavar="ACTION", required=True)
    r = actions.add_parser("run", help="run (or resume) a suite", description="Run a suite into --out; cells "
                           "already completed there are skipped, interrupted ones resumed.")
    r.add_argument("suite", metavar="NAME|FILE", help="a shipped suite (`bench suite list`) or a suite .toml file")
    r.add_argument("--out", type=Path, metavar="DIR", help="results folder (default: results/suite-NAME)")
    r.add_argument("--dry-run", action="store_true", help="list the cells, their keys and estimated time; run nothing")
    r.add_argument("--repeat", type=repeat_arg, metavar="N|auto",
                   help="repeats of every training cell (default: each experiment's own, else 1); auto: until "
                        "steady-state images/s is stable")
    add_repeat_flags(r)
    actions.add_parser("list", help="the shipped suites and experiments")


def run(args: argparse.Namespace) -> int:
    from harness.experiments import files

    if args.suite_action == "list":
        for title, folder, loader in (("suites", files.SUITES_DIR, files.load_suite),
                                      ("experiments", files.EXPERIMENTS_DIR, files.load_experiment)):
            print(f"{title} ({folder}):")
            for name in files.shipped_names(folder):
                print(f"  {name:20s} {_description(loader, name)}")
        return 0
    return _run(args)


def _description(loader: Any, name: str) -> str:
    try:
        return loader(name).description.strip().splitlines()[0] if loader(name).description.strip() else ""
    except BenchError as exc:
        return f"(cannot be read: {exc})"


def _run(args: argparse.Namespace) -> int:
    from harness.experiments import plan
    from harness.experiments.files import load_suite
    from harness.experiments.matrix import expand

    suite = load_suite(args.suite)
    overrides: dict[str, Any] = {}
    auto = args.repeat == AUTO
    if args.repeat is not None and not auto:
        if args.repeat < 1:
            raise BenchError(f"--repeat must be at least 1 or auto, got {args.repeat}")
        overrides["repeat"] = args.repeat
    policy = repeat_policy(args, auto)
    cells = [c for e in suite.experiments for c in expand(e, overrides if e.kind == "train" else {})]
    out = args.out or Path("results") / f"suite-{suite.name}"
    print(f"suite {suite.name} v{suite.version} ({suite.file}): {len(cells)} cells -> {out}")
    if args.dry_run:
        plan.dry_run(cells, out, policy)
        return 0
    extra = {"suite_file": str(suite.file), "suite_sha256": suite.sha256, "suite_version": suite.version}
    code, _ = plan.execute(cells, out, policy, name=suite.name, suite=True, extra=extra)
    return code
