#!/usr/bin/env bash
# Make `mpiexec` and mpi4py available for ChainerMN runs (`bench launch --backend chainer`)
# and for the distributed tests. Idempotent and never fatal: bench itself does not need MPI,
# so when it cannot be installed this says why and exits 0 (those tests then skip, saying so).
#
# What it installs, where missing:
#   Debian/Ubuntu, as root: apt-get install openmpi-bin libopenmpi-dev (Open MPI: mpiexec,
#                           and mpicc, which pip needs if it has to build mpi4py)
#   into the venv:          pip install mpi4py (it loads this Open MPI's libmpi at run time)
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv}
PY="$VENV/bin/python"
log="$VENV/mpi-install.log"

say() { echo "bench: ensure-mpi: $*" >&2; }
skip="ChainerMN runs and their tests will be skipped"

if [ ! -x "$PY" ]; then
    say "no venv at $VENV (run scripts/ensure-venv.sh first); $skip"
    exit 0
fi
# Loads libmpi without initialising MPI: proves mpi4py and the MPI it was built for both work.
mpi4py_ok() { "$PY" -c "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI" >/dev/null 2>&1; }

have_mpiexec=$(command -v mpiexec >/dev/null 2>&1 && echo yes || echo no)
if [ "$have_mpiexec" = yes ] && mpi4py_ok; then
    exit 0
fi

if [ "$have_mpiexec" = no ] || ! command -v mpicc >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        say "Open MPI is missing and this is not root: ask an admin for openmpi-bin libopenmpi-dev; $skip"
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "Open MPI is missing and there is no apt-get: install it with this system's package manager; $skip"
        exit 0
    fi
    say "installing Open MPI (apt-get install openmpi-bin libopenmpi-dev)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            openmpi-bin libopenmpi-dev; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        say "apt-get failed (full log: $log); $skip"
        exit 0
    fi
fi

if ! mpi4py_ok; then
    say "installing mpi4py into $VENV"
    if ! "$PY" -m pip --disable-pip-version-check -q install "mpi4py>=3.1" >>"$log" 2>&1 || ! mpi4py_ok; then
        tail -n 20 "$log" >&2
        say "mpi4py does not install or load (full log: $log); $skip"
        exit 0
    fi
fi
exit 0
