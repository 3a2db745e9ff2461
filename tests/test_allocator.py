"""harness/measure/allocator.py: the malloc thresholds take effect (freed large buffers stay with the
process for reuse), can be turned off, and are recorded in run.json."""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from tests.conftest import TINY, bench, run_dirs

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")

# Allocate and touch 256 MiB, free it, and print how much of it the process still holds.
PROBE = """
import sys
import numpy as np, psutil
from harness.measure.allocator import tune_malloc
print(tune_malloc()["tuned"])
rss = lambda: psutil.Process().memory_info().rss / 2**20
base = rss()
a = np.ones(256 * 2**20, dtype=np.uint8)
del a
print(round(rss() - base))
"""


def _probe(env_extra: dict[str, str]) -> tuple[str, int]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
    tuned, kept = out.split()
    return tuned, int(kept)


def test_freed_buffers_stay_with_the_process_only_when_tuned():
    tuned, kept = _probe({})
    assert tuned == "True" and kept > 200  # served from the heap and not trimmed: reusable
    tuned, kept = _probe({"BENCH_MALLOC": "default"})
    assert tuned == "False" and kept < 50  # glibc's default: mmap'd, unmapped on free


def test_run_json_records_the_allocator(results):
    bench("run", "--backend", "torch", *TINY, "--epochs", "1", "--results-dir", str(results), check=True)
    meta = json.loads((run_dirs(results)[0] / "run.json").read_text())
    malloc = meta["threads"]["framework"]["malloc"]
    assert malloc["tuned"] is True and malloc["mmap_threshold_bytes"] == 1 << 30
    assert malloc["allocator"].startswith("glibc")
