"""Shared helpers: run the real `bench` console script in a subprocess."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

BIN = Path(sys.executable).parent
BENCH = str(BIN / "bench")
# Tests are sized for 2 cores; one framework thread each keeps parallel pytest workers and
# the background sampler from fighting over cores, and makes timings steadier.
TINY = ["--model", "resnet8", "--dataset", "synthetic", "--train-size", "128", "--test-size", "64",
        "--batch-size", "32", "--quiet", "--threads", "1"]


def bench(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
          check: bool = False) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("SETUPTOOLS_USE_DISTUTILS", None)  # the chainer backend must not need it
    full_env.update(env or {})
    proc = subprocess.run([BENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_dirs(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if (p / "run.json").is_file()) if results.is_dir() else []


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def wait_until(condition: Callable[[], Any], what: str, *, proc: subprocess.Popen | None = None,
               timeout: float = 120, poll_s: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` passes.

    Tests wait for an observable event (a row written, a file present) instead of sleeping
    a fixed time, so they neither race on a fast machine nor flake on a slow one. When
    ``proc`` ends before the event, fail at once with its output instead of waiting on."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


@functools.cache
def usable_devices(backend: str) -> tuple[str, ...]:
    """The devices ``backend`` reports usable here (its own ``devices()``, asked in a fresh
    process so this one never initialises CUDA): ("cpu",) on a CPU machine, ("cpu",
    "cuda:0", ...) on a CUDA host with that framework's GPU build. Tests that differ between
    the two ask this instead of assuming either."""
    code = ("import json, sys; from harness.backend import create_backend; "
            "print(json.dumps([d.name for d in create_backend(sys.argv[1]).devices() if d.usable]))")
    proc = subprocess.run([sys.executable, "-c", code, backend], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"could not ask {backend} for its devices:\n{proc.stderr}")
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


def has_cuda(backend: str) -> bool:
    return any(d.startswith("cuda") for d in usable_devices(backend))
