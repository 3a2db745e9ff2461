#!/usr/bin/env bash
# The test suite: set up ./.venv if needed, lint (ruff, then mypy: configured in pyproject.toml;
# a few seconds, always, even for one test file), then run every test (real torch and chainer,
# real files, real `bench` subprocesses; a few minutes on 2 cores). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
bash scripts/ensure-mpi.sh  # Open MPI + mpi4py for the ChainerMN tests (never fatal; they skip, saying why)
bash scripts/lint.sh
# Two pytest workers by default (the tests run their frameworks with one thread each, sized for
# 2 cores); BENCH_TEST_WORKERS=0 runs them serially. --dist loadgroup keeps the tests of one
# xdist_group (the local SLURM cluster) on one worker.
workers=${BENCH_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"
