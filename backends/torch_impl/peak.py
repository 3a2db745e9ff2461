"""Matmul throughput of this framework per data type: the yardstick `bench sysinfo --peak`
divides achieved GFLOP/s by. Run as ``python -m backends.torch_impl.peak`` in a child process
(harness/measure/peak.py), so the harness never imports torch.

Every data type asked for is measured, never assumed: a CPU without AMX-BF16 / AVX512-BF16
still runs bfloat16 matmuls (through a slow path) and the figure says how slow.
"""
from __future__ import annotations

import time

import torch

from harness.measure.peak import child_main

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: str, device: str, seconds: float, max_n: int = 4096) -> dict[str, object]:
    """Best-of GFLOP/s of n x n products; n grows from 512 until the faster of two products
    takes >= 0.1 s (or max_n), so slow paths are measured at a size that finishes and fast
    ones at a size that fills the machine."""
    dev = torch.device(device)
    try:
        n, best = 512, float("inf")
        while True:
            a = torch.randn(n, n, device=dev).to(DTYPES[dtype])
            b = torch.randn(n, n, device=dev).to(DTYPES[dtype])
            a @ b  # warm-up: thread pool, kernels, page faults
            _sync(dev)
            once = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                a @ b
                _sync(dev)
                once = min(once, time.perf_counter() - t0)
            if once >= 0.1 or n >= max_n:
                break
            n *= 2
        deadline, reps = time.perf_counter() + seconds, 0
        while reps < 3 or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            a @ b
            _sync(dev)
            best = min(best, time.perf_counter() - t0)
            reps += 1
    except (RuntimeError, TypeError) as e:  # a dtype this device/build cannot multiply
        return {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    return {"gflops": round(2 * n**3 / best / 1e9, 2), "n": n, "threads": torch.get_num_threads(),
            "engine": f"torch {torch.__version__}"}


def main() -> None:
    child_main(matmul_gflops)


if __name__ == "__main__":
    main()
