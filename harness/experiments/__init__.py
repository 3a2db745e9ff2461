"""Experiments as files, suites of them, and the runner that starts every cell in its own process.

- :mod:`~harness.experiments.files`: reading experiment and suite files (TOML), finding shipped ones.
- :mod:`~harness.experiments.matrix`: an experiment -> cells (cartesian product of its list
  values, minus ``exclude``), each a validated set of settings with its comparison key.
- :mod:`~harness.experiments.keys`: the comparison key (one function; EXPERIMENTS.md).
- :mod:`~harness.experiments.context`: what a child process learns from its parent (env).
- :mod:`~harness.experiments.support`: can this machine run a cell (else "unsupported", not a failure).
- :mod:`~harness.experiments.runner`: one child process per (cell, repeat); statuses; suite.json.
- :mod:`~harness.experiments.repeats`: `--repeat auto`'s stopping rule.
- :mod:`~harness.experiments.estimate`: the time a cell will take, for `--dry-run` and the ETA.

Nothing here imports a framework: the frameworks live in the child processes.
"""
