"""Matmul peaks per framework, device and data type: what `bench sysinfo --peak` measures and
later runs divide their achieved GFLOP/s by.

A float32 peak is the wrong yardstick for a bfloat16 run: on a CPU with AMX-BF16 the bf16
peak is ~5x the fp32 one, on an AVX2-only CPU bf16 is slower than fp32. So every data type is
*measured* (never assumed from CPU flags; the flags are recorded beside the figures to explain
them), by each framework's own ``backends/<fw>_impl/peak.py`` in a child process, so that the
harness never imports a framework. The cache (``$BENCH_CACHE_DIR/matmul-peak.json``) holds
``{machine_id: {device: {backend: {dtype: entry}}}}``; run.json records this machine's entries
so a report can pick the peak of the run's backend, device and (once precision is a setting)
data type with ``peak_for``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from harness.cache import bench_cache_dir
from harness.errors import BenchError
from harness.measure.hostfs import Unreadable, host_root, read_text, under

DTYPES = ("float32", "bfloat16", "float16")
# CPU features that give a data type a fast matmul path (x86 /proc/cpuinfo "flags", Arm "Features").
DTYPE_FLAGS = ("amx_bf16", "amx_fp16", "avx512_bf16", "avx512_fp16", "avx512f", "avx2", "bf16", "asimdhp", "fphp")


def cpu_dtype_flags(root: str | Path | None = None) -> list[str]:
    """The DTYPE_FLAGS this CPU advertises (first processor's flags/Features line)."""
    try:
        text = read_text(under(host_root(root), "/proc/cpuinfo")) or ""
    except Unreadable:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            have = set(value.split())
            return [f for f in DTYPE_FLAGS if f in have]
    return []


def installed_backends() -> list[str]:
    """The frameworks with a peak module that this environment can import (found, not imported)."""
    import importlib.util

    return [b for b in ("torch", "chainer") if importlib.util.find_spec(b) is not None]


def measure(backend: str, device: str = "cpu", dtypes: tuple[str, ...] = DTYPES, seconds: float = 2.0,
            timeout_s: float = 600) -> dict[str, dict[str, Any]]:
    """``{dtype: {"gflops", "n", "threads", "engine"} | {"skipped": why}}`` from a child process
    running ``backends.<backend>_impl.peak``."""
    cmd = [sys.executable, "-m", f"backends.{backend}_impl.peak", "--device", device,
           "--dtypes", ",".join(dtypes), "--seconds", str(seconds)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the {backend} matmul peak took over {timeout_s:.0f} s: try again on an idle machine") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"measuring the {backend} matmul peak failed ({last}): is {backend} installed in this environment?")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cache_path() -> Path:
    """Where `bench sysinfo --peak` keeps its measurements, one entry per machine id."""
    return bench_cache_dir() / "matmul-peak.json"


def _table() -> dict[str, Any]:
    try:
        table = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def cached(machine_id: str) -> dict[str, Any]:
    """This machine's ``{device: {backend: {dtype: entry}}}`` (empty if never measured; an
    entry of the old float32-only format is dropped: it did not say which framework)."""
    entry = _table().get(machine_id)
    if not isinstance(entry, dict) or "gflops" in entry:
        return {}
    return entry


def save(machine_id: str, device: str, backend: str, measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge one measurement into the cache; returns this machine's entries. An unwritable cache
    is not an error (the figures are printed either way)."""
    from harness.schema.io import atomic_write_bytes

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table = _table()
    mine = cached(machine_id)
    mine.setdefault(device, {})[backend] = {d: {**e, "measured_at": stamp} for d, e in measured.items()}
    table[machine_id] = mine
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(table, indent=2).encode())
    except OSError:
        pass
    return mine


def peak_for(peaks: dict[str, Any] | None, *, device: str, backend: str | None = None,
             dtype: str = "float32") -> dict[str, Any] | None:
    """The entry a run is a share of: its device (by exact name), its backend if measured
    (else any backend's), its data type. A run.json of schema 2 held one numpy float32 CPU
    entry (``{"gflops": ...}``): read as ``cpu / numpy / float32``."""
    if isinstance(peaks, dict) and "gflops" in peaks:
        peaks = {"cpu": {"numpy": {"float32": peaks}}}
    per_backend = (peaks or {}).get(device) or {}
    order = ([backend] if backend in per_backend else []) + [b for b in per_backend if b != backend]
    for b in order:
        entry = (per_backend.get(b) or {}).get(dtype)
        if isinstance(entry, dict) and isinstance(entry.get("gflops"), (int, float)):
            return {**entry, "backend": b, "dtype": dtype}
    return None


def format_peaks(peaks: dict[str, Any]) -> list[tuple[str, str]]:
    """Lines for `bench sysinfo`: one per device x backend x dtype."""
    lines = []
    for device, per_backend in peaks.items():
        for backend, per_dtype in per_backend.items():
            for dtype, e in per_dtype.items():
                if "gflops" in e:
                    text = (f"{e['gflops']:.1f} GFLOP/s ({e.get('engine')}, n={e.get('n')}, {e.get('threads')} threads, "
                            f"measured {str(e.get('measured_at'))[:16]})")
                else:
                    text = f"not measured: {e.get('skipped')}"
                lines.append((f"{dtype} matmul peak, {backend} on {device}", text))
    return lines


def child_main(matmul_gflops: Callable[[str, str, float], dict[str, Any]]) -> None:
    """The child process's side of :func:`measure` (``python -m backends.<fw>_impl.peak``):
    parse the same flags for every framework, measure each dtype asked, print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(json.dumps({d: matmul_gflops(d, args.device, args.seconds) for d in args.dtypes.split(",")}))
