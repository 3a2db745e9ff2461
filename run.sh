#!/usr/bin/env bash
# The main job: set up ./.venv if needed, run the `quick` suite on this machine (ResNet-20
# training in PyTorch and Chainer with identical settings, data order and initial weights;
# inference latency incl. ONNX Runtime; a frozen ResNet-18 at 224 px; thread/process layouts;
# precision and compile cells: each cell in its own process, synthetic data, no download),
# then write a report that lines this machine up, experiment by experiment, beside the
# reference machine in results/reference/.
# Extra arguments go to `bench suite run`, e.g. ./run.sh --repeat auto. Run it again and the
# suite skips the cells already done (and resumes an interrupted one).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
out="results/quick-$(hostname -s 2>/dev/null || echo here)"
bench suite run quick --out "$out" "$@"
bench report results/reference "$out" --out results/report
echo "report: results/report/report.md (this machine's runs: $out)"
