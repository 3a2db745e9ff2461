"""What machine this is: the description every run.json carries and `bench sysinfo` prints.

A number from a benchmark is meaningless without the machine that produced it, so this
collects what a hand-written hardware write-up lists (CPU model, cores, memory, GPUs and
driver, OS and distribution, Python and library versions, BLAS, thread settings; on a Jetson
the board, L4T / JetPack release and power mode) without importing any framework: library
versions come from package metadata, GPUs from NVML or a Tegra board's sysfs
(harness/measure/board.py, tegra.py), the full package list from importlib.metadata.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
from typing import Any

import numpy as np

from harness.cache import text_sha256
from harness.measure import peak
from harness.measure.board import tegra_info
from harness.measure.hostfs import host_root
from harness.measure.osinfo import distribution, packages, torch_origin
from harness.measure.tegra import SHARED_MEMORY_NOTE, find_gpu_devfreq
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
        # numpy>=2 only (our numpy 1.x stubs lack it; numpy 1.x raises TypeError here, caught below)
        config: Any = np.show_config(mode="dicts")  # type: ignore[call-arg, func-returns-value]
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


def tegra_gpus(total_memory_mb: float) -> list[dict[str, Any]]:
    """A Jetson's integrated GPU in the shape of an NVML entry (no NVML on these boards)."""
    devfreq = find_gpu_devfreq(host_root())
    if devfreq is None:
        return []
    return [{"index": 0, "name": f"integrated Tegra GPU ({devfreq.name})", "driver": "nvgpu (L4T)",
             "memory_total_mb": round(total_memory_mb), "memory": SHARED_MEMORY_NOTE}]


def machine_info() -> dict[str, Any]:
    import psutil

    gpu_list = gpus() or tegra_gpus(psutil.virtual_memory().total / 2**20)
    model = cpu_model()
    host = socket.gethostname()
    ident = "|".join([host, model, str(psutil.cpu_count()), ",".join(g["name"] for g in gpu_list)])
    machine_id = text_sha256(ident)[:12]
    return {
        "machine_id": machine_id,
        "hostname": host,
        "os": f"{platform.system()} {platform.release()} ({platform.platform()})",
        "distribution": distribution(),
        "board": tegra_info(),
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
        "torch_origin": torch_origin(),
        "packages": packages(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        # `bench sysinfo --peak` measured on this machine earlier ({} if never), per device,
        # backend and dtype: lets a report say what share of the right peak a run reached.
        "peak_matmul": peak.cached(machine_id),
        "cpu_dtype_flags": peak.cpu_dtype_flags(),
    }


def format_machine(info: dict[str, Any]) -> str:
    """The description as aligned text, to paste into a write-up."""
    dist = info.get("distribution") or {}
    lines = [
        ("Host", info["hostname"]),
        ("OS", info["os"]),
        ("Distribution", dist.get("pretty") or f"{dist.get('name') or '?'} {dist.get('version') or ''}".strip()),
        ("CPU", f"{info['cpu_model']} ({info['cpu_physical_cores']} physical / {info['cpu_logical_cores']} logical cores)"),
        ("Memory", f"{info['memory_total_gb']} GiB"),
    ]
    board = info.get("board")
    if board:
        lines.append(("Board", board.get("model") or "?"))
        if board.get("l4t"):
            lines.append(("L4T / JetPack", f"{board['l4t']} / {board.get('jetpack') or 'unknown (not in bench table)'}"))
            mode = board.get("power_mode")
            lines.append(("Power mode", f"{mode['name']} (nvpmodel {mode['id']})" if mode
                          else f"unknown ({board.get('power_mode_why')})"))
    for gpu in info["gpus"] or []:
        memory = f"{gpu['memory_total_mb']} MiB" + (" shared with the CPU" if gpu.get("memory") else "")
        lines.append((f"GPU {gpu['index']}", f"{gpu['name']}, {memory}, driver {gpu['driver']}"))
    if not info["gpus"]:
        lines.append(("GPU", "none (no NVIDIA driver found)"))
    lines += [("Python", info["python"]), ("numpy", f"{info['numpy']} (BLAS: {info['blas']})")]
    lines += [(name, ver) for name, ver in info["libraries"].items() if ver]
    lines += [(k, v if v is not None else "(unset)") for k, v in info["thread_env"].items()]
    origin = info.get("torch_origin") or {}
    if origin.get("version"):
        installer = origin.get("installer") or "not installed by scripts/ensure-venv.sh"
        lines.append(("torch from", f"{installer} ({origin.get('location')})"))
    lines.append(("Packages", f"{len(info.get('packages') or [])} in this environment (`bench sysinfo --json` lists them)"))
    if info.get("cpu_dtype_flags"):
        lines.append(("CPU data-type flags", " ".join(info["cpu_dtype_flags"])))
    lines += peak.format_peaks(info.get("peak_matmul") or {})
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
