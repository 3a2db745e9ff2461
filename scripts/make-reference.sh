#!/usr/bin/env bash
# Regenerate results/reference/: the `quick` suite measured on this machine, as the small
# CSV/JSON files reports read (run.json, epochs.csv, infer.csv, util.csv thinned, suite.json;
# no checkpoints), under 900 kB. Run it on the project's CI-class machine on the final code:
#     scripts/make-reference.sh            # ~10 minutes on 2 cores
# The suite runs into a temporary folder; results/reference/ is replaced only when the copy
# is complete and under the limit (harness/report/reference.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
out=$(mktemp -d "${TMPDIR:-/tmp}/bench-reference.XXXXXX")
trap 'rm -rf "$out"' EXIT
bench suite run quick --out "$out/quick"
python -m harness.report.reference "$out/quick" results/reference
