"""Timing helpers shared by the micro-benchmarks.

Every benchmark runs its function once untimed (warm-up: oneDNN primitive creation, first
allocations, lazy imports), then lets pytest-benchmark choose the number of rounds. A call
so slow that pytest-benchmark's minimum of rounds would take long (Chainer on a CPU trains
ResNet-20 at ~30-50 images/s, a step takes seconds) is run in pedantic mode with a bounded
number of rounds instead, so ``pytest benchmarks`` takes minutes, not tens of minutes.
Each result records the thread settings and images/s in ``benchmark.extra_info``, which
``--benchmark-save-data`` writes into the saved JSON.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from harness.train.prepare import Prepared

CALIBRATED_MAX_S = 6.0  # warm-up call x 5 (pytest-benchmark's min rounds) up to this: calibrate
PEDANTIC_BUDGET_S = 15.0  # otherwise: about this much timed work ...
PEDANTIC_ROUNDS = (3, 10)  # ... in this many rounds at least / at most
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_info(prepared: Prepared) -> dict[str, Any]:
    """What the backend's ``configure`` reported, plus the thread environment variables."""
    return {"threads": dict(prepared.thread_settings), "thread_env": {k: os.environ.get(k) for k in THREAD_ENV}}


def measure(benchmark: Any, fn: Callable[[], Any], *, images: int, prepared: Prepared,
            **info: Any) -> None:
    """Warm up ``fn`` once, time it, and record images/s and thread settings."""
    start = time.perf_counter()
    fn()  # warm-up, not recorded
    warm_s = time.perf_counter() - start
    if warm_s * 5 <= CALIBRATED_MAX_S:
        benchmark(fn)
        mode = "calibrated"
    else:
        low, high = PEDANTIC_ROUNDS
        rounds = max(low, min(high, math.ceil(PEDANTIC_BUDGET_S / warm_s)))
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        mode = f"pedantic ({rounds} rounds)"
    extra = benchmark.extra_info
    extra.update(info)
    extra.update(thread_info(prepared))
    extra.update(backend=prepared.backend.name, images_per_call=images, rounds_mode=mode,
                 warmup_s=round(warm_s, 4))
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None with --benchmark-disable
        median = stats.stats.median
        extra["images_per_s"] = images / median if median > 0 else None
