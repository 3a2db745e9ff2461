"""`bench run`: its flags are generated from RunConfig's declaration (harness/config.py).

Each setting becomes one flag with the setting's help, choices and default; a flag the user
did not type stays None in the namespace, so :func:`given_settings` can tell "given" from
"default" (what `--resume` checks, and what will override an experiment file).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.config import SETTINGS, RunConfig, Setting, comma_list, show_value, value_type
from harness.errors import BenchError

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
        if kind is bool:
            kw["action"] = "store_false" if s.negated else "store_true"
        else:
            if kind is list:
                kw["action"] = "append"
            else:
                kw["type"] = {tuple: comma_list, str: None}.get(kind, kind)
            if s.choices is not None:
                kw["choices"] = list(s.choices)
            if s.metavar or s.unit:
                kw["metavar"] = s.metavar or s.unit.upper()
        kw = {k: v for k, v in kw.items() if v is not None or k == "default"}
        targets[_group(s)].add_argument(s.flag, **kw)
    return targets


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed (field name -> typed value); the rest are absent."""
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="train and evaluate a model, recording per-epoch results",
                       description="Train and evaluate a model in one or more backends with identical "
                                   "settings, data order and initial weights; write results/<run_id>/.")
    groups = add_setting_flags(p)
    groups[2].add_argument("--resume", type=Path, metavar="RUN_DIR",
                           help="continue an interrupted run from its last checkpoint (settings come from its "
                                "run.json: another --backend, --seed or configuration value is an error)")
    groups[2].add_argument("--restart", action="store_true",
                           help="with --resume, when the run has no checkpoint to continue from: start it over "
                                "from epoch 1, its recorded rows kept as epochs.<time>.csv")


def run(args: argparse.Namespace) -> int:
    from harness.train import session

    given = given_settings(args)
    if args.resume is not None:
        code = session.resume_command(args.resume, given, args.command_line, bool(given.get("quiet")), args.restart)
        session.print_summary([args.resume])
        return code
    if args.restart:
        raise BenchError("--restart starts over a run given with --resume RUN_DIR: add --resume, or drop --restart")
    code, dirs = session.run_command(RunConfig(**given), args.command_line)
    session.print_summary(dirs)
    return code
