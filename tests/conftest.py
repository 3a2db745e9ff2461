"""Shared helpers: run the real `bench` console script in a subprocess."""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
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
def device_report(backend: str) -> tuple[tuple[str, bool, str], ...]:
    """``backend``'s own ``devices()`` as (name, usable, detail), asked in a fresh process so
    this one never initialises CUDA: a CPU machine reports ("cuda", False, why and the fix),
    a CUDA host with that framework's GPU build ("cuda:0", True, the GPU's name), ...
    Tests that differ between the two ask this instead of assuming either."""
    code = ("import json, sys; from harness.backend import create_backend; "
            "print(json.dumps([[d.name, d.usable, d.detail] for d in create_backend(sys.argv[1]).devices()]))")
    proc = subprocess.run([sys.executable, "-c", code, backend], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"could not ask {backend} for its devices:\n{proc.stderr}")
    return tuple((str(n), bool(u), str(d)) for n, u, d in json.loads(proc.stdout.strip().splitlines()[-1]))


def has_cuda(backend: str) -> bool:
    return any(usable and name.startswith("cuda") for name, usable, _ in device_report(backend))


def no_cuda_reason(backend: str) -> str | None:
    """Why ``backend`` cannot use CUDA here (its own words), or None when it can."""
    if has_cuda(backend):
        return None
    return "; ".join(d for n, _, d in device_report(backend) if n.startswith("cuda")) or "no CUDA device listed"


# The real CLI in a child process, killed by SIGKILL from inside the epochs.csv append of
# epoch EPOCH: "before" the row is written (checkpoint and checkpoint.json already renamed
# into place: the window the runner's write ordering exists for) or "after" it. A timed
# kill hits such a window by luck only; this hits it every time.
_KILL_AT_ROW = """
import os, signal, sys
from harness import schema as R
from harness.cli import main

epoch, when = int(sys.argv[1]), sys.argv[2]
append = R.CsvAppender.append

def killing_append(self, row):
    ours = self.path.name == R.EPOCHS_CSV and row.get("epoch") == epoch and row.get("status") == R.EPOCH_OK
    if ours and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    append(self, row)
    if ours and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)

R.CsvAppender.append = killing_append
sys.exit(main(sys.argv[3:]))
"""


def kill_at_row(epoch: int, when: str, *run_args: str, env: dict | None = None) -> Path:
    """``bench run RUN_ARGS`` (which must hold --results-dir, into an empty folder), killed
    with SIGKILL at epoch ``epoch``'s row, ``when`` "before" or "after" it is appended.
    Returns the run folder it left."""
    full_env = dict(os.environ) | (env or {})
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_ROW, str(epoch), when, "run", *run_args],
                          capture_output=True, text=True, timeout=300, env=full_env)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    (run,) = run_dirs(Path(run_args[list(run_args).index("--results-dir") + 1]))
    return run


def mpi_missing() -> str | None:
    """Why the ChainerMN / mpiexec tests cannot run here, or None when they can."""
    if shutil.which("mpiexec") is None:
        return "mpiexec not found (scripts/ensure-mpi.sh installs Open MPI where it can: root + apt-get)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed in this venv (scripts/ensure-mpi.sh installs it)"
    return None
