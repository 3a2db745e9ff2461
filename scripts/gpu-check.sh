#!/usr/bin/env bash
# Prove or refute bench's CUDA paths on a GPU host, in one command:
#
#     bash scripts/gpu-check.sh            # extra arguments go to pytest
#
# 1. ./.venv via scripts/ensure-venv.sh (torch from PyPI is a CUDA build);
# 2. optional, never fatal: CuPy for the CUDA major version nvidia-smi reports (Chainer on the
#    GPU) and onnxruntime-gpu in place of onnxruntime (ONNX Runtime's CUDA provider); what
#    could not be installed shows up below as a skip with its reason;
# 3. `pytest -m gpu` (tests/test_gpu.py), then one line per test area: passed, failed (first
#    line of the error), skipped (why), or xfail (a known defect, named).
# The exit status is pytest's. Install chatter goes to .venv/gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-venv.sh || exit 1
VENV=${BENCH_VENV:-.venv}
PY="$VENV/bin/python"
log="$VENV/gpu-check.log"
: > "$log"

optional() {  # pip install "$@"; on failure say so and go on
    if ! "$PY" -m pip --disable-pip-version-check -q install "$@" >>"$log" 2>&1; then
        echo "gpu-check: could not install $* (optional; the tests that need it will skip; see $log)" >&2
        return 1
    fi
}

cuda=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
        | sed 's/^/gpu-check: GPU /' >&2
    cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
    echo "gpu-check: the driver supports CUDA ${cuda:-?}" >&2
else
    echo "gpu-check: no nvidia-smi: no NVIDIA driver here, every GPU test will skip" >&2
fi

# CuPy. bench pins numpy<2 (Chainer 7.8.1), and CuPy 14 needs numpy 2, so CuPy 13: for CUDA
# 11 cupy-cuda11x; for 12 and later cupy-cuda12x (a newer driver runs CUDA 12 code) with the
# CUDA 12 runtime libraries from PyPI. Not nvidia-cudnn-cu12: it would overwrite torch's
# cuDNN in site-packages/nvidia/cudnn; Chainer then runs without cuDNN and records so.
case "${cuda%%.*}" in
    "") ;;
    11) optional "cupy-cuda11x<14" "numpy<2" ;;
    *)  optional "cupy-cuda12x<14" "numpy<2" nvidia-cuda-runtime-cu12 nvidia-cuda-nvrtc-cu12 nvidia-cublas-cu12 \
            nvidia-curand-cu12 nvidia-cufft-cu12 nvidia-cusparse-cu12 nvidia-cusolver-cu12 ;;
esac

# onnxruntime-gpu provides the same `onnxruntime` module (with the CPU provider too), so it
# replaces onnxruntime at the same version; if it cannot be installed, onnxruntime comes back.
if [ -n "$cuda" ]; then
    ort=$("$PY" -c "import onnxruntime; print(onnxruntime.__version__)" 2>/dev/null)
    if [ -n "$ort" ] && ! "$PY" -m pip show onnxruntime-gpu >/dev/null 2>&1; then
        "$PY" -m pip --disable-pip-version-check -q uninstall -y onnxruntime >>"$log" 2>&1
        optional "onnxruntime-gpu==$ort" || optional "onnxruntime==$ort"
    fi
fi

# CUDA libraries that came from PyPI (CuPy and onnxruntime-gpu look for them on the loader
# path; torch finds its own through its RPATH, which takes precedence over this).
site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
for lib in "$site"/nvidia/*/lib; do
    [ -d "$lib" ] && LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"

"$PY" - <<'EOF' >&2
import importlib
for name in ("torch", "cupy", "chainer", "onnxruntime"):
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report, never fail here
        print(f"gpu-check: {name}: not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        continue
    extra = ""
    if name == "torch":
        extra = f", CUDA {mod.version.cuda}, cuda.is_available() {mod.cuda.is_available()}"
    elif name == "onnxruntime":
        extra = f", providers {', '.join(mod.get_available_providers())}"
    print(f"gpu-check: {name} {getattr(mod, '__version__', '?')}{extra}")
EOF

junit="$VENV/gpu-check.xml"
"$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -rA --junitxml="$junit" "$@"
status=$?

"$PY" - "$junit" <<'EOF'
"""One line per test area from pytest's JUnit XML."""
import sys
import xml.etree.ElementTree as ET

AREAS = {
    "test_torch_cuda_trains_and_resumes": "torch CUDA training + resume",
    "test_nvml_utilisation_and_memory_recorded": "NVML utilisation and memory",
    "test_cudnn_settings_recorded": "cuDNN settings in run.json",
    "test_cudnn_numerics_recorded": "cuDNN TF32/deterministic in run.json",
    "test_nvml_index_follows_cuda_visible_devices": "NVML index under CUDA_VISIBLE_DEVICES",
    "test_chainer_cupy_trains_on_the_gpu": "Chainer with CuPy",
    "test_onnxruntime_cuda_provider_matches_cpu": "ONNX Runtime CUDA provider",
    "test_gpu_suite_is_not_silently_empty": "torch sees the GPU NVML sees",
}
try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except (OSError, ET.ParseError) as exc:
    sys.exit(f"gpu-check: no test report ({exc})")
print("\ngpu-check summary")
for case in cases:
    name = case.get("name", "?")
    area = AREAS.get(name.split("[")[0], name)
    verdict = "passed"
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            message = (node.get("message") or node.text or "").strip().splitlines()
            first = message[0][:160] if message else ""
            if tag == "skipped" and node.get("type") == "pytest.xfail":
                verdict = f"xfail (known defect): {first}"
            else:
                verdict = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag] + (f": {first}" if first else "")
            break
    print(f"  {area:40s} {verdict}")
EOF
exit $status
