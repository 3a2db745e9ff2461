"""How a distributed run's ending reaches the user: `bench launch` exits as `bench run` would.

A launcher cannot carry a rank's exit code: torchrun turns any worker's non-zero exit into
its own exit 1 (and a traceback), and sends SIGTERM to the workers still running, which can
stop rank 0 while it records the run. So under `bench launch` a rank that ends with an
outcome its run folder records (diverged: 3, interrupted: 130) exits 0 to the launcher, and
rank 0 leaves its real exit code in a file that `bench launch` named in
``BENCH_LAUNCH_RESULT``; `bench launch` waits for the launcher and exits with that code (the
launcher's own when rank 0 left none: a crash, or a launcher started by hand).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from harness.distributed.env import detect
from harness.errors import BenchError

RESULT_ENV = "BENCH_LAUNCH_RESULT"
# Exit codes of a run that ended as its run folder says (harness/train/session.py).
RECORDED_OUTCOMES = (3, 130)


def rank_exit(code: int, environ: Mapping[str, str] | None = None) -> int:
    """The code this process exits with, given the code `bench run` ended with. Outside
    `bench launch` it is ``code`` itself; under it rank 0 writes ``code`` for `bench launch`
    and a recorded outcome exits 0 to the launcher (see the module docstring)."""
    env = os.environ if environ is None else environ
    path = env.get(RESULT_ENV)
    if not path:
        return code
    try:
        ranks = detect(env)
    except BenchError:
        return code
    if ranks and all(r.rank == 0 for r in ranks.values()):
        with contextlib.suppress(OSError):
            Path(path).write_text(f"{code}\n")
    return 0 if code in RECORDED_OUTCOMES else code


def run_launcher(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the launcher line and return rank 0's exit code (else the launcher's).

    The launcher runs in this process group, so Ctrl-C from a terminal reaches it and every
    rank directly; here SIGINT is ignored while it runs (the ranks record the interruption)
    and SIGTERM / SIGHUP are passed on to it, as they reached it when `bench launch` exec'd it."""
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        result = Path(tmp) / "exit-code"
        proc = subprocess.Popen(list(command), env={**env, RESULT_ENV: str(result)})

        def forward(signum: int, frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        old = {s: signal.signal(s, h) for s, h in
               ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward), (signal.SIGHUP, forward))}
        try:
            code = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        try:
            return int(result.read_text())
        except (OSError, ValueError):
            return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N
