"""`bench run`: its flags are generated from RunConfig's declaration (harness/config.py).

Each setting becomes one flag with the setting's help, choices and default; a flag the user
did not type stays None in the namespace, so :func:`given_settings` can tell "given" from
"default" (what `--resume` checks, and what will override an experiment file).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.config import (
    SETTINGS,
    RunConfig,
    Setting,
    comma_list,
    show_value,
    value_type,
)
from harness.errors import BenchError
from harness.experiments.context import parent_record
from harness.experiments.repeats import DEFAULT_MAX, DEFAULT_RSD, MIN_REPEATS, Policy

NAME = "run"
_D = RunConfig()  # defaults shown in --help come from the one place they are defined

# The three kinds of setting, as `bench run --help` groups them.
_GROUPS = (("configuration", "what is measured: runs that differ here are different configurations"),
           ("runs", "which runs, and when they stop (not part of the configuration)"),
           ("run control", "where files go and what is shown; never changes what is measured"))


def _group(s: Setting) -> int:
    return 0 if s.identity else 2 if s.control else 1


def _help(s: Setting) -> str:
    default = getattr(_D, s.name)
    if "(default:" in s.help or value_type(s.name) is bool or default is None:
        return s.help
    return f"{s.help} (default: {show_value(default)})"


def add_setting_flags(parser: argparse.ArgumentParser, *, groups: bool = True) -> dict[int, Any]:
    """One flag per RunConfig setting, under ``parser`` (in three argument groups when
    ``groups``); returns the groups so a command can add its own flags beside them."""
    targets = ({i: parser.add_argument_group(title, text) for i, (title, text) in enumerate(_GROUPS)}
               if groups else {i: parser for i in range(len(_GROUPS))})
    for s in SETTINGS.values():
        kind = value_type(s.name)
        kw: dict[str, Any] = {"dest": s.name, "default": None, "help": _help(s)}
        if s.name == "repeat":  # also "auto": one more value than the field's type
            kw["help"] = f"{s.help}; auto: until the figure is stable (--repeat-rsd, --repeat-max)"
        if kind is bool:
            kw["action"] = "store_false" if s.negated else "store_true"
        else:
            if kind is list:
                kw["action"] = "append"
            else:
                kw["type"] = (repeat_arg if s.name == "repeat" else comma_list if kind is tuple
                              else None if kind is str else kind)
            if s.choices is not None:
                kw["choices"] = list(s.choices)
            if s.metavar or s.unit:
                kw["metavar"] = s.metavar or s.unit.upper()
        kw = {k: v for k, v in kw.items() if v is not None or k == "default"}
        targets[_group(s)].add_argument(s.flag, **kw)
    return targets


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed (field name -> typed value); the rest are absent."""
    if getattr(args, "repeat", None) == AUTO:
        raise BenchError("--repeat auto is for `bench run` and `bench suite run` (one process per repeat): "
                         "give a number here")
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


AUTO = "auto"


def repeat_arg(text: str) -> int | str:
    """--repeat N, or auto: repeat until steady-state images/s is stable (harness/experiments/repeats.py)."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of repeats or auto, got {text!r}") from None


def add_repeat_flags(parser: argparse.ArgumentParser) -> None:
    """--repeat-rsd and --repeat-max: the stopping rule of --repeat auto."""
    parser.add_argument("--repeat-rsd", type=float, default=DEFAULT_RSD, metavar="FRACTION",
                        help=f"--repeat auto stops once the relative standard deviation of steady-state images/s "
                             f"(epochs after the first) is below this (default: {DEFAULT_RSD})")
    parser.add_argument("--repeat-max", type=int, default=DEFAULT_MAX, metavar="N",
                        help=f"--repeat auto stops after N repeats at most (default: {DEFAULT_MAX}; at least "
                             f"{MIN_REPEATS} are run)")


def repeat_policy(args: argparse.Namespace, auto: bool) -> Policy:
    if not 0 < args.repeat_rsd < 1:
        raise BenchError(f"--repeat-rsd is a fraction in (0, 1), e.g. 0.03; got {args.repeat_rsd}")
    if args.repeat_max < MIN_REPEATS:
        raise BenchError(f"--repeat-max must be at least {MIN_REPEATS} (the rule needs {MIN_REPEATS} repeats), "
                         f"got {args.repeat_max}")
    return Policy(auto=auto, rsd=args.repeat_rsd, max_n=args.repeat_max)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="train and evaluate a model, recording per-epoch results",
                       description="Train and evaluate a model in one or more backends with identical "
                                   "settings, data order and initial weights; write results/<run_id>/.")
    p.add_argument("experiment", nargs="?", metavar="NAME",
                   help="a shipped experiment (experiments/NAME.toml; `bench suite list` lists them); flags override it")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="an experiment file (TOML: `bench run` settings by flag name; a list is a matrix axis); "
                        "flags given override it")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells (one per combination of list values), their comparison keys and estimated "
                        "time; run nothing")
    groups = add_setting_flags(p)
    add_repeat_flags(groups[1])
    groups[2].add_argument("--resume", type=Path, metavar="RUN_DIR",
                           help="continue an interrupted run from its last checkpoint (settings come from its "
                                "run.json: another --backend, --seed or configuration value is an error)")
    groups[2].add_argument("--restart", action="store_true",
                           help="with --resume, when the run has no checkpoint to continue from: start it over "
                                "from epoch 1, its recorded rows kept as epochs.<time>.csv")


def run(args: argparse.Namespace) -> int:
    from harness.train import session

    auto = args.repeat == AUTO
    if auto:
        args.repeat = None
    given = given_settings(args)
    policy = repeat_policy(args, auto)
    from_file = args.config is not None or args.experiment is not None
    if args.resume is not None:
        if from_file or auto or args.dry_run:
            raise BenchError("--resume continues one run folder from its run.json: drop the experiment, --repeat auto "
                             "and --dry-run")
        code = session.resume_command(args.resume, given, args.command_line, bool(given.get("quiet")), args.restart)
        session.print_summary([args.resume])
        return code
    if args.restart:
        raise BenchError("--restart starts over a run given with --resume RUN_DIR: add --resume, or drop --restart")
    isolated = (from_file or auto or args.dry_run or len(given.get("backends") or []) > 1
                or int(given.get("repeat") or 1) > 1)
    if not isolated or given.get("distributed") or _under_launcher():
        code, dirs = session.run_command(RunConfig(**given), args.command_line)
        if parent_record() is None:  # a cell's child: its parent prints one table for all cells
            session.print_summary(dirs)
        return code
    return _run_cells(args, given, policy)


def _under_launcher() -> bool:
    """A rank of a distributed job runs its work in-process, in step with the others."""
    from harness import distributed as D

    return bool(D.detect())


def _run_cells(args: argparse.Namespace, given: dict[str, Any], policy: Policy) -> int:
    """An experiment file, several backends or repeats: every (cell, repeat) in its own process."""
    from harness.experiments import plan
    from harness.experiments.files import ADHOC_EXPERIMENT, load_experiment
    from harness.experiments.matrix import expand
    from harness.train import session

    if args.config is not None and args.experiment is not None:
        raise BenchError(f"both NAME ({args.experiment}) and --config ({args.config}) name an experiment: give one")
    exp = load_experiment(str(args.config or args.experiment)) if (args.config or args.experiment) \
        else ADHOC_EXPERIMENT()
    cells = expand(exp, given)
    if not (args.config or args.experiment):  # flags typed here: what no machine runs is bad input
        from harness.experiments.support import static_reason

        for cell in cells:
            if (why := static_reason(cell)) is not None:
                raise BenchError(why)
    results_dir = cells[0].config.results_dir if cells[0].config else Path(given.get("results_dir") or "results")
    if args.dry_run:
        plan.dry_run(cells, results_dir, policy)
        return 0
    code, outcomes = plan.execute(cells, results_dir, policy, name=exp.name, suite=False,
                                  quiet=bool(given.get("quiet")))
    session.print_summary(plan.run_dirs(outcomes))
    return code
