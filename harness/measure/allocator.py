"""glibc malloc settings for training loops: keep freed buffers for the next step.

A training step frees and re-allocates the same large buffers every time (activations,
gradients, im2col matrices: 1-50 MB each for ResNet-20 at batch 128). glibc serves blocks
above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with fresh ``mmap``
calls and gives them back with ``munmap`` on free, and trims the heap top above 128 KiB:
so every step pays page faults and zeroing for memory it just released. NumPy-based
frameworks (Chainer on the CPU) suffer most; this is the effect PyTorch's CPU tuning guide
addresses by swapping in jemalloc or TCMalloc. bench stays on glibc and sets its two
documented tunables (mallopt(3), the same as the ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables) so that large blocks come from the heap
and freed memory stays with the process for reuse. Peak RSS is unchanged in steady state
(the same buffers are reused); memory is returned to the system when the process ends.

Applied by :func:`harness.train.prepare.prepare_backend` for every backend and recorded in run.json
(``threads.framework.malloc``). ``BENCH_MALLOC=default`` leaves glibc's defaults, for
measuring the difference. A no-op (and recorded so) on other C libraries (macOS, musl).
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30  # 1 GiB: above any single buffer of the models bench trains
ENV = "BENCH_MALLOC"

_applied: dict[str, Any] | None = None


def tune_malloc() -> dict[str, Any]:
    """Set the thresholds once per process; returns what was done, for run.json."""
    global _applied
    if _applied is not None:
        return _applied
    libc, version = platform.libc_ver()
    if os.environ.get(ENV, "").lower() == "default":
        _applied = {"allocator": f"{libc or 'libc'} {version}".strip(), "tuned": False, "why": f"{ENV}=default"}
        return _applied
    if libc != "glibc":
        _applied = {"allocator": libc or "unknown", "tuned": False, "why": "not glibc: nothing to set"}
        return _applied
    try:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
    except (OSError, AttributeError) as exc:
        _applied = {"allocator": f"glibc {version}", "tuned": False, "why": f"mallopt unavailable ({exc})"}
        return _applied
    _applied = {"allocator": f"glibc {version}", "tuned": ok,
                "mmap_threshold_bytes": THRESHOLD_BYTES if ok else None,
                "trim_threshold_bytes": THRESHOLD_BYTES if ok else None}
    if not ok:
        _applied["why"] = "mallopt refused the thresholds"
    return _applied
