"""Every `bench` sub-command, one module each.

A command module has ``NAME``, ``add_parser(sub)`` (adds its sub-parser and flags to
``sub``) and ``run(args) -> int`` (the exit status; a :class:`~harness.errors.BenchError`
for the user's mistakes). A new command is a new module listed once in :data:`COMMANDS`;
harness/cli.py wires each in and owns exit codes and error lines. A parser that sets the
default ``extra_args`` receives the arguments it does not know there (`bench launch`).
Command modules import heavy work (frameworks never; pandas, the run loop) inside ``run``
where they can, so `bench --help` stays quick.
"""
from __future__ import annotations

from harness.commands import (compare, export, infer, launch, list as list_, parity, report, run, suite, summary,
                              sysinfo, weights)

COMMANDS = (run, suite, list_, summary, sysinfo, compare, report, parity, weights, infer, export, launch)
"""In the order `bench --help` lists them."""
