#!/usr/bin/env bash
# Create or update ./.venv with everything bench needs. Idempotent: it re-installs only
# when pyproject.toml or this script changed since the last successful run.
#
# Why not a plain `pip install -e .`: chainer 7.8.1 is a source package whose setup.py
# imports pkg_resources, so it must be built with --no-build-isolation next to
# setuptools>=77,<81 (torch 2.14 wants >=77; 81 drops pkg_resources).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.bench-installed"
want=$(cat pyproject.toml scripts/ensure-venv.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
log="$VENV/install.log"
: > "$log"
step() {  # run one pip step; keep its chatter in the log, show it only on failure
    if ! "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "bench: installing into $VENV failed at: pip $*  (full log: $log)" >&2
        exit 1
    fi
}
echo "bench: setting up $VENV (first time: a few minutes; torch is ~5 GB)" >&2
step install --upgrade "pip>=24"
step install "setuptools>=77,<81" wheel "numpy>=1.24,<2"
step install "torch==2.14.1" "torchvision==0.29.1"
step install --no-build-isolation "chainer==7.8.1"
step install --no-build-isolation -e ".[torch,chainer,test,onnx]"
echo "$want" > "$stamp"
