#!/usr/bin/env bash
# The test suite: set up ./.venv if needed, lint (ruff, then mypy: configured in pyproject.toml;
# a few seconds, always, even for one test file), then run every test (real torch and chainer,
# real files, real `bench` subprocesses; a few minutes on 2 cores). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
bash scripts/ensure-mpi.sh  # Open MPI + mpi4py for the ChainerMN tests (never fatal; they skip, saying why)
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
