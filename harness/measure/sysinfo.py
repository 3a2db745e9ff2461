"""What machine this is: the description every run.json carries and `bench sysinfo` prints.

A number from a benchmark is meaningless without the machine that produced it, so this
collects what a hand-written hardware write-up lists (CPU model, cores, memory, GPUs and
driver, OS, Python and library versions, BLAS, thread settings) without importing any
framework: library versions come from package metadata, GPUs from NVML.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import bench_cache_dir, text_sha256
from harness.schema.meta import THREAD_ENV_VARS

LIBRARIES = ("torch", "torchvision", "chainer", "cupy", "onnx", "onnxruntime", "pandas", "matplotlib")


def _version(dist: str) -> str | None:
    for name in (dist, f"{dist}-cuda12x", f"{dist}-cuda11x") if dist == "cupy" else (dist,):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        import cpuinfo  # py-cpuinfo; ~1 s, hence the cache

        info = cpuinfo.get_cpu_info()
        return str(info.get("brand_raw") or info.get("arch") or platform.processor())
    except Exception:
        return platform.processor() or platform.machine()


def blas_info() -> str:
    """numpy's BLAS as threadpoolctl or numpy's build config reports it (Chainer's CPU maths)."""
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
    except Exception:
        pass
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs via NVML (nvidia-ml-py); empty when there is no driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append({
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                "memory_total_mb": round(mem.total / 2**20),
            })
        return out
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def machine_info() -> dict[str, Any]:
    import psutil

    gpu_list = gpus()
    model = cpu_model()
    host = socket.gethostname()
    ident = "|".join([host, model, str(psutil.cpu_count()), ",".join(g["name"] for g in gpu_list)])
    machine_id = text_sha256(ident)[:12]
    return {
        "machine_id": machine_id,
        "hostname": host,
        "os": f"{platform.system()} {platform.release()} ({platform.platform()})",
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "memory_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_list,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        # `bench sysinfo --peak` measured on this machine earlier (None if never): lets a
        # report say what share of the machine's float32 throughput a framework reached.
        "peak_matmul": cached_peak(machine_id),
    }


def format_machine(info: dict[str, Any]) -> str:
    """The description as aligned text, to paste into a write-up."""
    lines = [
        ("Host", info["hostname"]),
        ("OS", info["os"]),
        ("CPU", f"{info['cpu_model']} ({info['cpu_physical_cores']} physical / {info['cpu_logical_cores']} logical cores)"),
        ("Memory", f"{info['memory_total_gb']} GiB"),
    ]
    for gpu in info["gpus"] or []:
        lines.append((f"GPU {gpu['index']}", f"{gpu['name']}, {gpu['memory_total_mb']} MiB, driver {gpu['driver']}"))
    if not info["gpus"]:
        lines.append(("GPU", "none (no NVIDIA driver found)"))
    lines += [("Python", info["python"]), ("numpy", f"{info['numpy']} (BLAS: {info['blas']})")]
    lines += [(name, ver) for name, ver in info["libraries"].items() if ver]
    lines += [(k, v if v is not None else "(unset)") for k, v in info["thread_env"].items()]
    peak = info.get("peak_matmul")
    if peak:
        lines.append(("fp32 matmul peak", f"{peak['gflops']:.1f} GFLOP/s (numpy, {peak['threads']} threads, "
                                          f"measured {peak['measured_at'][:16]})"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def measure_matmul_peak(n: int = 2048, seconds: float = 3.0) -> dict[str, Any]:
    """This machine's float32 matmul throughput through numpy's BLAS (GFLOP/s), best of
    repeated n x n products after one warm-up: the yardstick for "what fraction of the
    machine did a framework use"."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    deadline = time.perf_counter() + seconds
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
        reps += 1
    threads = None
    try:
        from threadpoolctl import threadpool_info

        threads = next((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"), None)
    except Exception:
        pass
    return {"peak_matmul_gflops": 2 * n**3 / best / 1e9, "peak_matmul_n": n, "peak_matmul_threads": threads}


def peak_cache_path() -> Path:
    """Where `bench sysinfo --peak` keeps its measurement, one entry per machine id."""
    return bench_cache_dir() / "matmul-peak.json"


def cached_peak(machine_id: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(peak_cache_path().read_text()).get(machine_id)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("gflops"), (int, float)) else None


def save_peak(machine_id: str, measured: dict[str, Any]) -> dict[str, Any]:
    """Record a measurement for later runs on this machine; returns the entry. Never raises
    for an unwritable cache (the measurement is printed either way)."""
    from datetime import datetime, timezone

    from harness.schema.io import atomic_write_bytes

    entry = {"gflops": round(measured["peak_matmul_gflops"], 2), "threads": measured["peak_matmul_threads"],
             "n": measured["peak_matmul_n"], "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = peak_cache_path()
    try:
        try:
            table = json.loads(path.read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(table | {machine_id: entry}, indent=2).encode())
    except OSError:
        pass
    return entry
