#!/usr/bin/env bash
# Create or update ./.venv with everything bench needs. Idempotent: it re-installs only
# when pyproject.toml, this script or the torch choice changed since the last successful run.
#
# Why not a plain `pip install -e .`: chainer 7.8.1 is a source package whose setup.py
# imports pkg_resources, so it must be built with --no-build-isolation next to
# setuptools>=77,<81 (torch 2.14 wants >=77; 81 drops pkg_resources).
#
# Where torch comes from (recorded in $VENV/.bench-torch; run.json copies it):
#   BENCH_TORCH unset / "pinned"  the registry's torch==2.14.1 + torchvision==0.29.1. On x86-64
#                                 that wheel carries CUDA; on aarch64 it is a CPU / server-GPU
#                                 (SBSA) build that cannot use a Jetson's integrated GPU.
#   BENCH_TORCH=system            the platform's own torch (NVIDIA's JetPack build on a Jetson):
#                                 the venv sees the system site-packages and no torch is installed.
#   BENCH_TORCH_WHEEL=PATH|URL    install this torch wheel (BENCH_TORCHVISION_WHEEL likewise).
#   BENCH_TORCH_INDEX=URL         install torch and torchvision from this package index.
# --print-plan prints the decisions and pip steps for this machine and installs nothing
# (tests run it with a fake `uname` to see the aarch64 branch on an x86-64 host).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv}
PY=${PYTHON:-python3}
plan_only=0
[ "${1:-}" = "--print-plan" ] && plan_only=1
arch=$(uname -m)
tegra=0
[ -f "${BENCH_SYSFS_ROOT:-}/etc/nv_tegra_release" ] && tegra=1

torch_pins=("torch==2.14.1" "torchvision==0.29.1")
extras="torch,chainer,test,onnx"
system_site=0
if [ -n "${BENCH_TORCH_WHEEL:-}" ]; then
    origin="wheel:$BENCH_TORCH_WHEEL"
    torch_step=(install "$BENCH_TORCH_WHEEL" ${BENCH_TORCHVISION_WHEEL:+"$BENCH_TORCHVISION_WHEEL"})
    extras="chainer,test,onnx"
elif [ -n "${BENCH_TORCH_INDEX:-}" ]; then
    origin="index:$BENCH_TORCH_INDEX"
    torch_step=(install --index-url "$BENCH_TORCH_INDEX" torch torchvision)
    extras="chainer,test,onnx"
else
    case "${BENCH_TORCH:-pinned}" in
        pinned) origin="pinned:${torch_pins[*]}"; torch_step=(install "${torch_pins[@]}") ;;
        system) origin="system"; torch_step=(); system_site=1; extras="chainer,test,onnx" ;;
        *) echo "bench: BENCH_TORCH=${BENCH_TORCH} is not one of pinned, system (or set BENCH_TORCH_WHEEL / BENCH_TORCH_INDEX)" >&2; exit 2 ;;
    esac
fi

if [ "$plan_only" = 1 ]; then
    echo "arch: $arch"
    echo "tegra: $tegra"
    echo "torch: $origin"
    echo "venv: $VENV$([ "$system_site" = 1 ] && echo ' (--system-site-packages)')"
    echo "pip install --upgrade pip>=24"
    echo "pip install setuptools>=77,<81 wheel numpy>=1.24,<2"
    [ ${#torch_step[@]} -gt 0 ] && echo "pip ${torch_step[*]}"
    echo "pip install --no-build-isolation chainer==7.8.1"
    echo "pip install --no-build-isolation -e .[$extras]"
    if [ "$arch" = aarch64 ] && [ "$origin" = "pinned:${torch_pins[*]}" ]; then
        echo "note: on aarch64 the registry's torch cannot use a Jetson's GPU; on a Jetson use BENCH_TORCH=system (README 'Orin Nano / Jetson')"
    fi
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    if [ "$system_site" = 1 ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
elif [ "$system_site" = 1 ] && ! grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
    echo "bench: BENCH_TORCH=system needs a venv that sees the system site-packages, and $VENV does not: remove $VENV (or set BENCH_VENV) and run again" >&2
    exit 2
fi
stamp="$VENV/.bench-installed"
want=$( (cat pyproject.toml scripts/ensure-venv.sh; echo "$origin") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ "$system_site" = 1 ] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "bench: BENCH_TORCH=system but $PY has no torch: install the platform's torch first (on a Jetson, NVIDIA's JetPack wheel: README 'Orin Nano / Jetson') or unset BENCH_TORCH" >&2
    exit 2
fi
if [ "$arch" = aarch64 ] && [ "$origin" = "pinned:${torch_pins[*]}" ] && [ "$tegra" = 1 ]; then
    echo "bench: note: this is a Jetson; the registry's aarch64 torch cannot use its GPU. For --device cuda use BENCH_TORCH=system (README 'Orin Nano / Jetson')" >&2
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
[ ${#torch_step[@]} -gt 0 ] && step "${torch_step[@]}"
step install --no-build-isolation "chainer==7.8.1"
step install --no-build-isolation -e ".[$extras]"
echo "$origin" > "$VENV/.bench-torch"
echo "$want" > "$stamp"
