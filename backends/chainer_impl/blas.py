"""CPU threads for Chainer, which computes on the CPU through numpy and its BLAS.

Chainer has no thread setting of its own: its convolutions are im2col plus a BLAS matrix
product (``numpy.tensordot``), so the only knob is the BLAS library's thread count. Most of
its element-wise work is single-threaded numpy. ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``
are read once when the library loads, too late once numpy is imported, so the count is set at
run time: through threadpoolctl when it is installed, else by calling OpenBLAS's own
``openblas_set_num_threads`` (the same call threadpoolctl makes) on the library numpy loaded.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

_SUFFIXES = ("", "64_")  # numpy's wheels bundle a 64-bit-integer OpenBLAS with suffixed symbols


def _loaded_openblas() -> ctypes.CDLL | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _symbol(lib: ctypes.CDLL, name: str):
    for suffix in _SUFFIXES:
        function = getattr(lib, name + suffix, None)
        if function is not None:
            return function
    return None


def blas_name() -> str:
    """numpy's BLAS as numpy's build configuration names it (``openblas64 0.3.23.dev``)."""
    try:
        # numpy >= 1.25; numpy.__config__ exists at run time but numpy 1.x's stubs omit it
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]  # type: ignore[attr-defined]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except (AttributeError, KeyError, TypeError):
        return "unknown"


def blas_threads() -> int | None:
    """The BLAS thread count in effect now, or None if it cannot be read."""
    try:
        from threadpoolctl import threadpool_info

        counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return counts[0]
    except ImportError:
        pass
    lib = _loaded_openblas()
    getter = _symbol(lib, "openblas_get_num_threads") if lib is not None else None
    return int(getter()) if getter is not None else None


def set_blas_threads(threads: int) -> str:
    """Set numpy's BLAS thread count; returns how it was set (for run.json)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        return "threadpoolctl"
    except ImportError:
        pass
    lib = _loaded_openblas()
    setter = _symbol(lib, "openblas_set_num_threads") if lib is not None else None
    if setter is None:
        return "not set (no threadpoolctl and no OpenBLAS found: set OMP_NUM_THREADS before starting)"
    setter(ctypes.c_int(threads))
    return "openblas_set_num_threads"


def thread_report(threads: int | None) -> dict[str, Any]:
    """Set ``threads`` (None: leave as is) and report what is in effect."""
    how = set_blas_threads(threads) if threads is not None else "unchanged"
    return {
        "blas": blas_name(),
        "blas_threads": blas_threads(),
        "blas_threads_set_by": how,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }
