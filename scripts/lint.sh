#!/usr/bin/env bash
# Lint, as ./test.sh (and so CI) runs it before pytest: ruff over the tree, mypy over harness/
# and backends/. The rules, the strictness and why: pyproject.toml [tool.ruff] and [tool.mypy].
# A few seconds (mypy keeps .mypy_cache; the first run on a fresh clone takes ~20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv}
"$VENV/bin/ruff" check --quiet . || { echo "lint: ruff found the problems above (rules: pyproject.toml [tool.ruff])" >&2; exit 1; }
"$VENV/bin/mypy" --no-error-summary || { echo "lint: mypy found the problems above (settings: pyproject.toml [tool.mypy])" >&2; exit 1; }
