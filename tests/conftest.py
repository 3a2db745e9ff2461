"""Shared helpers: run the real `bench` console script in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
