"""Matmul throughput of this framework per data type: the yardstick `bench sysinfo --peak`
divides achieved GFLOP/s by. Run as ``python -m backends.chainer_impl.peak`` in a child process
(harness/measure/peak.py). Chainer multiplies through numpy on the CPU (its BLAS; float16 has
no BLAS path and is measured as the slow loop it is) and CuPy on a GPU; bfloat16 exists in
neither, and is reported as skipped with that reason.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from harness.measure.peak import child_main

DTYPES = {"float32": np.float32, "float16": np.float16}


def _xp(device: str) -> tuple[Any, Any]:
    if device.startswith("cuda"):
        import cupy

        cupy.cuda.Device(int(device.partition(":")[2] or 0)).use()
        return cupy, cupy.cuda.Device().synchronize
    return np, lambda: None


def matmul_gflops(dtype: str, device: str, seconds: float, max_n: int = 4096) -> dict[str, object]:
    """Best-of GFLOP/s of n x n products; n grows from 512 until the faster of two products
    takes >= 0.1 s (or max_n), as in backends/torch_impl/peak.py."""
    if dtype not in DTYPES:
        return {"skipped": f"Chainer has no {dtype} arrays (numpy/CuPy)"}
    try:
        xp, sync = _xp(device)
    except Exception as e:
        return {"skipped": f"{type(e).__name__}: {e}"}
    rng = np.random.default_rng(0)
    n, best = 512, float("inf")
    while True:
        a = xp.asarray(rng.standard_normal((n, n)).astype(DTYPES[dtype]))
        b = xp.asarray(rng.standard_normal((n, n)).astype(DTYPES[dtype]))
        a @ b
        sync()
        once = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            a @ b
            sync()
            once = min(once, time.perf_counter() - t0)
        if once >= 0.1 or n >= max_n:
            break
        n *= 2
    deadline, reps = time.perf_counter() + seconds, 0
    while reps < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    threads = None
    try:
        from threadpoolctl import threadpool_info

        threads = next((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"), None)
    except Exception:
        pass
    engine = "cupy" if xp is not np else f"numpy {np.__version__}"
    return {"gflops": round(2 * n**3 / best / 1e9, 2), "n": n, "threads": threads, "engine": engine}


def main() -> None:
    child_main(matmul_gflops)


if __name__ == "__main__":
    main()
