#!/usr/bin/env bash
# The main job: set up ./.venv if needed, then train ResNet-20 in PyTorch and in Chainer on
# the embedded synthetic dataset (no download) with identical settings, data order and
# initial weights, and turn the two run folders into a comparison report.
# Extra arguments go to `bench run`, e.g. ./run.sh --dataset cifar10 --epochs 10
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
out=$(mktemp -d "${TMPDIR:-/tmp}/bench-demo.XXXXXX")
bench run --backend torch --backend chainer --device cpu --model resnet20 --dataset synthetic \
    --train-size 2048 --test-size 512 --epochs 3 --batch-size 128 --results-dir "$out" "$@"
mkdir -p results
runs=$(cd "$out" && for d in */; do printf 'results/%s ' "${d%/}"; done)
mv "$out"/* results/ && rmdir "$out"
bench compare $runs
bench report $runs --out results/report
echo "report: results/report/report.md"
